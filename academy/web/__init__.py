"""Shared web plumbing: access decorators, loaders, base templates, static assets."""
