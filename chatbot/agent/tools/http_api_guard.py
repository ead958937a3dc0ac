"""What keeps the `http_api` tool on the hosts an admin allow-listed: checks of the admin's
endpoints (a literal, allow-listed host in every URL template; placeholders only in its path) and
the filling of a template with the model's values, each quoted into its own path segment, so no
value can add a host, a scheme, a '..', a query or a fragment. The URL that results is parsed
again with httpx's own parser and refused unless its host is allow-listed, exactly."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jsonschema
from django.conf import settings

from chatbot.accounts import roles

METHODS = ("GET", "POST")
OPTION_KEYS = ("allowed_hosts", "endpoints", "max_response_bytes")
ENDPOINT_KEYS = ("description", "method", "url", "arguments", "headers", "roles")
# Past a megabyte one call would flood the model's context and the trace for nothing.
MAX_RESPONSE_RANGE = (1, 1_000_000)
ENDPOINT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,80}$")
SECRET_REF = re.compile(r"^env:(TOOL_SECRET_[A-Z0-9_]+)$")
# Host names and IPv4 addresses in lower case: one spelling per host, so "is it allowed" is a
# plain equality test and never a suffix or pattern match.
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
# Host, framing and connection headers belong to the HTTP client: a Host header could send an
# allow-listed connection to another virtual host.
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def allowed_hosts(options: dict[str, Any]) -> set[str]:
    hosts = options.get("allowed_hosts")
    if not isinstance(hosts, list):
        return set()
    return {h for h in hosts if isinstance(h, str) and HOST_NAME.match(h)}


def host_refusal(url: httpx.URL, hosts: set[str]) -> str:
    """Why a request may not go to `url`, in words; "" when its host is allow-listed."""
    if url.scheme not in {"http", "https"}:
        return f"only http and https are allowed, not '{url.scheme[:20]}'"
    if url.userinfo:
        return "a URL may not carry a user name or password"
    host = url.host.lower()
    if host not in hosts:
        return f"the host {host[:100] or '(none)'} is not allow-listed"
    return ""


def placeholders(template: str) -> list[str]:
    names: list[str] = []
    for name in PLACEHOLDER.findall(template):
        if name not in names:
            names.append(name)
    return names


def url_fill(template: str, arguments: dict[str, Any]) -> str:
    """The template with each placeholder replaced by its value, quoted so that it stays one
    path segment ('/', '?', '#', '@' and ':' are escaped); raises ValueError in words."""
    values: dict[str, str] = {}
    for name in placeholders(template):
        value = arguments.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"'{name}' must be text or a number")
        text = str(value)
        # httpx resolves dot segments, so '..' would climb out of the admin's path.
        if text.strip() in {"", ".", ".."}:
            raise ValueError(f"'{name}' may not be empty, '.' or '..'")
        values[name] = quote(text, safe="")
    # One pass: a value that looks like "{other}" is quoted, never filled in again.
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def options_problems(options: dict[str, Any]) -> list[str]:
    """Everything wrong with an admin's options, in words."""
    problems = [f"Unknown option '{key}'." for key in sorted(set(options) - set(OPTION_KEYS))]
    problems += hosts_problems(options.get("allowed_hosts", []))
    problems += size_problems(options.get("max_response_bytes", 65536))
    endpoints = options.get("endpoints", {})
    if not isinstance(endpoints, dict):
        return [*problems, "endpoints must be an object of named endpoints."]
    hosts = allowed_hosts(options)
    for name, endpoint in endpoints.items():
        problems += endpoint_problems(name, endpoint, hosts)
        if isinstance(endpoint, dict):
            problems += secret_problems(name, endpoint)
    return problems


def hosts_problems(value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["allowed_hosts must be a list of host names."]
    bad = [h for h in value if not isinstance(h, str) or not HOST_NAME.match(h)]
    if bad:
        shown = ", ".join(repr(h) for h in bad[:5])
        return [f"allowed_hosts holds entries that are not lower-case host names: {shown}."]
    return []


def size_problems(value: Any) -> list[str]:
    low, high = MAX_RESPONSE_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return [f"max_response_bytes must be a whole number from {low:,} to {high:,}."]
    return []


def endpoint_problems(name: Any, endpoint: Any, hosts: set[str]) -> list[str]:
    """What makes one endpoint unusable (a missing secret aside: see `secret_problems`)."""
    if not isinstance(name, str) or not ENDPOINT_NAME.match(name):
        return [f"Endpoint name {str(name)[:60]!r} must be lower-case letters, digits and _."]
    if not isinstance(endpoint, dict):
        return [f"Endpoint '{name}' must be an object."]
    where = f"Endpoint '{name}'"
    problems = [
        f"{where}: unknown key '{key}'." for key in sorted(set(endpoint) - set(ENDPOINT_KEYS))
    ]
    if endpoint.get("method", "GET") not in METHODS:
        problems.append(f"{where}: method must be GET or POST.")
    if not isinstance(endpoint.get("description", ""), str):
        problems.append(f"{where}: description must be text.")
    schema = endpoint.get("arguments", {"type": "object"})
    problems += [f"{where}: {p}" for p in _schema_problems(schema)]
    url = endpoint.get("url")
    if not isinstance(url, str) or not url:
        return [*problems, f"{where}: url must be a URL template."]
    problems += [f"{where}: {p}" for p in _template_problems(url, hosts)]
    problems += [f"{where}: {p}" for p in _placeholder_problems(url, schema)]
    problems += [f"{where}: {p}" for p in _header_problems(endpoint.get("headers", {}))]
    problems += [f"{where}: {p}" for p in _roles_problems(endpoint.get("roles"))]
    return problems


def _schema_problems(schema: Any) -> list[str]:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return ['arguments must be a JSON schema with "type": "object".']
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [f"arguments is not a valid JSON schema: {exc.message}."]
    if not isinstance(schema.get("properties", {}), dict):
        return ["arguments.properties must be an object."]
    return []


def _template_problems(url: str, hosts: set[str]) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return [f"url is not a URL: {exc}."]
    if "{" in parts.scheme + parts.netloc or "}" in parts.scheme + parts.netloc:
        return ["placeholders may only be in the URL's path, never its host."]
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return ["url may not have a query or fragment; GET sends the other arguments as the query."]
    try:
        parsed = httpx.URL(PLACEHOLDER.sub("x", url))
    except httpx.InvalidURL as exc:
        return [f"url is not a URL: {exc}."]
    refusal = host_refusal(parsed, hosts)
    return [f"url: {refusal}."] if refusal else []


def _placeholder_problems(url: str, schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    return [
        f"the URL uses {{{name}}}, which its arguments must list and require."
        for name in placeholders(url)
        if name not in properties or name not in required
    ]


def _header_problems(headers: Any) -> list[str]:
    if not isinstance(headers, dict):
        return ["headers must be an object of header names and env:TOOL_SECRET_… values."]
    problems = []
    for header, value in headers.items():
        if not HEADER_NAME.match(header) or header.lower() in RESERVED_HEADERS:
            problems.append(f"header {header[:80]!r} may not be set.")
        elif not isinstance(value, str) or not SECRET_REF.match(value):
            problems.append(
                f"header '{header}' must name a server variable as env:TOOL_SECRET_…; "
                "values are never written into the settings."
            )
    return problems


def _roles_problems(value: Any) -> list[str]:
    if value is None:
        return []
    known = set(roles.ROLE_PERMISSIONS)
    if not isinstance(value, list) or not value or not set(value) <= known:
        return [f"roles must be a non-empty list of: {', '.join(sorted(known))}."]
    return []


def secret_names(endpoint: dict[str, Any]) -> dict[str, str]:
    """Header name -> the TOOL_SECRET_ variable it is read from."""
    headers = endpoint.get("headers")
    if not isinstance(headers, dict):
        return {}
    found = {
        h: SECRET_REF.match(v)
        for h, v in headers.items()
        if isinstance(v, str) and HEADER_NAME.match(h) and h.lower() not in RESERVED_HEADERS
    }
    return {h: match.group(1) for h, match in found.items() if match}


def secret_problems(name: str, endpoint: dict[str, Any]) -> list[str]:
    return [
        f"Endpoint '{name}': the environment variable {variable} is not set on the server."
        for variable in secret_names(endpoint).values()
        if not settings.TOOL_SECRETS.get(variable)
    ]
