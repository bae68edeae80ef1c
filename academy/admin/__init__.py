"""Administration pages: users, imports, cohorts, approvals, outbox and audit log."""
