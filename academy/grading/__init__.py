"""Grading: nbgrader autograding in a sandbox, as a durable job pipeline."""
