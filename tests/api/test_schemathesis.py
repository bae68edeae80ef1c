"""Schemathesis, a client nobody on the project wrote, against the JSON API and its OpenAPI document.

Every operation of ``/api/v1/openapi.json`` gets generated requests, valid and invalid ("mode: all"),
once with a token that holds every scope and once with none, and every answer goes through all of
Schemathesis's checks: no 5xx, status codes and headers the document names, bodies that match its
schemas, refused authentication really refused, 405s with ``Allow``, and so on.  Any finding fails
the suite.  Examples are bounded and derived from a fixed seed, so a run is the same every time and
stays well under a minute (about 1,200 requests in process, through the real application).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.core.parameters import ParameterLocation

from academy.api.openapi import openapi_document
from academy.extensions import db
from academy.users.models import Company, User
from academy.users.tokens import SCOPES, create_token
from tests.support import ROOT

# Hypothesis keeps caches of its own (constants, Unicode tables): with the other test artefacts,
# not in a .hypothesis folder beside the checkout
set_hypothesis_home_dir(ROOT / "tests" / "artifacts" / "hypothesis")

CONFIG = schemathesis.Config.from_dict({
    "seed": 20261205,
    # nothing written beside the checkout: no example database, no .hypothesis folder
    "cache": {"enabled": False},
    "checks": {"enabled": True},
    "generation": {"mode": "all", "max-examples": 30, "deterministic": True, "database": "none"},
    # A statistics period must run forwards and lie between 2000 and five years from now: rules OpenAPI
    # cannot state, so a schema-valid period may be refused with 400 (and its message) there.
    "operations": [{
        "include-path-regex": "^/api/v1/stats/",
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "429"]}},
    }],
})

schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


@pytest.fixture
def token(app: Flask, make_user: Any, make_cohort: Any) -> str:
    """An admin who is also their company's contact, with a token holding every scope, and cohorts to enroll in."""
    user_id = make_user("admin", company=Company(name="경북정밀(주)", business_number="124-81-00998"))
    make_cohort(capacity=5)
    make_cohort(requires_approval=True)
    with app.app_context():
        user = db.session.get(User, user_id)
        from academy.companies.services import appoint

        appoint(db.session, user.company, user, actor=user)  # company:read needs a company contact
        _row, plain = create_token(db.session, user, "schemathesis", list(SCOPES))
        db.session.commit()
    return plain


@pytest.mark.app_config(RATELIMIT_ENABLED=False)
@pytest.mark.parametrize("who", ["token", "anonymous"])
@schema.parametrize()
@settings(database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_answers_as_documented(case: Any, app: Flask, token: str, who: str) -> None:
    # A case whose headers were made invalid on purpose (Authorization missing or malformed) is sent as
    # generated: putting the token back would turn it into a valid request the check then calls accepted.
    spoilt_headers = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    headers = {"Authorization": f"Bearer {token}"} if who == "token" and not spoilt_headers else None
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.QUERY) and case.query:
        # The test client leaves out a query key whose value is None or an empty list, which would send a
        # valid request in place of the invalid one generated: the key goes out with an empty value instead.
        case.query = {key: "" if value is None or value == [] else value for key, value in case.query.items()}
    # checks that send requests of their own (a token's removal must give 401) go to the schema's app
    case.operation.schema.app = app
    case.call_and_validate(app=app, headers=headers)


def test_every_operation_is_exercised() -> None:
    """The document is not empty and each of its operations is reachable by the test above."""
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = openapi_document()["paths"]
    assert len(operations) == sum(len(item) for item in paths.values()) >= 6
