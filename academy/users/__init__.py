"""Accounts, roles, companies, password resets and personal access tokens."""
