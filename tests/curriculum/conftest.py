"""Shared by the curriculum tests: one generate_assignment cache for the run."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def curriculum_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("curriculum-cache")
