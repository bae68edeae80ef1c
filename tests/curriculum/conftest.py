"""Shared by the curriculum tests: one generate_assignment cache for the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def production_zygote_preload(request: pytest.FixtureRequest) -> Iterator[None]:
    """The curriculum is graded with the zygote's default preload (tests/conftest.py sets a smaller one), plus a
    test module's ``ZYGOTE_PRELOAD_EXTRA``: what the operator of a worker grading that track would add to
    ``ACADEMY_GRADER_ZYGOTE_PRELOAD`` (the deep-learning track: torch, imported by every one of its kernels)."""
    from academy.engine.sandbox.policy import DEFAULT_ZYGOTE_PRELOAD, ZYGOTE_PRELOAD_ENV

    extra = tuple(getattr(request.module, "ZYGOTE_PRELOAD_EXTRA", ()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ZYGOTE_PRELOAD_ENV, ",".join(DEFAULT_ZYGOTE_PRELOAD + extra))
        yield


@pytest.fixture(scope="session")
def curriculum_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("curriculum-cache")
