"""Generated production data for the observability tests: turns of every status over a few
days, with feedback, escalations, judge scores, reviews, review flags, citations and
replays, written in bulk (the services are tested elsewhere; here only the numbers matter)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import Group, User

from chatbot.models import (
    Citation,
    Conversation,
    Escalation,
    Feedback,
    Judge,
    JudgeScore,
    ModelEndpoint,
    Review,
    ReviewItem,
    Turn,
)
from tests.evaluation.judging import chunks

START = datetime(2026, 3, 2, tzinfo=UTC)
ROUTES = (
    "catalogue default",
    "requested by the caller",
    "nothing relevant in the knowledge base (top similarity 0.21 < 0.30)",
    "nothing relevant in the knowledge base (top similarity 0.05 < 0.30)",
)


@dataclass
class Generated:
    turns: list[Turn] = field(default_factory=list)
    endpoints: list[ModelEndpoint] = field(default_factory=list)
    collections: list[int] = field(default_factory=list)


def _endpoint(name: str) -> ModelEndpoint:
    endpoint, _ = ModelEndpoint.objects.update_or_create(
        name=name,
        defaults={
            "provider": ModelEndpoint.Provider.FAKE,
            "model_id": "fake-list-chat",
            "style": ModelEndpoint.Style.CHAT,
            "options": {"responses": ["ok"]},
        },
    )
    return endpoint


def _judges() -> list[Judge]:
    return [
        Judge.objects.get_or_create(name=name, version=1, defaults={"kind": kind})[0]
        for name, kind in (
            ("toxicity", Judge.Kind.TOXICITY),
            ("pii", Judge.Kind.PII),
            ("format", Judge.Kind.FORMAT),
        )
    ]


def generate(users: list[User], *, turns: int = 400, days: int = 3, seed: int = 7) -> Generated:
    """`turns` turns spread over `days` days from START, owned by `users` in turn."""
    rng = random.Random(seed)
    out = Generated(endpoints=[_endpoint("gen-small"), _endpoint("gen-large")])
    # A user in two groups counts under the first by name.
    extra, _ = Group.objects.get_or_create(name="aa-emea")
    users[0].groups.add(extra)
    made = chunks("alpha passage", "beta passage")
    other = chunks("gamma passage")
    pool = [*made, *other]
    out.collections = sorted({c.collection_id for c in pool})
    judges = _judges()
    conversations = [
        Conversation.objects.create(
            owner=users[i % len(users)],
            channel=Conversation.Channel.API if i % 4 == 0 else Conversation.Channel.WEB,
            title=f"generated {i}",
        )
        for i in range(12)
    ]
    replay_conversation = Conversation.objects.create(owner=users[0], is_replay=True)
    statuses = [Turn.Status.DONE] * 16 + [
        Turn.Status.FAILED,
        Turn.Status.FAILED,
        Turn.Status.CANCELLED,
        Turn.Status.PENDING,
    ]
    rows = []
    for i in range(turns):
        status = rng.choice(statuses)
        replay = i % 37 == 0
        rows.append(
            Turn(
                conversation=replay_conversation if replay else rng.choice(conversations),
                user_text=f"question {i}",
                answer=f"answer {i}",
                status=status,
                endpoint=rng.choice([*out.endpoints, None]),
                route_reason=rng.choice(ROUTES),
                tokens_in=rng.randint(0, 900),
                tokens_out=rng.randint(0, 400),
                cost=Decimal(rng.randint(0, 10**6)) / Decimal(10**8),
                ttft_ms=None if rng.random() < 0.1 else rng.uniform(5, 4000),
                total_ms=None if status == Turn.Status.PENDING else rng.uniform(20, 90000),
                no_answer=rng.random() < 0.15,
                is_replay=replay,
            )
        )
    created = Turn.objects.bulk_create(rows)
    # created_at is set on insert; move each turn to its generated moment.
    moments = {t.pk: START + timedelta(seconds=rng.randint(0, days * 86400 - 1)) for t in created}
    for turn in created:
        turn.created_at = moments[turn.pk]
    Turn.objects.bulk_update(created, ["created_at"])
    out.turns = created

    feedback, escalations, scores, items, reviews, citations = [], [], [], [], [], []
    for turn in created:
        if rng.random() < 0.3:
            feedback.append(Feedback(turn=turn, user=users[0], rating=rng.choice([1, -1])))
        if rng.random() < 0.1:
            feedback.append(Feedback(turn=turn, user=users[1], rating=rng.choice([1, -1])))
        if rng.random() < 0.08:
            escalations.append(Escalation(turn=turn, requested_by=users[0]))
        if turn.status == Turn.Status.DONE and rng.random() < 0.7:
            for judge in judges:
                passed = rng.random() < 0.85
                scores.append(
                    JudgeScore(
                        turn=turn,
                        judge=judge,
                        score=1.0 if passed else 0.0,
                        passed=passed,
                        status=JudgeScore.Status.DONE,
                    )
                )
        if rng.random() < 0.2:
            items.append(ReviewItem(turn=turn))
        if rng.random() < 0.5:
            picked = rng.sample(pool, k=rng.randint(1, 2))
            for number, chunk in enumerate(picked, start=1):
                citations.append(Citation(turn=turn, chunk=chunk, number=number, score=0.5))
    Feedback.objects.bulk_create(feedback, ignore_conflicts=True)
    Escalation.objects.bulk_create(escalations)
    JudgeScore.objects.bulk_create(scores)
    ReviewItem.objects.bulk_create(items)
    for item in ReviewItem.objects.filter(turn__in=created)[::2]:
        grades = {name: rng.randint(1, 5) for name in Review.RUBRIC}
        reviews.append(Review(item=item, turn_id=item.turn_id, reviewer=users[1], **grades))
    Review.objects.bulk_create(reviews)
    Citation.objects.bulk_create(citations)
    return out
