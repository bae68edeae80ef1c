"""Tracks, courses and assignments, loaded from the ``courses/`` directory."""
