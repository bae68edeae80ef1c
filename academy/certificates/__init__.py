"""Certificates: a PDF and an Open Badges 3.0 credential for each completion, verifiable by anyone."""
