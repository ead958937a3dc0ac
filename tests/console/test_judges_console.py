"""The judges page of the admin console: versions with their scores, edits that make a new
version, switching versions on and off, and judging recent answers again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.models import Judge, JudgeScore
from evaluation import services
from tests.evaluation.judging import finished_turn

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]


@pytest.fixture
def judges(cast: dict[str, User]) -> dict[str, Judge]:
    return {j.name: j for j in services.judges_ensure()}


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_it_refuses_everyone_but_admins(
    client_as: ClientAs, cast: dict[str, User], judges: dict[str, Judge], who: str
) -> None:
    client = client_as(cast[who])
    pk = judges["format"].pk

    assert client.get(reverse("console:judges")).status_code == 403
    assert client.get(reverse("console:judge_edit", args=[pk])).status_code == 403
    assert (
        client.post(reverse("console:judge_edit", args=[pk]), {"threshold": "0"}).status_code == 403
    )
    assert client.post(reverse("console:judge_toggle", args=[pk])).status_code == 403
    assert client.post(reverse("console:judges_rejudge"), {"days": "7"}).status_code == 403
    assert Judge.objects.count() == len(judges) and Judge.objects.get(pk=pk).enabled


def test_it_lists_judge_versions_with_scores_and_pass_rate(
    client_as: ClientAs, adam: User, alice: User, judges: dict[str, Judge]
) -> None:
    for answer in ("Click Forgot password.", "Call +1 212-555-0143.", "Write to it@example.com."):
        services.judge_run(
            turn_id=finished_turn(alice, answer=answer).pk, judge_id=judges["pii"].pk
        )

    page = client_as(adam).get(reverse("console:judges"))

    assert page.status_code == 200
    body = page.content.decode()
    for name in judges:
        assert f">{name}</a>" in body
    assert "Reward model (trained on human grades)" in body
    assert "33%" in body  # one of three answers passed the PII judge
    assert 'aria-current="page">Judges' in body


def test_it_saves_an_edit_as_a_new_version(
    client_as: ClientAs, adam: User, judges: dict[str, Judge]
) -> None:
    old = judges["format"]

    response = client_as(adam).post(
        reverse("console:judge_edit", args=[old.pk]),
        {"threshold": "0.75", "enabled": "on", "options": '{"max_chars": 1200, "json": true}'},
    )

    assert response.status_code == 302 and response["Location"] == reverse("console:judges")
    new = Judge.objects.get(name="format", version=2)
    assert new.threshold == 0.75 and new.enabled
    assert new.options == {"max_chars": 1200, "json": True}
    old.refresh_from_db()
    assert not old.enabled and old.threshold == 1.0


def test_it_edits_an_llm_judges_model_and_prompt(
    client_as: ClientAs, adam: User, judges: dict[str, Judge], fake_endpoint: Any
) -> None:
    endpoint = fake_endpoint(name="judge-model", default=False)
    client = client_as(adam)
    form = client.get(reverse("console:judge_edit", args=[judges["relevance-llm"].pk]))
    assert 'name="prompt_template"' in form.content.decode()
    assert (
        'name="prompt_template"'
        not in client.get(reverse("console:judge_edit", args=[judges["pii"].pk])).content.decode()
    )

    client.post(
        reverse("console:judge_edit", args=[judges["relevance-llm"].pk]),
        {"threshold": "0.5", "endpoint": endpoint.pk, "enabled": "on",
         "prompt_template": "Q: {question}\nA: {answer}\nEnd with Score: N", "options": "{}"},
    )  # fmt: skip

    new = Judge.objects.get(name="relevance-llm", version=2)
    assert new.endpoint == endpoint and new.enabled
    assert new.prompt_template.startswith("Q: {question}")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"threshold": "2"}, "less than or equal to 1"),
        ({"threshold": "0.5", "options": "[1, 2]"}, "must be a JSON object"),
        ({"threshold": "0.5", "prompt_template": "Rate {answr}"}, "prompt template is invalid"),
    ],
)
def test_it_answers_a_bad_edit_with_a_400_and_a_message(
    client_as: ClientAs, adam: User, judges: dict[str, Judge], data: dict[str, str], message: str
) -> None:
    response = client_as(adam).post(
        reverse("console:judge_edit", args=[judges["relevance-llm"].pk]), data
    )

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Judge.objects.filter(name="relevance-llm", version=2).exists()


def test_it_switches_a_version_on_in_place_of_the_others(
    client_as: ClientAs, adam: User, judges: dict[str, Judge]
) -> None:
    first = judges["toxicity"]
    second = services.judge_new_version(judge=first, threshold=0.4)
    client = client_as(adam)

    client.post(reverse("console:judge_toggle", args=[first.pk]))

    assert list(Judge.objects.filter(name="toxicity", enabled=True)) == [first]
    client.post(reverse("console:judge_toggle", args=[first.pk]))
    assert not Judge.objects.filter(name="toxicity", enabled=True).exists()
    second.refresh_from_db()
    assert not second.enabled


def test_it_queues_judging_again_and_refuses_a_bad_window(
    client_as: ClientAs,
    adam: User,
    judges: dict[str, Judge],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = client_as(adam)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        ok = client.post(reverse("console:judges_rejudge"), {"days": "7"})
    bad = client.post(reverse("console:judges_rejudge"), {"days": "0"})
    words = client.post(reverse("console:judges_rejudge"), {"days": "a week"})

    assert ok.status_code == 302 and len(queued) == 1
    assert bad.status_code == words.status_code == 400
    assert "between 1 and 90 days" in bad.content.decode()
    assert "whole number" in words.content.decode()


def test_it_counts_scores_of_the_last_month_only(
    client_as: ClientAs, adam: User, alice: User, judges: dict[str, Judge]
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    turn = finished_turn(alice)
    services.judge_run(turn_id=turn.pk, judge_id=judges["pii"].pk)
    JudgeScore.objects.update(created_at=timezone.now() - timedelta(days=45))

    body = client_as(adam).get(reverse("console:judges")).content.decode()

    assert "%</td>" not in body.split(">pii</a>")[1].split("</tr>")[0]
