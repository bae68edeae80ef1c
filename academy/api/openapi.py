"""The OpenAPI 3.1 document for ``/api/v1``.

Written by hand next to the handlers; a test checks that every API route is
described here and that responses match the schemas.
"""

from __future__ import annotations

from typing import Any

from academy.users import reference
from academy.users.tokens import REALM, SCOPES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                 "content": {"application/json": {"schema": _ref("Error")}}}
    if headers:
        response["headers"] = headers
    return response


def _challenge(description: str, pattern: str) -> dict[str, Any]:
    """The ``WWW-Authenticate`` header of a refused token (RFC 6750 §3)."""
    return {"WWW-Authenticate": {"description": description, "required": True,
                                 "schema": {"type": "string", "pattern": pattern}}}


RATE_LIMITED = _error_response(
    "Too many requests from this address (600 per minute); try again after Retry-After seconds",
    {"Retry-After": {"description": "Seconds to wait before the next request", "required": True,
                     "schema": {"type": "integer", "minimum": 0}}},
)


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


LOCALIZED = {
    "type": "object",
    "properties": {"ko": {"type": "string"}, "en": {"type": "string"}},
    "required": ["ko", "en"],
}

NULLABLE_DATETIME = {"type": ["string", "null"], "format": "date-time"}


def _secured(scope: str, operation: dict[str, Any]) -> dict[str, Any]:
    operation["security"] = [{"token": [scope]}]
    operation.setdefault("responses", {})
    operation["responses"]["401"] = _error_response("Missing, expired or revoked token", _challenge(
        f'`Bearer realm="{REALM}"` when no token was sent, with `error="invalid_token"` when the token '
        "is unknown, expired or revoked",
        f'^Bearer realm="{REALM}"(, error="invalid_token")?$',
    ))
    operation["responses"]["403"] = _error_response(f"The token lacks the scope {scope}", _challenge(
        f'`Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"`',
        f'^Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"$',
    ))
    return operation


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as a plain dict."""
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "integer"},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "request_id": {"type": "string"},
                    },
                    "required": ["status", "code", "message"],
                }
            },
            "required": ["error"],
        },
        "User": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "email": {"type": "string", "format": "email"},
                "name": {"type": "string"},
                "role": {"type": "string", "enum": ["learner", "instructor", "admin"]},
                "company": {
                    "type": ["object", "null"],
                    "properties": {"name": {"type": "string"}, "business_number": {"type": "string"}},
                },
                "region": {"type": ["string", "null"]},
                "industry": {"type": ["string", "null"]},
                "job_role": {"type": ["string", "null"]},
                "locale": {"type": ["string", "null"]},
                "created_at": NULLABLE_DATETIME,
            },
            "required": ["id", "email", "name", "role"],
        },
        "Assignment": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "title": LOCALIZED,
                "max_score": {"type": "number"},
                "due_days": {"type": ["integer", "null"]},
            },
            "required": ["id", "title", "max_score"],
        },
        "Course": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "title": LOCALIZED,
                "hours": {"type": "number"},
                "lab_profile": {"type": "string"},
                "gpu_hour_quota": {"type": "number"},
                "assignments": {"type": "array", "items": _ref("Assignment")},
            },
            "required": ["id", "title", "hours", "lab_profile", "assignments"],
        },
        "Cohort": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "track": {"type": "string"},
                "name": {"type": "string"},
                "starts_at": {"type": "string", "format": "date-time"},
                "ends_at": {"type": "string", "format": "date-time"},
                "enroll_closes_at": NULLABLE_DATETIME,
                "capacity": {"type": "integer"},
                "seats_left": {"type": "integer"},
                "requires_approval": {"type": "boolean"},
            },
            "required": ["id", "track", "name", "starts_at", "ends_at", "capacity", "seats_left",
                         "requires_approval"],
        },
        "Track": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "title": LOCALIZED,
                "description": LOCALIZED,
                "courses": {"type": "array", "items": _ref("Course")},
                "open_cohorts": {"type": "array", "items": _ref("Cohort")},
            },
            "required": ["id", "title", "courses", "open_cohorts"],
        },
        "Enrollment": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "cohort": _ref("Cohort"),
                "status": {"type": "string",
                           "enum": ["pending", "enrolled", "waitlisted", "withdrawn", "rejected"]},
                "waitlist_position": {"type": ["integer", "null"]},
                "requested_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
            "required": ["id", "cohort", "status", "requested_at"],
        },
    }
    localized = {"type": "object", "properties": {"ko": {"type": "string"}, "en": {"type": "string"}},
                 "required": ["ko", "en"]}
    schemas["Certificate"] = {
        "type": "object",
        "description": "What a certificate states and whether it is valid. `credential` is the Open Badges 3.0 "
                       "credential as a compact JWS (RS256), verifiable with the keys at /certificates/jwks.json.",
        "properties": {
            "code": {"type": "string", "pattern": "^([0-9A-HJKMNP-TV-Z]{4}-){2}[0-9A-HJKMNP-TV-Z]{4}$"},
            "status": {"type": "string", "enum": ["valid", "revoked"]},
            "holder": {"type": "string"},
            "kind": {"type": "string", "enum": ["course", "track"]},
            "title": localized,
            "track": localized,
            "hours": {"type": "number"},
            "competencies": {"type": "array", "items": localized},
            "completed_on": {"type": "string", "format": "date"},
            "issued_at": {"type": "string", "format": "date-time"},
            "revoked_at": {"type": "string", "format": "date-time"},
            "issuer": {"type": "object", "properties": {"name": localized, "url": {"type": "string"}},
                       "required": ["name", "url"]},
            "verify_url": {"type": "string"},
            "credential": {"type": "string", "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$"},
        },
        "required": ["code", "status", "holder", "kind", "title", "track", "hours", "competencies", "completed_on",
                     "issued_at", "issuer", "verify_url", "credential"],
        "additionalProperties": False,
    }
    funnel = {"type": "object", "properties": {stage: {"type": "integer", "minimum": 0} for stage in
                                               ("enrolled", "started", "submitted", "passed", "completed_course",
                                                "completed_track")},
              "required": ["enrolled", "started", "submitted", "passed", "completed_course", "completed_track"],
              "additionalProperties": False}
    schemas["Funnel"] = funnel
    stats_common = {"filters": {"type": "object", "additionalProperties": {"type": "string"}},
                    "refreshed_at": {"type": ["string", "null"], "format": "date-time"}}
    schemas["StatsFunnel"] = {
        "type": "object",
        "properties": {**stats_common, "funnel": _ref("Funnel"),
                       "completion": {"type": "object", "properties": {
                           "course_enrollments": {"type": "integer"}, "course_completions": {"type": "integer"},
                           "rate": {"type": ["number", "null"]}, "median_days": {"type": ["number", "null"]}}},
                       "hours": {"type": "object", "properties": {
                           "lab_hours": {"type": "number"}, "gpu_hours": {"type": "number"},
                           "gpu_shared_hours": {"type": "number"}}}},
        "required": ["filters", "funnel", "completion", "hours", "refreshed_at"],
    }
    schemas["StatsBy"] = {
        "type": "object",
        "properties": {**stats_common, "by": {"type": "string"},
                       "rows": {"type": "array", "items": {
                           "type": "object",
                           "properties": {"key": {"type": ["string", "integer", "null"]}, "label": {"type": "string"},
                                          "funnel": _ref("Funnel")},
                           "required": ["key", "label", "funnel"]}}},
        "required": ["filters", "by", "rows", "refreshed_at"],
    }
    filter_parameters = [
        {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
        for name, schema, text in (
            ("track", {"type": "integer"}, "track id"),
            ("course", {"type": "integer"}, "course id"),
            ("cohort", {"type": "integer"}, "cohort id"),
            ("company", {"type": "string"}, "business registration number (XXX-XX-XXXXX) or company id"),
            ("region", {"type": "string", "enum": list(reference.REGIONS)},
             "region code (one of Gyeongbuk's 22 cities and counties, or outside)"),
            ("industry", {"type": "string", "enum": list(reference.INDUSTRIES)}, "industry code"),
            ("job_role", {"type": "string", "enum": list(reference.JOB_ROLES)}, "job role code"),
            ("from", {"type": "string", "format": "date"}, "enrolled on or after (KST)"),
            ("to", {"type": "string", "format": "date"}, "enrolled on or before (KST)"),
        )
    ]
    schemas["CompanyEmployees"] = {
        "type": "object",
        "properties": {
            "company": {"type": "object", "properties": {"name": {"type": "string"},
                                                         "business_number": {"type": "string"}}},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "email": {"type": "string"}, "job_role": {"type": ["string", "null"]},
                "enrollments": {"type": "array", "items": {"type": "object", "properties": {
                    "track": {"type": "object", "properties": {"id": {"type": "integer"}, "title": {"type": "string"}}},
                    "cohort": {"type": "string"}, "status": {"type": "string"},
                    "progress": {"type": "object", "properties": {"passed": {"type": "integer"},
                                                                  "assignments": {"type": "integer"}}},
                    "lab_hours": {"type": "number"},
                    "courses_completed": {"type": "array", "items": {"type": "string"}},
                    "track_completed_on": {"type": ["string", "null"], "format": "date-time"}}}},
                "certificates": {"type": "array", "items": {"type": "object", "properties": {
                    "code": {"type": "string"}, "title": {"type": "string"}, "title_en": {"type": "string"},
                    "status": {"type": "string", "enum": ["valid", "revoked"]},
                    "completed_on": {"type": "string", "format": "date"}, "verify_url": {"type": "string"}}}},
            }, "required": ["name", "email", "enrollments", "certificates"]}},
            "page": {"type": "integer", "minimum": 1}, "per_page": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0},
        },
        "required": ["company", "items", "page", "per_page", "total"],
    }
    paging_parameters = [
        {"name": "page", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000000}, "description": "page number, from 1"},
        {"name": "per_page", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 200}, "description": "items per page (50)"},
    ]
    paging_fields = {"page": {"type": "integer", "minimum": 1}, "per_page": {"type": "integer", "minimum": 1},
                     "total": {"type": "integer", "minimum": 0}}
    paths: dict[str, Any] = {
        "/api/v1/company/employees": {
            "get": _secured("company:read", {
                "operationId": "listCompanyEmployees",
                "summary": "The token owner's company's employees with their enrollments, progress, lab hours, "
                           "completions and certificates (company contacts' tokens); paged",
                "parameters": [*paging_parameters,
                               {"name": "q", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "part of a name or e-mail address"},
                               {"name": "track", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 999999999},
                                "description": "only employees enrolled in this track"}],
                "responses": {"200": _ok(_ref("CompanyEmployees")),
                              "400": _error_response("A malformed page, per_page or track")},
            })
        },
        "/api/v1/stats/funnel": {
            "get": _secured("stats:read", {
                "operationId": "getStatsFunnel",
                "summary": "The completion funnel for the filters given (administrators' tokens)",
                "parameters": filter_parameters,
                "responses": {"200": _ok(_ref("StatsFunnel")),
                              "400": _error_response("A malformed filter value or a malformed, absurd or reversed "
                                                     "period"),
                              "404": _error_response("No such track, course, cohort or company"),
                              "403": _error_response("The token's owner is not an administrator")},
            })
        },
        "/api/v1/stats/by/{dimension}": {
            "get": _secured("stats:read", {
                "operationId": "getStatsBy",
                "summary": "The funnel for each value of a dimension (administrators' tokens)",
                "parameters": [{"name": "dimension", "in": "path", "required": True,
                                "schema": {"type": "string", "enum": ["track", "course", "cohort", "company",
                                                                      "region", "industry", "job_role", "month"]}},
                               *filter_parameters],
                "responses": {"200": _ok(_ref("StatsBy")),
                              "400": _error_response("An unknown dimension, a malformed filter value, or a bad "
                                                     "period"),
                              "404": _error_response("No such track, course, cohort or company"),
                              "403": _error_response("The token's owner is not an administrator")},
            })
        },
        "/api/v1/certificates/{code}": {
            "get": {
                "operationId": "getCertificate",
                "summary": "Verify a certificate (public, no token): what it states and whether it is valid",
                "security": [],
                "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"},
                                "description": "The verification code printed on the certificate; case, "
                                               "spaces and hyphens do not matter"}],
                "responses": {"200": _ok(_ref("Certificate")),
                              "404": _error_response("No certificate has this code, or the code is malformed")},
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _ok({"type": "object"})},
            }
        },
        "/api/v1/me": {
            "get": _secured("profile:read", {
                "operationId": "getMe",
                "summary": "The token owner's profile",
                "responses": {"200": _ok(_ref("User"))},
            })
        },
        "/api/v1/tracks": {
            "get": _secured("catalog:read", {
                "operationId": "listTracks",
                "summary": "Active tracks with courses and open cohorts; paged",
                "parameters": paging_parameters,
                "responses": {"200": _ok({
                    "type": "object",
                    "properties": {"tracks": {"type": "array", "items": _ref("Track")}, **paging_fields},
                    "required": ["tracks", "page", "per_page", "total"],
                }), "400": _error_response("A malformed page or per_page")},
            })
        },
        "/api/v1/cohorts/{cohort_id}": {
            "get": _secured("catalog:read", {
                "operationId": "getCohort",
                "summary": "One cohort",
                "parameters": [{"name": "cohort_id", "in": "path", "required": True,
                                "schema": {"type": "integer"}}],
                "responses": {"200": _ok(_ref("Cohort")), "404": _error_response("No such cohort")},
            })
        },
        "/api/v1/enrollments": {
            "get": _secured("enrollments:read", {
                "operationId": "listEnrollments",
                "summary": "The token owner's enrollments; paged",
                "parameters": paging_parameters,
                "responses": {"200": _ok({
                    "type": "object",
                    "properties": {"enrollments": {"type": "array", "items": _ref("Enrollment")}, **paging_fields},
                    "required": ["enrollments", "page", "per_page", "total"],
                }), "400": _error_response("A malformed page or per_page")},
            }),
            "post": _secured("enrollments:write", {
                "operationId": "createEnrollment",
                "summary": "Ask to join a cohort (enrolled, waitlisted or pending approval)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"cohort_id": {"type": "integer"}},
                        "required": ["cohort_id"],
                    }}},
                },
                "responses": {
                    "201": _ok(_ref("Enrollment"), "Created"),
                    "400": _error_response("Malformed body, or the cohort is closed"),
                    "404": _error_response("No such cohort"),
                    "409": _error_response("Already enrolled, waiting or pending"),
                },
            }),
        },
    }
    for item in paths.values():
        for operation in item.values():
            operation["responses"]["429"] = RATE_LIMITED
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AI Saemaul Academy API",
            "version": "1.0.0",
            "description": "Personal access tokens are created on the profile page or with "
                           "`academy token create EMAIL`. Send them as `Authorization: Bearer <token>`.\n\n"
                           "Lists: every list endpoint takes `page` (from 1) and `per_page` (1 to 200, 50 by "
                           "default) and answers its items under its own key with `page`, `per_page` and `total` "
                           "beside them; filters are query parameters named as the fields they filter, and a "
                           "filter that names nothing known answers 404, a malformed one 400. Errors are "
                           "`{\"error\": {\"status\", \"code\", \"message\", \"request_id\"}}`, the message "
                           "in the token owner's language.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Personal access token. Scopes: "
                                   + ", ".join(f"{k} ({v})" for k, v in SCOPES.items()),
                }
            },
        },
        "paths": paths,
    }
