"""The JSON API under ``/api/v1`` with personal access tokens."""
