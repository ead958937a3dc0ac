"""Rate limits, daily token quotas and the cap on concurrent answers.

Kept in Redis (the cache's database; tests give it their own), never in process memory, so every
web process (several daphnes behind a balancer) counts against the same figures:

- requests a minute, per person and per API key: the `limits` library's moving window (a Redis
  sorted set per identity, checked and hit in one Lua call);
- tokens a day, per person: summed from the turns' recorded tokens, so nothing can drift from
  what the dashboard shows. A turn's tokens are recorded when it ends, so answers running at the
  moment the quota is reached may overshoot it by their own size;
- answers running at once, per person: a sorted set of slots scored by their expiry, so a slot
  a crashed process never gave back frees itself after `ANSWER_SLOT_TTL_S`.

Each refusal is a `LimitExceeded` with a sentence for a person and `retry_after` seconds; the
APIs turn it into a 429 with `Retry-After`, the chat socket into an error frame. When Redis is
down these raise redis's error like every other Redis-backed part of the product (the channel
layer, Celery): refusing everything is wrong, and silently allowing everything is worse to debug.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Literal

import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import F, Sum
from django.utils import timezone
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from chatbot.models import ApiKey, Turn

Kind = Literal["rate", "quota", "concurrency"]


class LimitExceeded(Exception):
    def __init__(self, kind: Kind, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.kind, self.message, self.retry_after = kind, message, max(1, retry_after)


def _redis_url() -> str:
    return str(settings.CACHES["default"]["LOCATION"])


@cache
def _limiter(url: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(RedisStorage(url, key_prefix="ratelimit"))


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _limiter_now() -> MovingWindowRateLimiter:
    return _limiter(_redis_url())


# --- requests a minute -------------------------------------------------------------------------


def _hit(per_minute: int, *identity: str) -> int | None:
    """Count one request; None when allowed, else the seconds until one is allowed again."""
    limiter = _limiter_now()
    item = RateLimitItemPerMinute(per_minute)
    if limiter.hit(item, *identity):
        return None
    reset_at = limiter.get_window_stats(item, *identity).reset_time
    return math.ceil(reset_at - time.time())


def request_allow(*, user: User, key: ApiKey | None = None) -> None:
    """Count a request against the person's and the key's limits; LimitExceeded when over."""
    per_person = settings.RATE_LIMIT_PER_MINUTE
    if per_person and (wait := _hit(per_person, "user", str(user.pk))) is not None:
        raise LimitExceeded(
            "rate",
            f"Too many requests: at most {per_person} a minute per person. Try again in {wait} s.",
            wait,
        )
    if key is None:
        return
    per_key = key.rate_limit_per_minute or settings.RATE_LIMIT_PER_MINUTE
    if per_key and (wait := _hit(per_key, "key", str(key.pk))) is not None:
        raise LimitExceeded(
            "rate",
            f"Too many requests with this API key: at most {per_key} a minute. "
            f"Try again in {wait} s.",
            wait,
        )


# --- tokens a day ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaUse:
    used: int
    quota: int
    resets_at: datetime


def _day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def quota_use(*, user: User) -> QuotaUse:
    """Tokens the person's turns used since midnight UTC, against the daily quota."""
    start = _day_start(timezone.now())
    used = Turn.objects.filter(conversation__owner=user, created_at__gte=start).aggregate(
        total=Sum(F("tokens_in") + F("tokens_out"))
    )["total"]
    return QuotaUse(
        used=int(used or 0),
        quota=settings.TOKEN_QUOTA_PER_DAY,
        resets_at=start + timedelta(days=1),
    )


def quota_check(*, user: User) -> None:
    """LimitExceeded when the person has used their tokens for today (checked before a turn)."""
    if not settings.TOKEN_QUOTA_PER_DAY:
        return
    use = quota_use(user=user)
    if use.used < use.quota:
        return
    wait = math.ceil((use.resets_at - timezone.now()).total_seconds())
    raise LimitExceeded(
        "quota",
        f"You have used today's token quota ({use.used:,} of {use.quota:,} tokens). "
        f"It resets at {use.resets_at:%H:%M} UTC.",
        wait,
    )


# --- answers at once ---------------------------------------------------------------------------

# Drop expired slots, then take one if fewer than the cap are held; the set expires with its
# newest slot so an idle person leaves nothing behind. One script: two processes cannot both
# see "2 held" and both take the third.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def _slots_key(user: User) -> str:
    return f"answers:{user.pk}"


def answer_slot_acquire(*, user: User) -> str | None:
    """Take one of the person's answer slots; its token gives it back. None when there is no
    cap; LimitExceeded when all are held."""
    cap = settings.MAX_CONCURRENT_ANSWERS
    if not cap:
        return None
    ttl = settings.ANSWER_SLOT_TTL_S
    now = time.time()
    token = uuid.uuid4().hex
    taken = _redis(_redis_url()).eval(
        _ACQUIRE, 1, _slots_key(user), now, now + ttl, cap, token, ttl
    )
    if not taken:
        raise LimitExceeded(
            "concurrency",
            f"You already have {cap} answers being written (in other tabs or programs). "
            "Wait for one to finish, or stop it, and ask again.",
            # Most answers take seconds; a client that retries shortly will usually get in.
            5,
        )
    return token


def answer_slot_release(*, user: User, token: str | None) -> None:
    if token is not None:
        _redis(_redis_url()).zrem(_slots_key(user), token)


def answers_running(*, user: User) -> int:
    """Slots the person holds now (expired ones not counted)."""
    return int(_redis(_redis_url()).zcount(_slots_key(user), time.time(), "+inf"))


def answer_admit(*, user: User) -> str | None:
    """Everything checked before an answer starts: the token quota, then a slot. Returns the
    slot's token, to give back with `answer_slot_release` when the answer ends."""
    quota_check(user=user)
    return answer_slot_acquire(user=user)
