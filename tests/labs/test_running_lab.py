"""The learner's open lab on the portal's pages (``labs/_running.html`` and ``labs.running.running_lab``) and the
words for profile keys and lab states, on both databases, through the test client with real CSRF tokens.

The partial is included by a page of the test's own (the dashboard and the assignment page include it the
same way, with one ``{% include "labs/_running.html" %}``); the hub is an unreachable address, as a
stop that cannot reach the hub still closes the lab (the sweep stops the server later).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient

from tests.conftest import csrf_token, login
from tests.labs.fakehub import LABS, course_with_cohorts, enrolled_learner, lab_row

PAGE = "/test-page/running-lab"
PAGE_TEMPLATE = '{% extends "base.html" %}{% block content %}{% include "labs/_running.html" %}{% endblock %}'
STARTED = dt.datetime(2026, 3, 2, 0, 5, tzinfo=dt.UTC)  # 09:05 in Seoul
GPU_TITLE_KO, GPU_TITLE_EN = "GPU 실습 환경 (전용 GPU 1개)", "GPU lab (one dedicated GPU)"
SECTION = re.compile(r"<section[^>]*data-running-lab=.*?</section>", re.S)

pytestmark = pytest.mark.app_config(**LABS, RATELIMIT_ENABLED=False)


@pytest.fixture
def page_app(app: Flask) -> Flask:
    """The app with one signed-in page that includes the partial (as the dashboard does)."""
    from academy.web.access import login_required

    @login_required
    def running_lab_page() -> str:
        return render_template_string(PAGE_TEMPLATE)

    app.add_url_rule(PAGE, "test_running_lab_page", running_lab_page)
    return app


def _learner(page_app: Flask, make_user: Any, make_track: Any, make_cohort: Any, **fields: Any) -> tuple[int, int]:
    """A GPU course and a learner enrolled in it (with ``fields`` set on the account)."""
    from academy.extensions import db
    from academy.users.models import User

    course_id, (cohort, _other) = course_with_cohorts(page_app, make_track, make_cohort)
    user_id = enrolled_learner(page_app, make_user, cohort)
    with page_app.app_context():
        user = db.session.get(User, user_id)
        for key, value in fields.items():
            setattr(user, key, value)
        db.session.commit()
    return user_id, course_id


def _signed_in(page_app: Flask, user_id: int) -> FlaskClient:
    from academy.extensions import db
    from academy.users.models import User

    with page_app.app_context():
        email = db.session.get(User, user_id).email
    client = page_app.test_client()
    assert login(client, email).status_code == 302
    return client


def _section(client: FlaskClient, path: str = PAGE) -> str | None:
    response = client.get(path)
    assert response.status_code == 200
    match = SECTION.search(response.get_data(as_text=True))
    return match.group(0) if match else None


def _state(page_app: Flask, lab_id: int) -> tuple[str, str | None]:
    from academy.extensions import db
    from academy.labs.models import LabSession

    with page_app.app_context():
        lab = db.session.get(LabSession, lab_id)
        return lab.state.value, lab.stop_reason


def test_a_running_lab_shows_course_profile_title_time_and_opens_jupyterlab(
        page_app: Flask, make_user: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.labs.models import LabState

    user_id, course_id = _learner(page_app, make_user, make_track, make_cohort)
    lab_id = lab_row(page_app, user_id, course_id, profile="gpu", gpus=1, device="0", state=LabState.running,
                     started_at=STARTED, notebook_path="course/01-intro/intro.ipynb")
    section = _section(_signed_in(page_app, user_id))
    assert section is not None
    assert GPU_TITLE_KO in section and "과정" in section  # the profile's title and the course's, in Korean
    assert "gpu" not in section.replace(f'data-running-lab="{lab_id}"', ""), "a profile key reached the page"
    assert "실행 중" in section and "2026-03-02 09:05 KST" in section
    assert f'href="http://127.0.0.1:9/user/u{user_id}/lab/tree/course/01-intro/intro.ipynb"' in section
    assert f'action="/labs/{lab_id}/stop"' in section and 'name="csrf_token"' in section


def test_the_titles_follow_the_learners_language(page_app: Flask, make_user: Any, make_track: Any,
                                                make_cohort: Any) -> None:
    from academy.labs.models import LabState

    user_id, course_id = _learner(page_app, make_user, make_track, make_cohort, locale="en")
    lab_row(page_app, user_id, course_id, profile="gpu", gpus=1, state=LabState.running, started_at=STARTED)
    section = _section(_signed_in(page_app, user_id))
    assert section is not None
    assert GPU_TITLE_EN in section and "Course" in section and "Running" in section
    assert "Go to the lab" not in section and "Show progress" in section  # notebooks not copied yet


def test_a_queued_lab_links_to_its_progress_and_can_leave_the_queue(page_app: Flask, make_user: Any,
                                                                    make_track: Any, make_cohort: Any) -> None:
    from academy.labs.models import LabState

    user_id, course_id = _learner(page_app, make_user, make_track, make_cohort)
    lab_id = lab_row(page_app, user_id, course_id, profile="gpu", gpus=1, state=LabState.queued)
    section = _section(_signed_in(page_app, user_id))
    assert section is not None
    assert "GPU를 기다리는 중" in section and f'href="/labs/{lab_id}"' in section
    assert "대기열에서 나가기" in section and "data-confirm" not in section


def test_stop_returns_to_the_page_it_was_pressed_on(page_app: Flask, make_user: Any, make_track: Any,
                                                   make_cohort: Any) -> None:
    from academy.labs.models import LabState

    user_id, course_id = _learner(page_app, make_user, make_track, make_cohort)
    lab_id = lab_row(page_app, user_id, course_id, state=LabState.running, started_at=STARTED)
    client = _signed_in(page_app, user_id)
    section = _section(client, PAGE + "?tab=labs")
    assert section is not None
    back = re.search(r'name="next" value="([^"]+)"', section)
    assert back is not None and back.group(1) == PAGE + "?tab=labs"
    response = client.post(f"/labs/{lab_id}/stop", data={"csrf_token": csrf_token(client, PAGE),
                                                         "next": back.group(1)})
    assert response.status_code == 303 and response.headers["Location"] == PAGE + "?tab=labs"
    assert _state(page_app, lab_id) == ("stopped", "user")
    page = client.get(PAGE).get_data(as_text=True)
    assert "실습 환경을 중지했습니다." in page and "data-running-lab" not in page  # told, and nothing open any more


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"])
def test_stop_never_redirects_off_the_portal(page_app: Flask, make_user: Any, make_track: Any, make_cohort: Any,
                                             target: str) -> None:
    from academy.labs.models import LabState

    user_id, course_id = _learner(page_app, make_user, make_track, make_cohort)
    lab_id = lab_row(page_app, user_id, course_id, state=LabState.running, started_at=STARTED)
    client = _signed_in(page_app, user_id)
    response = client.post(f"/labs/{lab_id}/stop", data={"csrf_token": csrf_token(client, PAGE), "next": target})
    assert response.status_code == 303 and response.headers["Location"] == f"/labs/{lab_id}"
    assert _state(page_app, lab_id) == ("stopped", "user")


def test_stop_without_the_csrf_token_is_refused_and_stops_nothing(page_app: Flask, make_user: Any, make_track: Any,
                                                                  make_cohort: Any) -> None:
    from academy.labs.models import LabState

    user_id, course_id = _learner(page_app, make_user, make_track, make_cohort)
    lab_id = lab_row(page_app, user_id, course_id, state=LabState.running, started_at=STARTED)
    client = _signed_in(page_app, user_id)
    assert client.post(f"/labs/{lab_id}/stop", data={"next": PAGE}).status_code == 400
    assert _state(page_app, lab_id) == ("running", None)


def test_another_learners_lab_is_never_shown_nor_stoppable(page_app: Flask, make_user: Any, make_track: Any,
                                                          make_cohort: Any) -> None:
    from academy.labs.models import LabState

    owner, course_id = _learner(page_app, make_user, make_track, make_cohort)
    lab_id = lab_row(page_app, owner, course_id, profile="gpu", gpus=1, state=LabState.running, started_at=STARTED)
    other, other_course = _learner(page_app, make_user, make_track, make_cohort)
    client = _signed_in(page_app, other)
    assert _section(client) is None
    response = client.post(f"/labs/{lab_id}/stop", data={"csrf_token": csrf_token(client, PAGE), "next": PAGE})
    assert response.status_code == 404 and _state(page_app, lab_id) == ("running", None)
    own = lab_row(page_app, other, other_course, state=LabState.starting)
    section = _section(client)
    assert section is not None and f'data-running-lab="{own}"' in section and f"/labs/{lab_id}/" not in section


def test_nothing_is_shown_without_an_open_lab(page_app: Flask, make_user: Any, make_track: Any,
                                              make_cohort: Any) -> None:
    from academy.labs.models import LabState

    user_id, course_id = _learner(page_app, make_user, make_track, make_cohort)
    client = _signed_in(page_app, user_id)
    assert _section(client) is None
    for state in (LabState.stopped, LabState.failed, LabState.cancelled):
        lab_row(page_app, user_id, course_id, state=state, started_at=STARTED)
    assert _section(client) is None
    assert 'data-running-lab' not in client.get(PAGE).get_data(as_text=True)


def test_service_describes_only_the_users_own_lab_and_never_shows_a_key(
        page_app: Flask, make_user: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.labels import lab_state_label, profile_title
    from academy.labs.models import LabState
    from academy.labs.running import running_lab
    from academy.users.models import User

    user_id, course_id = _learner(page_app, make_user, make_track, make_cohort)
    other_id, _ = _learner(page_app, make_user, make_track, make_cohort)
    lab_id = lab_row(page_app, user_id, course_id, profile="retired-a100", state=LabState.starting)
    settings = page_app.config["ACADEMY_SETTINGS"]
    with page_app.test_request_context():
        lab = running_lab(db.session, settings, db.session.get(User, user_id), locale="ko")
        assert lab is not None and lab.id == lab_id and not lab.ready
        assert lab.profile_title == "실습 환경"  # a profile no longer configured: a generic title, not its key
        assert (lab.state_label, lab.course_title) == ("시작 중", "과정")
        assert running_lab(db.session, settings, db.session.get(User, other_id), locale="ko") is None
        assert profile_title(settings, "gpu-shared", "en") == "Shared GPU lab"
        assert profile_title(settings, None, "ko") == "실습 환경"
        assert lab_state_label(LabState.cancelled) == lab_state_label("cancelled") == "대기 취소"
        assert lab_state_label("no-such-state") not in ("no-such-state", "")


def test_a_refused_profile_is_named_by_its_title(page_app: Flask, make_user: Any, make_track: Any,
                                                 make_cohort: Any) -> None:
    user_id, course_id = _learner(page_app, make_user, make_track, make_cohort)
    client = _signed_in(page_app, user_id)
    for profile, title in (("gpu-shared", "GPU 공유 실습 환경"), ("x-drop", None)):
        response = client.post(f"/labs/open/{course_id}", data={"csrf_token": csrf_token(client, PAGE),
                                                                "profile": profile})
        assert response.status_code == 303
        with client.session_transaction() as session:
            [message] = [text for category, text in session.pop("_flashes", []) if category == "danger"]
        assert profile not in message, message  # a key is never repeated back, known or not
        assert title is None or title in message, message
    assert _section(client) is None  # a refusal starts nothing
