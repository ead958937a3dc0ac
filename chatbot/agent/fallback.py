"""Availability: what the answer's stream tries when a model fails before its first piece of text.

The route's plan (from the availability rule, `chatbot.llm.routing`) is: the chosen model, retried
`retries` times with a doubling backoff (0.2 s, then 0.4 s, ...), then each fallback in order,
retried alike. The fallbacks are already limited to the models the sensitivity rules allow for this
step. Once a piece of text has reached the person, a failure ends the turn instead: starting again
on another model would show them two different beginnings.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from chatbot.llm.router import Route
from chatbot.llm.types import EndpointConfig, ModelError

REASON_LIMIT = 200


@dataclass(frozen=True)
class Attempt:
    endpoint: EndpointConfig
    number: int  # 1-based, over the whole plan
    retry: int  # 0 for an endpoint's first try
    wait_s: float  # the backoff before this attempt
    last: bool


def attempts(route: Route) -> list[Attempt]:
    planned: list[tuple[EndpointConfig, int, float]] = []
    for endpoint in (route.endpoint, *route.fallbacks):
        for retry in range(route.retries + 1):
            wait = route.backoff_s * 2 ** (retry - 1) if retry else 0.0
            planned.append((endpoint, retry, wait))
    return [
        Attempt(endpoint, n, retry, wait, last=n == len(planned))
        for n, (endpoint, retry, wait) in enumerate(planned, start=1)
    ]


def attempt_attributes(route: Route, attempt: Attempt) -> dict[str, Any]:
    """What an attempt's span says about its place in the plan (nothing for a plain route)."""
    if not route.fallbacks and not route.retries:
        return {}
    return {
        "attempt": attempt.number,
        "retry": attempt.retry,
        "backoff_s": attempt.wait_s,
        "fallback": attempt.endpoint.id != route.endpoint.id,
    }


def fallen_back(route: Route, attempt: Attempt) -> Route:
    """The route as it ended: the endpoint that answered, and why it was not the chosen one."""
    if attempt.endpoint.id == route.endpoint.id:
        return route
    reason = f"{route.reason}; fell back to {attempt.endpoint.name} ({route.endpoint.name} failed)"
    return dataclasses.replace(route, endpoint=attempt.endpoint, reason=reason[:REASON_LIMIT])


async def first_piece_within(
    stream: AsyncIterator[str], timeout_s: float, endpoint: EndpointConfig
) -> AsyncIterator[str]:
    """`stream`, given up on when its first piece takes longer than `timeout_s` (0: only the
    client's own timeout applies). Waited for in the caller's task, so the model client's
    connection is never touched from another task."""
    if timeout_s <= 0:
        async for piece in stream:
            yield piece
        return
    try:
        async with asyncio.timeout(timeout_s):
            first = await anext(stream)
    except StopAsyncIteration:
        return
    except TimeoutError as exc:
        raise ModelError(
            f"The model '{endpoint.name}' took too long to answer. Please try again.",
            detail=f"no text from {endpoint.name} within {timeout_s:g} s",
        ) from exc
    yield first
    async for piece in stream:
        yield piece
