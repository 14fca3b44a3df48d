"""The schema says how every endpoint can fail, not only how it succeeds: a
drf-spectacular post-processing hook adds the error answers (all JSON, `Error`)."""

from __future__ import annotations

from typing import Any

ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def add_error_responses(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            errors = {
                "401": "No API key, or one that is unknown, revoked or expired.",
                "429": "Too many requests with this API key (VECTIS_API_RATE).",
            }
            if method != "get":
                errors["403"] = "The API key is read-only (this needs the technician scope)."
            if "{id}" in path:
                errors["404"] = "There is no such object."
            queried = any(p.get("in") == "query" for p in operation.get("parameters", []))
            if operation.get("requestBody") or queried:
                errors["400"] = "Some values are not valid (error.field_errors says which)."
            responses = operation.setdefault("responses", {})
            for code, sentence in errors.items():
                responses.setdefault(code, {**ERROR, "description": sentence})
    return result
