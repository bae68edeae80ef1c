"""Completion of courses and tracks: the passing rule, the recorded completions and their history."""
