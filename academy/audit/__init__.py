"""The audit log of privileged and state-changing actions."""
