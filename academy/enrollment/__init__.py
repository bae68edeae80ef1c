"""Cohorts, capacity, approval and the waitlist."""
