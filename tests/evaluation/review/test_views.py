"""The reviewer's pages: queue, item with rubric, agreement. Reviewers and admins get in; agents
and people without a role are refused everywhere."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chatbot.models import (
    DatasetItem,
    Escalation,
    FlagRule,
    Judge,
    Review,
    ReviewAssignment,
    ReviewItem,
    Span,
)
from evaluation.review import services
from tests.evaluation.review.support import flagged_item, judge_score

pytestmark = pytest.mark.django_db
ClientAs = Callable[[User], Client]
GRADES = {"accuracy": "4", "completeness": "3", "relevance": "5", "tone": "5", "safety": "5"}


def _review_urls(item: ReviewItem) -> list[str]:
    return [
        reverse("review:queue"),
        reverse("review:next"),
        reverse("review:item", args=[item.pk]),
        reverse("review:agreement"),
    ]


@pytest.mark.parametrize("who", ["alice", "nora"])
def test_it_refuses_agents_and_people_without_a_role_on_every_review_page(
    cast: dict[str, User], client_as: ClientAs, who: str
) -> None:
    item = flagged_item(cast["alice"])
    client = client_as(cast[who])
    for url in _review_urls(item):
        for method in ("get", "post"):
            response = getattr(client, method)(url, {"action": "claim"})
            assert response.status_code in {403, 405}, f"{who} {method} {url}"
    assert not ReviewAssignment.objects.exists()


@pytest.mark.parametrize("who", ["rita", "adam"])
def test_it_shows_the_queue_to_reviewers_and_admins(
    cast: dict[str, User], client_as: ClientAs, who: str
) -> None:
    flagged_item(cast["alice"], question="Where do I find the VPN guide?")
    response = client_as(cast[who]).get(reverse("review:queue"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Where do I find the VPN guide?" in body
    assert "Thumbs down" in body
    assert "Take next" in body


def test_it_filters_and_pages_the_queue_from_the_query_string(
    alice: User, rita: User, client_as: ClientAs
) -> None:
    for n in range(27):
        flagged_item(alice, question=f"Thumbs question {n}?")
    no_answer = flagged_item(alice, question="Unanswerable question?")
    ReviewItem.objects.filter(pk=no_answer.pk).update(
        reasons=[{"rule": "No answer", "kind": "no_answer", "reason": "nothing found"}]
    )
    client = client_as(rita)

    only = client.get(reverse("review:queue"), {"kind": "no_answer"}).content.decode()
    assert "Unanswerable question?" in only
    assert "Thumbs question" not in only

    first = client.get(reverse("review:queue"), {"kind": "thumbs_down", "sort": "oldest"})
    body = first.content.decode()
    assert "Page 1 of 2" in body
    assert "Thumbs question 0?" in body
    assert "?status=open&amp;kind=thumbs_down&amp;sort=oldest&amp;page=2" in body
    second = client.get(
        reverse("review:queue"), {"kind": "thumbs_down", "sort": "oldest", "page": "2"}
    )
    assert "Thumbs question 26?" in second.content.decode()

    # Unknown filter values fall back to the defaults instead of failing.
    assert client.get(reverse("review:queue"), {"kind": "bogus", "page": "x"}).status_code == 200


def test_it_renders_the_queue_in_a_fixed_number_of_queries(
    alice: User, rita: User, client_as: ClientAs, django_assert_max_num_queries
) -> None:
    for n in range(10):
        flagged_item(alice, question=f"Question {n}?")
    client = client_as(rita)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("review:queue")).status_code == 200


def test_it_serves_the_queue_table_alone_to_htmx(
    alice: User, rita: User, client_as: ClientAs
) -> None:
    flagged_item(alice)
    response = client_as(rita).get(reverse("review:queue"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b"<html" not in response.content
    assert b"queue-table" in response.content


def test_it_says_what_to_do_when_the_queue_is_empty(rita: User, client_as: ClientAs) -> None:
    client = client_as(rita)
    assert "The queue is empty" in client.get(reverse("review:queue")).content.decode()
    response = client.post(reverse("review:next"), follow=True)
    assert "Nothing left in the queue for you" in response.content.decode()


def test_it_takes_the_next_item_by_post_only(alice: User, rita: User, client_as: ClientAs) -> None:
    item = flagged_item(alice)
    client = client_as(rita)
    assert client.get(reverse("review:next")).status_code == 405
    response = client.post(reverse("review:next"))
    assert response.status_code == 302
    assert response["Location"] == reverse("review:item", args=[item.pk])
    assert ReviewAssignment.objects.get(item=item).reviewer == rita


def test_it_shows_everything_about_the_turn_on_the_item_page(
    alice: User, rita: User, client_as: ClientAs
) -> None:
    from tests.evaluation.judging import PASSWORD_CHUNK

    earlier = flagged_item(alice, question="What is the VPN address?")
    item = flagged_item(
        alice,
        answer="Click **Forgot password** [1]. <script>alert(1)</script>",
        context=(PASSWORD_CHUNK, "An unrelated passage about printers."),
    )
    turn = item.turn
    # Put the earlier turn in the same conversation, before this one.
    type(turn).objects.filter(pk=earlier.turn_id).update(
        conversation=turn.conversation, created_at=turn.created_at - timedelta(minutes=1)
    )
    judge_score(turn, name="format", kind=Judge.Kind.FORMAT, passed=False)
    Escalation.objects.create(turn=turn, requested_by=alice, reason="Please call me")
    Span.objects.create(
        turn=turn, kind=Span.Kind.LLM, name="llm fake-model", started_at=timezone.now(),
        duration_ms=123, tokens_in=20, tokens_out=10, error="",
    )  # fmt: skip
    client = client_as(rita)
    client.post(reverse("review:item", args=[item.pk]), {"action": "claim"})

    response = client.get(reverse("review:item", args=[item.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "What is the VPN address?" in body  # the conversation so far
    assert "How do I reset a forgotten password?" in body
    assert "<strong>Forgot password</strong>" in body  # markdown rendered...
    assert "<script>alert(1)</script>" not in body  # ...and sanitised
    assert "doc-0" in body and "doc-1" in body  # both passages, cited or not
    assert "not cited" in body
    assert "format v1" in body
    assert "Thumbs down" in body and "Please call me" in body
    assert "llm fake-model" in body and "123 ms" in body
    for name in Review.RUBRIC:
        assert f'name="{name}" value="5"' in body
    for cause in Review.Cause.values:
        assert f'value="{cause}"' in body
    assert 'name="corrected_answer"' in body and 'name="approved"' in body


def test_it_shows_the_keyboard_shortcuts(alice: User, rita: User, client_as: ClientAs) -> None:
    item = flagged_item(alice)
    client = client_as(rita)
    client.post(reverse("review:next"))
    body = client.get(reverse("review:item", args=[item.pk])).content.decode()
    assert "js/review.js" in body
    assert 'id="review-shortcuts"' in body and "<kbd>?</kbd>" in body
    for key in ("s", "n", "r"):
        assert f'data-shortcut="{key}"' in body
    assert body.count("data-rubric-row") == 5


def test_it_submits_a_review_from_the_page(alice: User, rita: User, client_as: ClientAs) -> None:
    item = flagged_item(alice)
    client = client_as(rita)
    client.post(reverse("review:next"))
    response = client.post(
        reverse("review:item", args=[item.pk]),
        {**GRADES, "action": "submit", "causes": ["wrong_source"], "corrected_answer": "Better.",
         "comment": "ok", "approved": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    review = Review.objects.get(item=item)
    assert (review.accuracy, review.completeness, review.causes) == (4, 3, ["wrong_source"])
    assert review.approved and review.corrected_answer == "Better."
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.DONE


def test_it_refuses_a_bad_grade_with_a_message(
    alice: User, rita: User, client_as: ClientAs
) -> None:
    item = flagged_item(alice)
    client = client_as(rita)
    client.post(reverse("review:next"))
    response = client.post(
        reverse("review:item", args=[item.pk]),
        {**GRADES, "accuracy": "9", "action": "submit", "comment": "keep me"},
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "Grade accuracy from 1 to 5 (got “9”)." in body
    assert "keep me" in body, "what the reviewer typed is kept"
    assert 'name="relevance" value="5" checked' in body
    assert not Review.objects.exists()


def test_it_refuses_an_unknown_action_and_a_review_without_a_hold(
    alice: User, rita: User, adam: User, client_as: ClientAs
) -> None:
    item = flagged_item(alice)
    client_as(rita).post(reverse("review:next"))
    adams = client_as(adam)
    url = reverse("review:item", args=[item.pk])
    assert adams.post(url, {"action": "explode"}).status_code == 400
    response = adams.post(url, {**GRADES, "action": "submit"})
    assert response.status_code == 400
    assert "You are not reviewing this item" in response.content.decode()
    response = adams.post(url, {"action": "claim"})
    assert response.status_code == 400
    assert "Another reviewer is working on this item" in response.content.decode()


def test_it_skips_to_the_next_item_and_releases_to_the_queue(
    alice: User, rita: User, client_as: ClientAs
) -> None:
    first = flagged_item(alice, priority=90)
    second = flagged_item(alice, question="Second?", priority=10)
    client = client_as(rita)
    client.post(reverse("review:next"))
    response = client.post(reverse("review:item", args=[first.pk]), {"action": "skip"})
    assert response["Location"] == reverse("review:item", args=[second.pk])
    response = client.post(reverse("review:item", args=[second.pk]), {"action": "release"})
    assert response["Location"] == reverse("review:queue")
    statuses = dict(ReviewAssignment.objects.values_list("item_id", "status"))
    assert statuses == {first.pk: "skipped", second.pk: "released"}


def test_it_claims_an_item_chosen_from_the_queue(
    alice: User, adam: User, client_as: ClientAs
) -> None:
    item = flagged_item(alice)
    client = client_as(adam)
    page = client.get(reverse("review:item", args=[item.pk])).content.decode()
    assert "Review this item" in page and 'id="review-form"' not in page
    response = client.post(reverse("review:item", args=[item.pk]), {"action": "claim"})
    assert response.status_code == 302
    assert 'id="review-form"' in client.get(reverse("review:item", args=[item.pk])).content.decode()


def test_it_hides_the_first_review_from_the_second_reviewer(
    alice: User, rita: User, adam: User, client_as: ClientAs
) -> None:
    item = flagged_item(alice, double=True)
    first = services.review_next(reviewer=rita)
    assert first is not None
    services.review_submit(
        assignment=first, grades={k: 1 for k in Review.RUBRIC}, comment="Rita's secret note"
    )
    client = client_as(adam)
    client.post(reverse("review:next"))
    body = client.get(reverse("review:item", args=[item.pk])).content.decode()
    assert "Rita's secret note" not in body
    assert "1 review already submitted" in body
    assert (
        "Rita&#x27;s secret note"
        in client_as(rita).get(reverse("review:item", args=[item.pk])).content.decode()
    )


def test_it_answers_404_for_a_missing_item(rita: User, client_as: ClientAs) -> None:
    assert client_as(rita).get(reverse("review:item", args=[999_999])).status_code == 404


def test_it_shows_the_agreement_page(alice: User, rita: User, client_as: ClientAs) -> None:
    FlagRule.objects.all().delete()
    response = client_as(rita).get(reverse("review:agreement"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "No item has been reviewed twice yet" in body
    assert "Faithfulness (LLM judge)" in body  # the documented judge-to-rubric mapping


def test_it_turns_a_reviewed_item_into_a_dataset_item_in_one_click(
    alice: User, rita: User, client_as: ClientAs
) -> None:
    item = flagged_item(alice)
    client = client_as(rita)
    client.post(reverse("review:next"))
    client.post(
        reverse("review:item", args=[item.pk]),
        {**GRADES, "action": "submit", "corrected_answer": "The link lasts 30 minutes."},
    )
    review = Review.objects.get(item=item)
    page = client.get(reverse("review:item", args=[item.pk])).content.decode()
    add_url = reverse("review:dataset_add_review", args=[review.pk])
    assert f'action="{add_url}"' in page

    response = client.post(add_url, {"new_dataset": "regressions", "next": "/review/"})
    assert response.status_code == 302
    added = DatasetItem.objects.get(source_review=review)
    assert (added.dataset.name, added.source_turn_id) == ("regressions", item.turn_id)
    assert added.expected_answer == "The link lasts 30 minutes."


def test_it_hides_passages_of_collections_not_shared_with_the_reviewer(
    adam: User, rita: User, client_as: ClientAs
) -> None:
    from chatbot.accounts import roles
    from chatbot.accounts.visibility import HIDDEN_PASSAGE
    from tests.evaluation.judging import ADMINS_ONLY_PASSAGE

    item = flagged_item(
        adam,
        question="Which office closes this summer?",
        answer="An office closes at the end of June [1].",
        context=(ADMINS_ONLY_PASSAGE,),
        shared_with=(roles.ADMIN,),
        traced=True,
    )
    url = reverse("review:item", args=[item.pk])

    as_reviewer = client_as(rita).get(url).content.decode()
    as_admin = client_as(adam).get(url).content.decode()

    # Neither the passages list nor the trace included on the page shows it to rita.
    assert "Project Bluebird" not in as_reviewer and "Lisbon" not in as_reviewer
    assert as_reviewer.count(HIDDEN_PASSAGE) >= 2
    assert "Project Bluebird" in as_admin and HIDDEN_PASSAGE not in as_admin


def test_it_redacts_personal_data_in_the_question_answer_and_history_as_the_policy_says(
    alice: User, rita: User, adam: User, client_as: ClientAs, settings: object
) -> None:
    settings.TRACE_PII_POLICY = "admins"  # type: ignore[attr-defined]
    email, phone = "jane.doe@example.org", "+1 212-555-0143"
    earlier = flagged_item(alice, question=f"Earlier: my number is {phone}")
    item = flagged_item(
        alice,
        question=f"Reset the password for {email}",
        answer=f"Done: we wrote to {email} and will call {phone}.",
    )
    turn = item.turn
    type(turn).objects.filter(pk=earlier.turn_id).update(
        conversation=turn.conversation, created_at=turn.created_at - timedelta(minutes=1)
    )
    url = reverse("review:item", args=[item.pk])

    as_reviewer = client_as(rita).get(url).content.decode()
    as_admin = client_as(adam).get(url).content.decode()

    assert email not in as_reviewer and phone not in as_reviewer
    assert "Reset the password for &lt;EMAIL_ADDRESS&gt;" in as_reviewer
    assert "&lt;PHONE_NUMBER&gt;" in as_reviewer
    assert "Earlier: my number is &lt;PHONE_NUMBER&gt;" in as_reviewer
    assert f"Reset the password for {email}" in as_admin
    assert phone in as_admin and f"Earlier: my number is {phone}" in as_admin
