"""http_api: internal HTTP endpoints an admin registers, called by name with checked arguments.

The model never writes a URL: it names an endpoint and gives its arguments. The admin's entry
fixes the method (GET or POST), a URL template whose host must be allow-listed, a JSON schema for
the arguments, headers read from server variables (`env:TOOL_SECRET_…`, see settings.TOOL_SECRETS)
and optionally roles narrower than the tool's. Path values are quoted into their own segment
(`http_api_guard`), the final URL is checked against `allowed_hosts` again, redirects are not
followed and the body is read only up to `max_response_bytes`.

Options (`ToolSetting.options`):
    {"allowed_hosts": ["status.internal.example"], "max_response_bytes": 65536,
     "endpoints": {"order_status": {
         "description": "An order's status and delivery date.", "method": "GET",
         "url": "https://status.internal.example/orders/{order_id}",
         "arguments": {"type": "object", "properties": {"order_id": {"type": "string"}},
                       "required": ["order_id"]},
         "headers": {"Authorization": "env:TOOL_SECRET_STATUS_TOKEN"},
         "roles": ["agent", "admin"]}}}
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import jsonschema
from django.conf import settings

from chatbot.agent.tools.base import Tool, ToolContext, ToolFailed, ToolResult, compact_json
from chatbot.agent.tools.http_api_guard import (
    allowed_hosts,
    endpoint_problems,
    host_refusal,
    hosts_problems,
    options_problems,
    placeholders,
    secret_names,
    size_problems,
    url_fill,
)

# A turn waits at most this long for one API, whatever the tool's timeout says.
MAX_TIMEOUT_S = 30.0
MESSAGE_CHARS = 300


@dataclass(frozen=True)
class Answered:
    url: str
    status: int
    reason: str
    content_type: str
    raw: bytes
    text: str
    truncated: bool


class HttpApi(Tool):
    name = "http_api"
    label = "Internal API"
    description = (
        "Call one of the team's internal APIs that an admin registered (such as an order's "
        "status or an account lookup): give the endpoint's name and its arguments. Only the "
        "endpoints listed exist."
    )
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "endpoint": {
                "type": "string",
                "minLength": 1,
                "maxLength": 60,
                "description": "The name of one of the listed endpoints.",
            },
            "arguments": {"type": "object", "description": "The endpoint's arguments by name."},
        },
        "required": ["endpoint"],
        "additionalProperties": False,
    }
    default_timeout_s = 10.0
    # Nothing is reachable until an admin allow-lists a host and registers an endpoint.
    default_options: ClassVar[dict[str, Any]] = {
        "allowed_hosts": [],
        "endpoints": {},
        "max_response_bytes": 65536,
    }
    example = (
        "What is the status of order 1042?",
        {"endpoint": "order_status", "arguments": {"order_id": "1042"}},
    )

    def describe(self, options: dict[str, Any]) -> str:
        listed = "; ".join(
            _endpoint_line(name, endpoint)
            for name, endpoint in _endpoints(options).items()
            if isinstance(endpoint, dict)
        )
        return f"{self.description} Endpoints: {listed or 'none yet'}."

    def options_errors(self, options: dict[str, Any]) -> list[str]:
        return options_problems(options)

    def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        options = {**self.default_options, **context.options}
        name = str(arguments.get("endpoint", ""))[:60]
        endpoints = _endpoints(options)
        endpoint = endpoints.get(name)
        if not isinstance(endpoint, dict):
            available = ", ".join(sorted(endpoints)) or "none"
            raise ToolFailed(f"There is no API endpoint '{name}'. Available: {available}.")
        _roles_check(name, endpoint, context)
        hosts = allowed_hosts(options)
        problems = hosts_problems(options["allowed_hosts"])
        problems += size_problems(options["max_response_bytes"])
        problems += endpoint_problems(name, endpoint, hosts)
        if problems:
            raise ToolFailed(
                f"The API endpoint '{name}' is not set up correctly: {' '.join(problems)}"
            )
        values = arguments.get("arguments") or {}
        _arguments_check(name, endpoint, values)
        method = str(endpoint.get("method", "GET"))
        url = _url(name, endpoint, values, hosts)
        rest = {k: v for k, v in values.items() if k not in placeholders(endpoint["url"])}
        answered = _send(
            name,
            method,
            url,
            rest,
            headers=_headers(name, endpoint),
            cap=int(options["max_response_bytes"]),
            timeout_s=min(context.timeout_s, MAX_TIMEOUT_S),
        )
        return _result(name, method, answered)


def _endpoints(options: dict[str, Any]) -> dict[str, Any]:
    endpoints = options.get("endpoints")
    return endpoints if isinstance(endpoints, dict) else {}


def _endpoint_line(name: str, endpoint: dict[str, Any]) -> str:
    schema = endpoint.get("arguments")
    schema = schema if isinstance(schema, dict) else {}
    properties = schema.get("properties")
    required = schema.get("required") or []
    names = [
        f"{arg} (required)" if arg in required else str(arg)
        for arg in (properties if isinstance(properties, dict) else {})
    ]
    description = str(endpoint.get("description", "")).strip().rstrip(".")
    return f"{name}: {description or 'no description'} (arguments: {', '.join(names) or 'none'})"


def _roles_check(name: str, endpoint: dict[str, Any], context: ToolContext) -> None:
    wanted = endpoint.get("roles")
    if wanted is None:
        return  # the tool's own roles, already checked by the turn loop
    mine = set(context.user.groups.values_list("name", flat=True))
    if not mine.intersection(wanted if isinstance(wanted, list) else []):
        raise ToolFailed(f"You may not call '{name}'.")


def _arguments_check(name: str, endpoint: dict[str, Any], values: Any) -> None:
    schema = endpoint.get("arguments") or {"type": "object"}
    properties = schema.get("properties") or {}
    # Only what the admin declared is sent: an extra argument could become a query parameter
    # or a JSON field the endpoint acts on.
    given = values if isinstance(values, dict) else {}
    unknown = sorted(str(k)[:40] for k in given if k not in properties)
    if unknown:
        takes = ", ".join(sorted(properties)) or "no arguments"
        raise ToolFailed(
            f"'{name}' has no argument {', '.join(repr(k) for k in unknown)}; it takes: {takes}."
        )
    try:
        jsonschema.validate(values, schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        message = f"{where + ': ' if where else ''}{exc.message}"[:MESSAGE_CHARS]
        raise ToolFailed(f"The arguments for '{name}' are not valid: {message}.") from exc


def _url(name: str, endpoint: dict[str, Any], values: dict[str, Any], hosts: set[str]) -> str:
    try:
        url = url_fill(endpoint["url"], values)
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ToolFailed(f"The call to '{name}' was refused: {exc}.") from exc
    refusal = host_refusal(parsed, hosts)
    if refusal:
        raise ToolFailed(f"The call to '{name}' was refused: {refusal}.")
    return url


def _headers(name: str, endpoint: dict[str, Any]) -> dict[str, str]:
    # Compressed bodies would be inflated before the size cap could stop them.
    headers = {"Accept-Encoding": "identity"}
    for header, variable in secret_names(endpoint).items():
        value = settings.TOOL_SECRETS.get(variable)
        if not value:
            raise ToolFailed(f"The API endpoint '{name}' is not configured: {variable} is not set.")
        headers[header] = value
    return headers


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [_query_value(v) for v in value]
    return compact_json(value)


def _send(
    name: str,
    method: str,
    url: str,
    rest: dict[str, Any],
    *,
    headers: dict[str, str],
    cap: int,
    timeout_s: float,
) -> Answered:
    if method == "GET":
        body: dict[str, Any] = {
            "params": {k: _query_value(v) for k, v in rest.items() if v is not None}
        }
    else:
        body = {"json": rest}
    deadline = time.monotonic() + timeout_s
    try:
        # trust_env off: no proxy from the environment and no .netrc credentials sent along.
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client,
            client.stream(method, url, headers=headers, **body) as response,
        ):
            _redirect_check(name, response)
            raw, truncated = _read_capped(name, response, cap, deadline, timeout_s)
    except httpx.TimeoutException as exc:
        raise ToolFailed(
            f"The API did not answer '{name}' within {timeout_s:g} s.", detail=repr(exc)
        ) from exc
    except httpx.HTTPError as exc:
        raise ToolFailed(
            f"The API for '{name}' could not be reached.", detail=f"{type(exc).__name__}: {exc}"
        ) from exc
    return Answered(
        url=str(response.request.url),
        status=response.status_code,
        reason=response.reason_phrase,
        content_type=response.headers.get("content-type", ""),
        raw=raw,
        text=_decode(raw, response.charset_encoding),
        truncated=truncated,
    )


def _redirect_check(name: str, response: httpx.Response) -> None:
    if not 300 <= response.status_code < 400:
        return
    try:
        target = response.url.join(response.headers.get("location", "")).host or "nowhere"
    except httpx.InvalidURL:
        target = "an invalid URL"
    raise ToolFailed(
        f"The API answered '{name}' with a redirect (to {target[:100]}); it was not followed."
    )


def _read_capped(
    name: str, response: httpx.Response, cap: int, deadline: float, timeout_s: float
) -> tuple[bytes, bool]:
    """At most `cap` bytes of the body, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        # httpx times each read; a body that trickles in must still end within the timeout.
        if time.monotonic() > deadline:
            raise ToolFailed(f"The API did not answer '{name}' within {timeout_s:g} s.")
        if size + len(chunk) > cap:
            chunks.append(chunk[: cap - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _decode(raw: bytes, encoding: str | None) -> str:
    try:
        return raw.decode(encoding or "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _size(count: int) -> str:
    return f"{count} B" if count < 1000 else f"{count / 1000:.1f} kB"


def _result(name: str, method: str, answered: Answered) -> ToolResult:
    text = answered.text
    if "json" in answered.content_type and not answered.truncated:
        # Not JSON after all: the model reads the body as it came.
        with contextlib.suppress(ValueError):
            text = compact_json(json.loads(text))
    cut = ", cut" if answered.truncated else ""
    status = (
        f"{answered.status} {answered.reason}" if answered.status >= 300 else str(answered.status)
    )
    content = f"HTTP {answered.status} {answered.reason}\n{text}"
    if answered.truncated:
        content += f"\n[response cut at {len(answered.raw):,} bytes]"
    return ToolResult(
        summary=f"{method} {name} → {status} ({_size(len(answered.raw))}{cut})",
        content=content,
        data={
            "endpoint": name,
            "method": method,
            "url": answered.url,
            "status": answered.status,
            "body": answered.text,
            "truncated": answered.truncated,
            "content_type": answered.content_type,
        },
    )
