"""Shared by the curriculum tests: one generate_assignment cache for the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def production_zygote_preload() -> Iterator[None]:
    """The curriculum is graded with the zygote's default preload (tests/conftest.py sets a smaller one)."""
    from academy.engine.sandbox.policy import DEFAULT_ZYGOTE_PRELOAD, ZYGOTE_PRELOAD_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ZYGOTE_PRELOAD_ENV, ",".join(DEFAULT_ZYGOTE_PRELOAD))
        yield


@pytest.fixture(scope="session")
def curriculum_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("curriculum-cache")
