"""The learner's dashboard: tracks, courses and assignments with status and deadlines."""
