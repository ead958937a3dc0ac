"""The extraction schemas an admin defines for the `extract` tool (its options), how they are
checked before they are saved, and how a model's output is checked against one.

An entry: {"description": "...", "schema": {a JSON schema: type object, flat properties of
string, number, integer, boolean, enum or null}, "examples": [{"text": "...", "fields": {...}}]}.
The examples are optional and shown to the model as worked examples (a small model copies the
shape and the judgement of one far better than it follows a description).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import jsonschema

MAX_PROPERTIES = 20
MAX_EXAMPLES = 3
SCALAR_TYPES = {"string", "number", "integer", "boolean", "null"}
# Keywords that would nest a value or branch the shape: the page writes one CSV column per
# property, and a small model fills a flat object far more reliably than a nested one.
NESTING_KEYWORDS = {
    "properties",
    "items",
    "prefixItems",
    "additionalProperties",
    "patternProperties",
    "$ref",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "if",
}

# A demo schema small enough for the bundled 270M model: six fields, every one required (a
# grammar lets a small model skip optional ones, and it does), null where a text may lack it.
# No worked examples: with the bundled model they made things worse (it copied the last
# example's nulls and summary into every answer; names were right on 4 of 4 messages without).
DEFAULT_SCHEMAS: dict[str, dict[str, Any]] = {
    "contact_request": {
        "description": "A customer's message: who wrote, about which product, their mood, "
        "whether they want money back, and a one-line summary.",
        "schema": {
            "type": "object",
            "properties": {
                "customer_name": {"type": ["string", "null"], "maxLength": 120},
                "email": {"type": ["string", "null"], "maxLength": 200},
                "product": {
                    "enum": [
                        "billing",
                        "login",
                        "export",
                        "shipping",
                        "integrations",
                        "mobile",
                        None,
                    ]
                },
                "sentiment": {"enum": ["positive", "neutral", "negative"]},
                "wants_refund": {"type": "boolean"},
                "summary": {"type": "string", "minLength": 1, "maxLength": 300},
            },
            "required": [
                "customer_name",
                "email",
                "product",
                "sentiment",
                "wants_refund",
                "summary",
            ],
            "additionalProperties": False,
        },
    }
}


@dataclass(frozen=True)
class Definition:
    """One admin schema as the extraction uses it."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    examples: tuple[tuple[str, dict[str, Any]], ...] = ()

    @classmethod
    def from_entry(cls, name: str, entry: dict[str, Any]) -> Definition:
        examples = entry.get("examples")
        return cls(
            name=name,
            schema=dict(entry.get("schema") or {}),
            description=str(entry.get("description") or ""),
            examples=tuple(
                (str(e["text"]), dict(e["fields"]))
                for e in (examples if isinstance(examples, list) else [])[:MAX_EXAMPLES]
                if isinstance(e, dict)
                and isinstance(e.get("text"), str)
                and isinstance(e.get("fields"), dict)
            ),
        )

    @property
    def columns(self) -> list[str]:
        return columns_of(self.schema)

    @property
    def decoding(self) -> dict[str, Any]:
        return decoding_schema(self.schema)


def schemas_of(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    schemas = options.get("schemas")
    if not isinstance(schemas, dict):
        return {}
    return {name: entry for name, entry in schemas.items() if isinstance(entry, dict)}


def columns_of(schema: dict[str, Any]) -> list[str]:
    """The schema's property names: those in `required` in its order, then the rest. Settings
    are stored as jsonb, which keeps an array's order but not an object's keys."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = schema.get("required")
    listed = [n for n in required if n in properties] if isinstance(required, list) else []
    return list(dict.fromkeys([*listed, *properties]))


def decoding_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The admin's schema as the model is held to it: properties in column order (a grammar
    writes them in the order given, so a summary listed last comes after the facts it sums
    up), and none beyond the declared ones unless the admin said otherwise."""
    decoded = copy.deepcopy(schema)
    properties = decoded.get("properties", {})
    decoded["properties"] = {name: properties[name] for name in columns_of(decoded)}
    decoded.setdefault("additionalProperties", False)
    return decoded


def output_problem(schema: dict[str, Any], raw: str) -> tuple[dict[str, Any] | None, str]:
    """The parsed fields, or why the output does not fit `schema` (in words)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None, "the output was not valid JSON"
    if not isinstance(value, dict):
        return None, "the output was not a JSON object"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        return None, f"{where + ': ' if where else ''}{exc.message}"
    return value, ""


def _property_problem(name: str, spec: object) -> str:
    if not isinstance(spec, dict):
        return f'property \'{name}\' must be an object such as {{"type": "string"}}'
    nested = sorted(NESTING_KEYWORDS.intersection(spec))
    if nested:
        return f"property '{name}' uses {', '.join(nested)}; only flat values are extracted"
    kinds = spec.get("type")
    kinds_list = kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []
    if any(k not in SCALAR_TYPES for k in kinds_list):
        return (
            f"property '{name}' has type {json.dumps(kinds)}; use string, number, integer, "
            "boolean or null"
        )
    enum = spec.get("enum")
    if enum is not None and (
        not isinstance(enum, list) or any(isinstance(v, dict | list) for v in enum)
    ):
        return f"property '{name}' has an enum that is not a list of plain values"
    if not kinds_list and enum is None and "const" not in spec:
        return f"property '{name}' needs a type or an enum"
    return ""


def _example_problems(name: str, entry: dict[str, Any]) -> list[str]:
    examples = entry.get("examples", [])
    if not isinstance(examples, list) or len(examples) > MAX_EXAMPLES:
        return [f"Schema '{name}': \"examples\" must be a list of at most {MAX_EXAMPLES}."]
    decoded = decoding_schema(entry["schema"])
    problems = []
    for number, example in enumerate(examples, start=1):
        if not isinstance(example, dict) or not isinstance(example.get("text"), str):
            problems.append(f"Schema '{name}': example {number} needs a \"text\".")
            continue
        _, problem = output_problem(decoded, json.dumps(example.get("fields")))
        if problem:
            problems.append(f"Schema '{name}': example {number}'s fields do not fit: {problem}.")
    return problems


def schema_problems(name: str, entry: object) -> list[str]:
    """Why an admin's schema entry cannot be used, in words; [] when it can."""
    if not isinstance(entry, dict) or not isinstance(entry.get("schema"), dict):
        return [f"Schema '{name}' needs a \"schema\" object."]
    schema = entry["schema"]
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [f"Schema '{name}' is not a valid JSON schema: {exc.message}."]
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, dict) or not properties:
        return [f"Schema '{name}' must be of type object with at least one property."]
    problems = []
    if len(properties) > MAX_PROPERTIES:
        problems.append(
            f"Schema '{name}' has {len(properties)} properties; the limit is {MAX_PROPERTIES}."
        )
    for prop, spec in properties.items():
        problem = _property_problem(prop, spec)
        if problem:
            problems.append(f"Schema '{name}': {problem}.")
    return problems or _example_problems(name, entry)
