"""The "services required" switch: a missing service skips, or fails under ACADEMY_TEST_REQUIRE_SERVICES=1."""

from __future__ import annotations

import pytest

from tests import support


@pytest.mark.parametrize(("required", "outcome"), [(True, pytest.fail.Exception), (False, pytest.skip.Exception)])
def test_skip_or_fail_obeys_the_switch(monkeypatch: pytest.MonkeyPatch, required: bool, outcome: type) -> None:
    monkeypatch.setattr(support, "REQUIRE_SERVICES", required)
    with pytest.raises(outcome, match="no such server"):
        support.skip_or_fail("no such server")


def test_every_file_make_test_starts_first_exists() -> None:
    from tests.conftest import SLOW_FILES
    from tests.support import ROOT

    assert len(set(SLOW_FILES)) == len(SLOW_FILES)
    assert [name for name in SLOW_FILES if not (ROOT / name).is_file()] == []
