"""An assignment's grading policy: the optional ``[assignments.grading]`` table and its defaults."""

from __future__ import annotations

from typing import Any

from academy.catalog.manifest.toml_source import TomlTable

GRADING_DEFAULTS: dict[str, Any] = {
    "max_attempts": None,  # no limit
    "score_policy": "best",  # best | last attempt counts
    "late_policy": "penalty",  # penalty | refuse
    "late_penalty_per_day": 10.0,  # percent of the score per started day late
    "late_penalty_cap": 50.0,  # percent, at most
    "hidden_tests": "after_deadline",  # after_deadline | immediately: when learners see hidden-test results
}
GRADING_CHOICES = {
    "score_policy": ("best", "last"),
    "late_policy": ("penalty", "refuse"),
    "hidden_tests": ("after_deadline", "immediately"),
}


def read_grading_policy(entry: TomlTable) -> dict[str, Any]:
    """The optional ``[assignments.grading]`` table with defaults filled in."""
    policy = dict(GRADING_DEFAULTS)
    if "grading" not in entry.data:
        return policy
    table = entry.table("grading", set(GRADING_DEFAULTS), required=False)
    if "max_attempts" in table.data:
        attempts = table.integer("max_attempts")
        if attempts < 1:
            raise table.error("max_attempts", "must be at least 1 (leave it out for no limit)")
        policy["max_attempts"] = attempts
    for key in ("late_penalty_per_day", "late_penalty_cap"):
        if key in table.data:
            policy[key] = table.number(key, maximum=100)
    for key, choices in GRADING_CHOICES.items():
        if key in table.data:
            value = table.string(key)
            if value not in choices:
                raise table.error(key, f"must be one of {', '.join(choices)} (found '{value}')")
            policy[key] = value
    return policy
