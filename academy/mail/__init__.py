"""Outgoing mail: SMTP when configured, otherwise a local outbox an admin can read."""
