"""The error answers both APIs give on every route, written into their OpenAPI documents.

The errors come from exception handlers that apply to a whole API (authentication, rate limits,
unparsable or oversized bodies, bad parameters), not from the routes, so ninja does not see them.
`DocumentedAPI` adds each to the operations it can happen on, with its body's shape, so the
published schema lists every status code a route really answers with: tests/test_api_fuzz.py
checks that with schemathesis against /api/openapi.json and /v1/openapi.json.
"""

from __future__ import annotations

from typing import Any

from ninja import NinjaAPI

from chatbot.api.errors import NO_NUL_PATTERN

# The largest id PostgreSQL's bigint primary keys hold; a larger one is refused as a bad value.
MAX_ID = 2**63 - 1

_DETAIL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "detail": {
            "type": "string",
            "description": "What went wrong, in words a person can act on.",
        }
    },
    "required": ["detail"],
}

_VALIDATION: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_DETAIL["properties"],
        "errors": {
            "type": "array",
            "description": "One entry per bad field.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
    },
    "required": ["detail", "errors"],
}

_LIMIT: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_DETAIL["properties"],
        "limit": {"type": "string", "enum": ["rate", "quota", "concurrency"]},
        "retry_after": {"type": "integer", "description": "Seconds; also the Retry-After header."},
    },
    "required": ["detail", "limit", "retry_after"],
}

# OpenAI's error shape, which /v1 answers every error with.
OPENAI_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}

# When each error can happen: on every route, on routes with parameters or a body, on routes that
# read a body, or on routes with an id in the path.
EVERY, INPUT, BODY, PATH_ID = "every", "input", "body", "path id"

API_ERRORS: dict[int, tuple[str, str, dict[str, Any]]] = {
    400: (BODY, "The body is not a JSON object, or its question is empty or too long.", _DETAIL),
    401: (EVERY, "No credentials, or an unknown, revoked or expired API key.", _DETAIL),
    403: (EVERY, "The account or the key's scopes do not allow this route.", _DETAIL),
    404: (PATH_ID, "No such object among the caller's own.", _DETAIL),
    413: (BODY, "The body is larger than the server accepts.", _DETAIL),
    422: (INPUT, "A parameter or field is missing or not valid.", _VALIDATION),
    429: (EVERY, "Over the rate limit, the daily token quota or the answers at once.", _LIMIT),
}

OPENAI_ERRORS: dict[int, tuple[str, str, dict[str, Any]]] = {
    400: (INPUT, "The request is not valid; `error.param` names the field.", OPENAI_ERROR),
    401: (EVERY, "No API key, or an unknown, revoked or expired one.", OPENAI_ERROR),
    403: (EVERY, "The key's owner or scopes do not allow this route.", OPENAI_ERROR),
    413: (BODY, "The body is larger than the server accepts.", OPENAI_ERROR),
    429: (
        EVERY,
        "Over the rate limit, the daily token quota or the answers at once.",
        OPENAI_ERROR,
    ),
}


def _applies(when: str, operation: dict[str, Any]) -> bool:
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    if when == EVERY:
        return True
    if when == BODY:
        return has_body
    if when == INPUT:
        return has_body or bool(parameters)
    return any(p.get("in") == "path" for p in parameters)


def _merged(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    out = dict(left)
    for key, value in right.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def _by_text_status(responses: dict[Any, Any]) -> dict[str, Any]:
    """ninja keys its responses by int and `openapi_extra` by text: as JSON the two would be the
    same key twice (Swagger UI refuses the document), so they become one entry per status."""
    out: dict[str, Any] = {}
    for status, response in responses.items():
        key = str(status)
        out[key] = _merged(out[key], response) if key in out else response
    return out


def errors_documented(
    schema: dict[str, Any], errors: dict[int, tuple[str, str, dict[str, Any]]]
) -> dict[str, Any]:
    """Add each error to the operations it applies to, unless the route documents it itself."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = _by_text_status(operation.get("responses", {}))
            operation["responses"] = responses
            for status, (when, description, body) in errors.items():
                if str(status) in responses or not _applies(when, operation):
                    continue
                responses[str(status)] = {
                    "description": description,
                    "content": {"application/json": {"schema": body}},
                }
    return schema


ANY_JSON = "AnyJsonWithoutNul"
_ANY_JSON_WITHOUT_NUL: dict[str, Any] = {
    "description": "Any JSON value whose texts (keys included) hold no NUL character.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL_PATTERN},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": f"#/components/schemas/{ANY_JSON}"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL_PATTERN},
            "additionalProperties": {"$ref": f"#/components/schemas/{ANY_JSON}"},
        },
    ],
}


def _texts_without_nul(node: Any, components: dict[str, Any], seen: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _texts_without_nul(item, components, seen)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        if name not in seen:
            seen.add(name)
            _texts_without_nul(components.get(name), components, seen)
        return
    if node.get("type") == "string" and not {"pattern", "enum", "const", "format"} & node.keys():
        node["pattern"] = NO_NUL_PATTERN
    if node.get("type") == "object" or "properties" in node:
        # Unknown fields are accepted and ignored, but the parser still reads them.
        node.setdefault("propertyNames", {"pattern": NO_NUL_PATTERN})
        if node.get("additionalProperties") in (None, True, {}):
            node["additionalProperties"] = {"$ref": f"#/components/schemas/{ANY_JSON}"}
    for key in ("properties", "additionalProperties"):
        value = node.get(key)
        if isinstance(value, dict):
            for child in value.values() if key == "properties" else [value]:
                _texts_without_nul(child, components, seen)
    for key in ("items", "anyOf", "oneOf", "allOf"):
        _texts_without_nul(node.get(key), components, seen)


def request_texts_documented(schema: dict[str, Any]) -> dict[str, Any]:
    """Every text a request body may carry is stated to hold no NUL character, which
    `errors.ObjectParser` refuses (400) before PostgreSQL would (500)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    seen: set[str] = {ANY_JSON}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _texts_without_nul(media.get("schema"), components, seen)
    components[ANY_JSON] = _ANY_JSON_WITHOUT_NUL
    components["OpenAIError"] = OPENAI_ERROR
    return schema


class DocumentedAPI(NinjaAPI):
    """A NinjaAPI whose OpenAPI document includes the errors its exception handlers answer."""

    def __init__(
        self, *args: Any, errors: dict[int, tuple[str, str, dict[str, Any]]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.documented_errors = errors

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> Any:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        return errors_documented(request_texts_documented(schema), self.documented_errors)
