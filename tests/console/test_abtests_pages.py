"""Console → A/B tests: the pages for an admin (list, the draft's form, the test's numbers),
Start/Stop/Promote, promotion's effect on production (default model, published prompt, saved
retrieval settings) and its idempotence, and everyone else refused. Real Postgres."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.agent.grounding import assistant_settings
from chatbot.chat import services as chat
from chatbot.console import services as console_services
from chatbot.console.abtests import abtest_promote
from chatbot.models import (
    ABTest,
    ABVariant,
    AssistantSettings,
    Feedback,
    ModelEndpoint,
    PromptVersion,
    Turn,
)
from evaluation.abtests.services import ABTestError, VariantSpec, abtest_save, abtest_start
from evaluation.abtests.stats import sample_size

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]


def _rows(*variants: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "variants-TOTAL_FORMS": "4",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "4",
        "variants-MAX_NUM_FORMS": "8",
    }
    for number in range(4):
        fields = variants[number] if number < len(variants) else {}
        for key, value in fields.items():
            data[f"variants-{number}-{key}"] = value
    return data


@pytest.fixture
def models(fake_endpoint: Callable[..., ModelEndpoint]) -> tuple[ModelEndpoint, ModelEndpoint]:
    return fake_endpoint(name="fake-default"), fake_endpoint(name="fake-challenger", default=False)


@pytest.fixture
def draft_prompt(adam: User) -> PromptVersion:
    console_services.prompt_versions_ensure()
    draft = console_services.prompt_draft_create(user=adam)
    return console_services.prompt_draft_save(version=draft, text="Be brief.", note="shorter")


def _stopped_test(adam: User, challenger: ModelEndpoint, prompt: PromptVersion) -> ABTest:
    test = abtest_save(
        test=None,
        name="Brief answers",
        variants=[
            VariantSpec(name="Control", weight=50, is_control=True),
            VariantSpec(
                name="Brief",
                weight=50,
                endpoint=challenger,
                prompt_version=prompt,
                retrieval={"retrieval_k": 9, "min_similarity": 0.25},
            ),
        ],
        user=adam,
    )
    return abtest_start(test=test)


def test_an_admin_defines_starts_and_reads_a_test(
    client_as: ClientAs, adam: User, alice: User, models: Any, draft_prompt: PromptVersion
) -> None:
    _, challenger = models
    client = client_as(adam)
    assert client.get(reverse("console:abtests")).status_code == 200
    form = client.get(reverse("console:abtest_new"))
    assert form.status_code == 200 and b"Variant 4" in form.content
    assert b"null</textarea>" not in form.content, "no overrides: an empty box"

    bad = client.post(
        reverse("console:abtest_new"),
        {"name": "Brief", **_rows({"name": "A", "is_control": "on", "weight": "60"},
                                  {"name": "B", "weight": "60"})},
    )  # fmt: skip
    assert bad.status_code == 400 and "add up to 100" in bad.content.decode()
    assert not ABTest.objects.exists()

    saved = client.post(
        reverse("console:abtest_new"),
        {
            "name": "Brief <answers>",
            "description": "Does a shorter prompt help?",
            **_rows(
                {"name": "Control", "is_control": "on", "weight": "50"},
                {
                    "name": "Brief",
                    "weight": "50",
                    "endpoint": str(challenger.pk),
                    "prompt_version": str(draft_prompt.pk),
                    "retrieval": '{"retrieval_k": 8}',
                },
            ),
        },
    )
    test = ABTest.objects.get()
    assert saved.status_code == 302 and saved["Location"] == reverse(
        "console:abtest", args=[test.pk]
    )
    brief = test.variants.get(name="Brief")
    assert (brief.endpoint, brief.prompt_version, brief.retrieval) == (
        challenger,
        draft_prompt,
        {"retrieval_k": 8},
    )
    edit = client.get(reverse("console:abtest_edit", args=[test.pk]))
    assert edit.status_code == 200 and b"Brief" in edit.content

    started = client.post(reverse("console:abtest_action", args=[test.pk, "start"]))
    assert started.status_code == 302
    test.refresh_from_db()
    assert test.status == ABTest.Status.RUNNING

    # Turns as the loop would have left them: the control rated up, the variant's down.
    for variant, rating in ((test.variants.get(is_control=True), 1), (brief, -1)):
        turn = chat.turn_create(conversation=chat.conversation_create(owner=alice), user_text="q")
        Turn.objects.filter(pk=turn.pk).update(
            status=Turn.Status.DONE, ab_variant=variant, total_ms=900.0, cost=Decimal("0.001")
        )
        Feedback.objects.create(turn=turn, user=alice, rating=rating)

    page = client.get(reverse("console:abtest", args=[test.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Brief &lt;answers&gt;" in html and "<answers>" not in html, "names are escaped"
    assert "100% (21–100%)" in html, "the control's thumbs-up rate with its Wilson interval"
    assert "0% (0–79%)" in html
    # The control's thumbs-up rate is 100%: the note is about telling it from 95%.
    assert "Too early to call" in html and f"{sample_size(1.0)} needed" in html
    assert 'hx-trigger="every 30s"' in html and ">Stop<" in html and ">Promote<" in html
    partial = client.get(reverse("console:abtest", args=[test.pk]), headers={"HX-Request": "true"})
    assert partial.status_code == 200 and b"<html" not in partial.content
    listing = client.get(reverse("console:abtests")).content.decode()
    assert "Brief &lt;answers&gt;" in listing and "Running" in listing

    stopped = client.post(reverse("console:abtest_action", args=[test.pk, "stop"]))
    assert stopped.status_code == 302
    test.refresh_from_db()
    assert test.status == ABTest.Status.STOPPED


def test_starting_a_second_test_says_which_one_runs(
    client_as: ClientAs, adam: User, models: Any, draft_prompt: PromptVersion
) -> None:
    _stopped_test(adam, models[1], draft_prompt)  # started, still running
    other = abtest_save(
        test=None,
        name="Other",
        variants=[
            VariantSpec(name="A", weight=50, is_control=True),
            VariantSpec(name="B", weight=50),
        ],
    )
    response = client_as(adam).post(
        reverse("console:abtest_action", args=[other.pk, "start"]), follow=True
    )
    assert "“Brief answers” is running: stop it before starting another test." in (
        response.content.decode()
    )
    other.refresh_from_db()
    assert other.status == ABTest.Status.DRAFT


def test_promoting_makes_the_variant_production_once(
    client_as: ClientAs, adam: User, models: Any, draft_prompt: PromptVersion
) -> None:
    default, challenger = models
    published_before = PromptVersion.objects.get(
        kind=PromptVersion.Kind.SYSTEM, status=PromptVersion.Status.PUBLISHED
    )
    AssistantSettings.objects.update_or_create(pk=1, defaults={"retrieval_k": 5})
    test = _stopped_test(adam, challenger, draft_prompt)  # running: promotion stops it
    brief = test.variants.get(name="Brief")

    response = client_as(adam).post(
        reverse("console:abtest_action", args=[test.pk, "promote"]), {"variant": brief.pk}
    )

    assert response.status_code == 302
    test.refresh_from_db()
    assert test.status == ABTest.Status.STOPPED and test.stopped_at is not None
    assert (test.winner, test.promoted_by) == (brief, adam) and test.promoted_at is not None
    assert ModelEndpoint.objects.get(is_default=True) == challenger
    draft_prompt.refresh_from_db()
    published_before.refresh_from_db()
    assert draft_prompt.status == PromptVersion.Status.PUBLISHED and draft_prompt.ungated
    assert "Brief answers" in draft_prompt.note
    assert published_before.status == PromptVersion.Status.RETIRED
    config = assistant_settings()
    assert (config.retrieval_k, config.min_similarity) == (9, 0.25)

    # Twice: nothing more changes (the promotion's time stays, no new prompt is published).
    promoted_at = test.promoted_at
    ModelEndpoint.objects.filter(pk=challenger.pk).update(is_default=False)
    ModelEndpoint.objects.filter(pk=default.pk).update(is_default=True)
    assert abtest_promote(test=test, variant=brief, user=adam) is False
    test.refresh_from_db()
    assert test.promoted_at == promoted_at
    assert ModelEndpoint.objects.get(is_default=True) == default, "not re-applied"
    with pytest.raises(ABTestError, match="already promoted"):
        abtest_promote(test=test, variant=test.variants.get(is_control=True), user=adam)


def test_promoting_the_control_changes_nothing_but_the_record(
    adam: User, models: Any, draft_prompt: PromptVersion
) -> None:
    default, challenger = models
    test = _stopped_test(adam, challenger, draft_prompt)
    control = test.variants.get(is_control=True)
    assert abtest_promote(test=test, variant=control, user=adam) is True
    assert ModelEndpoint.objects.get(is_default=True) == default
    draft_prompt.refresh_from_db()
    assert draft_prompt.status == PromptVersion.Status.DRAFT
    test.refresh_from_db()
    assert test.winner == control and test.status == ABTest.Status.STOPPED


def test_a_draft_cannot_be_promoted(adam: User, models: Any) -> None:
    test = abtest_save(
        test=None,
        name="Not yet",
        variants=[
            VariantSpec(name="A", weight=50, is_control=True),
            VariantSpec(name="B", weight=50),
        ],
    )
    with pytest.raises(ABTestError, match="has not run"):
        abtest_promote(test=test, variant=test.variants.first(), user=adam)  # type: ignore[arg-type]


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_it_refuses_everyone_but_admins(
    client_as: ClientAs, cast: dict[str, User], who: str
) -> None:
    test = ABTest.objects.create(name="T", status=ABTest.Status.STOPPED)
    variant = ABVariant.objects.create(test=test, name="A", is_control=True, weight=100)
    client = client_as(cast[who])
    assert client.get(reverse("console:abtests")).status_code == 403
    assert client.get(reverse("console:abtest_new")).status_code == 403
    assert client.post(reverse("console:abtest_new"), {"name": "x"}).status_code == 403
    assert client.get(reverse("console:abtest", args=[test.pk])).status_code == 403
    assert client.get(reverse("console:abtest_edit", args=[test.pk])).status_code == 403
    for action in ("start", "stop", "promote"):
        url = reverse("console:abtest_action", args=[test.pk, action])
        assert client.post(url, {"variant": variant.pk}).status_code == 403
    test.refresh_from_db()
    assert test.winner is None and test.status == ABTest.Status.STOPPED
