"""Turning ninja's validation errors into sentences a person can act on."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.parser import Parser

BAD_JSON = 'The request body is not a valid JSON object. Send e.g. {"message": "..."}.'
NUL_IN_TEXT = (
    "The request body contains a NUL character (\\u0000), which text here cannot hold "
    "(PostgreSQL refuses it). Remove it and send the request again."
)
# What the published schemas say of every text a body carries (chatbot.api.contract).
NO_NUL_PATTERN = "^[^\\x00]*$"
# Text that is not blank as str.strip() sees it (which the services use): the characters
# str.isspace() lists, spelled out, since JSON Schema's \\s (ECMA) is a different set.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"


class NulInText(ValueError):
    pass


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class ObjectParser(Parser):
    """Bodies must be JSON objects: ninja would otherwise read `5` or `"text"` as an empty form.
    No text in them may hold a NUL character: every text ends up in PostgreSQL (questions, titles,
    tool calls in jsonb), which refuses it with a server error."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        data = super().parse_body(request)
        if not isinstance(data, dict):
            raise ValueError("the body is JSON but not an object")
        if _has_nul(data):
            raise NulInText("a text holds a NUL character")
        return data


def too_big() -> str:
    return f"The request body is too large; the limit is {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes."


def is_unparsable_body(exc: HttpError) -> bool:
    """ninja's own words for a body that is not JSON are too terse to act on."""
    return exc.status_code == 400 and exc.message.startswith("Cannot parse request body")


def unparsable_message(exc: HttpError) -> str:
    """What to tell the caller of a body `is_unparsable_body` found: ninja keeps why as the cause."""
    return NUL_IN_TEXT if isinstance(exc.__cause__, NulInText) else BAD_JSON


# The pydantic error types people hit most, in plain words; anything else keeps pydantic's text.
_PLAIN: dict[str, str] = {
    "missing": "is required",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "list_type": "must be a list",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "literal_error": "must be one of the allowed values",
    "extra_forbidden": "is not a known field",
}

_SUBJECT = re.compile(r"^(Input|String|Value|List|Dictionary|Decimal|Float|Integer) should")

# Where ninja says the value came from; "body.payload.message" is just "message" to the caller.
_SOURCES = {"body", "query", "path", "header", "cookie", "form", "file"}


def _field_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    # The first remaining part is the view's parameter name (e.g. "payload"), not a field.
    if len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def _sentence(error: dict[str, Any]) -> tuple[str, str]:
    field = _field_name(error.get("loc", ()))
    kind = str(error.get("type", ""))
    plain = _PLAIN.get(kind)
    if plain is None:
        # "Input should be greater than 0" reads as "'page' should be greater than 0".
        plain = _SUBJECT.sub("should", str(error.get("msg") or "is not valid"), count=1)
    if kind == "literal_error" and "ctx" in error:
        plain = f"must be one of {error['ctx'].get('expected', 'the allowed values')}"
    return field, plain


def validation_errors(errors: Iterable[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """One readable summary plus a per-field list, e.g. "'message' is required."."""
    fields: list[dict[str, str]] = []
    for error in errors:
        field, plain = _sentence(error)
        if not field or field == "payload":
            fields.append({"field": "", "message": "The request body is missing or not an object."})
        else:
            fields.append({"field": field, "message": f"'{field}' {plain}."})
    summary = " ".join(dict.fromkeys(f["message"] for f in fields)) or "The request is not valid."
    return summary, fields
