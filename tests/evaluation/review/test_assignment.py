"""Taking items from the queue, skipping, releasing, expiry, submitting and double review."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from chatbot.models import Review, ReviewAssignment, ReviewItem
from evaluation.review import services
from evaluation.review.services import InvalidReview
from tests.evaluation.review.support import flagged_item, reviewer

GOOD = {"accuracy": 5, "completeness": 4, "relevance": 5, "tone": 5, "safety": 5}


def _submit(assignment: ReviewAssignment, **changes: object) -> Review:
    fields: dict[str, object] = {"grades": GOOD, "causes": [], "approved": True}
    fields.update(changes)
    return services.review_submit(assignment=assignment, **fields)  # type: ignore[arg-type]


@pytest.mark.django_db
def test_it_hands_out_the_highest_priority_item_and_keeps_it(alice: User, rita: User) -> None:
    low = flagged_item(alice, priority=20)
    high = flagged_item(alice, priority=95)
    first = services.review_next(reviewer=rita)
    assert first is not None and first.item_id == high.pk
    again = services.review_next(reviewer=rita)
    assert again is not None and again.pk == first.pk
    assert low.status == ReviewItem.Status.OPEN


@pytest.mark.django_db
def test_it_gives_two_reviewers_different_items(alice: User, rita: User, adam: User) -> None:
    only = flagged_item(alice)
    a = services.review_next(reviewer=rita)
    assert a is not None and a.item_id == only.pk
    assert services.review_next(reviewer=adam) is None
    second = flagged_item(alice, question="Where is the VPN guide?")
    b = services.review_next(reviewer=adam)
    assert b is not None and b.item_id == second.pk


@pytest.mark.django_db
def test_it_gives_a_double_review_item_to_two_reviewers_only(
    alice: User, rita: User, adam: User
) -> None:
    item = flagged_item(alice, double=True)
    a = services.review_next(reviewer=rita)
    b = services.review_next(reviewer=adam)
    assert a is not None and b is not None
    assert a.item_id == b.item_id == item.pk
    assert services.review_next(reviewer=reviewer("rex")) is None

    _submit(a)
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.OPEN, "one of two reviews is not enough"
    _submit(b, grades={**GOOD, "accuracy": 2}, approved=False)
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.DONE
    assert item.done_at is not None
    assert Review.objects.filter(item=item).count() == 2


@pytest.mark.django_db
def test_it_submits_a_review_and_closes_the_item(alice: User, rita: User) -> None:
    item = flagged_item(alice)
    assignment = services.review_next(reviewer=rita)
    assert assignment is not None
    review = _submit(
        assignment,
        corrected_answer="  Use the Forgot password link.  ",
        causes=["hallucination", "retrieval_miss"],
        comment="Cited the wrong page.",
    )
    assert review.grades == GOOD
    assert review.corrected_answer == "Use the Forgot password link."
    assert review.causes == ["retrieval_miss", "hallucination"]
    assert review.turn_id == item.turn_id
    assignment.refresh_from_db()
    assert assignment.status == ReviewAssignment.Status.SUBMITTED
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.DONE
    assert services.review_next(reviewer=rita) is None
    with pytest.raises(InvalidReview, match="no longer yours"):
        _submit(assignment)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grades": {**GOOD, "accuracy": 6}}, "Grade accuracy from 1 to 5"),
        ({"grades": {**GOOD, "tone": "x"}}, "Grade tone from 1 to 5"),
        ({"grades": {k: v for k, v in GOOD.items() if k != "safety"}}, "Grade safety from 1 to 5"),
        ({"causes": ["gremlins"]}, "Unknown cause gremlins"),
        ({"comment": "x" * 4001}, "comment is too long"),
    ],
)
def test_it_refuses_a_bad_review(
    alice: User, rita: User, changes: dict[str, object], message: str
) -> None:
    flagged_item(alice)
    assignment = services.review_next(reviewer=rita)
    assert assignment is not None
    with pytest.raises(InvalidReview, match=message):
        _submit(assignment, **changes)
    assert not Review.objects.exists()
    assignment.refresh_from_db()
    assert assignment.status == ReviewAssignment.Status.ACTIVE


@pytest.mark.django_db
def test_it_never_offers_a_skipped_item_again(alice: User, rita: User, adam: User) -> None:
    item = flagged_item(alice)
    assignment = services.review_next(reviewer=rita)
    assert assignment is not None
    services.review_skip(assignment=assignment)
    assert services.review_next(reviewer=rita) is None
    taken = services.review_next(reviewer=adam)
    assert taken is not None and taken.item_id == item.pk
    with pytest.raises(InvalidReview):
        services.review_skip(assignment=assignment)


@pytest.mark.django_db
def test_it_returns_a_released_item_to_the_queue(alice: User, rita: User, adam: User) -> None:
    item = flagged_item(alice)
    assignment = services.review_next(reviewer=rita)
    assert assignment is not None
    assert services.review_next(reviewer=adam) is None
    services.review_release(assignment=assignment)
    assert assignment.status == ReviewAssignment.Status.RELEASED
    taken = services.review_next(reviewer=adam)
    assert taken is not None and taken.item_id == item.pk


@pytest.mark.django_db
def test_it_frees_an_expired_hold(alice: User, rita: User, adam: User) -> None:
    item = flagged_item(alice)
    held = services.review_next(reviewer=rita)
    assert held is not None
    assert abs(held.expires_at - held.created_at - timedelta(minutes=30)) < timedelta(seconds=5)
    ReviewAssignment.objects.filter(pk=held.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    taken = services.review_next(reviewer=adam)
    assert taken is not None and taken.item_id == item.pk
    # Rita's late review is refused: Adam holds the only slot now.
    with pytest.raises(InvalidReview, match="expired and another reviewer has taken it"):
        _submit(held)


@pytest.mark.django_db
def test_it_honours_an_expired_hold_nobody_took(alice: User, rita: User) -> None:
    item = flagged_item(alice)
    held = services.review_next(reviewer=rita)
    assert held is not None
    ReviewAssignment.objects.filter(pk=held.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    held.refresh_from_db()
    _submit(held)
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.DONE


@pytest.mark.django_db
def test_it_claims_a_chosen_item_only_while_a_slot_is_free(
    alice: User, rita: User, adam: User
) -> None:
    item = flagged_item(alice)
    claimed = services.review_claim(reviewer=rita, item=item)
    assert services.review_claim(reviewer=rita, item=item).pk == claimed.pk
    with pytest.raises(InvalidReview, match="Another reviewer is working on this item"):
        services.review_claim(reviewer=adam, item=item)


@pytest.mark.django_db
def test_it_takes_the_next_item_in_a_fixed_number_of_queries(
    alice: User, rita: User, django_assert_max_num_queries
) -> None:
    for n in range(5):
        flagged_item(alice, question=f"Question {n}?")
    with django_assert_max_num_queries(8):
        assert services.review_next(reviewer=rita) is not None


# --- Two reviewers at the same moment, each on its own database connection -------------------


def _race(users: list[User]) -> list[int | None]:
    barrier = threading.Barrier(len(users))
    got: list[int | None] = [None] * len(users)
    errors: list[BaseException] = []

    def take(index: int, user: User) -> None:
        try:
            barrier.wait(timeout=10)
            assignment = services.review_next(reviewer=user)
            got[index] = assignment.item_id if assignment else None
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(i, u)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    if errors:
        raise errors[0]
    return got


@pytest.mark.django_db(transaction=True)
def test_it_never_gives_two_concurrent_reviewers_the_same_item(
    alice: User, rita: User, adam: User
) -> None:
    # Many rounds, so the two requests really do overlap in some of them.
    for round_ in range(15):
        one = flagged_item(alice, question=f"Round {round_} first?", priority=80)
        two = flagged_item(alice, question=f"Round {round_} second?", priority=80)
        got = _race([rita, adam])
        assert set(got) == {one.pk, two.pk}, f"round {round_}: {got}"
        for assignment in ReviewAssignment.objects.filter(status="active"):
            _submit(assignment)


@pytest.mark.django_db(transaction=True)
def test_it_gives_one_last_item_to_exactly_one_of_two_concurrent_reviewers(
    alice: User, rita: User, adam: User
) -> None:
    for round_ in range(15):
        item = flagged_item(alice, question=f"Round {round_}?")
        got = _race([rita, adam])
        assert sorted(got, key=str) == sorted([item.pk, None], key=str), f"round {round_}: {got}"
        assert ReviewAssignment.objects.filter(item=item).count() == 1
        _submit(ReviewAssignment.objects.get(item=item))


@pytest.mark.django_db(transaction=True)
def test_it_gives_a_double_review_item_to_both_concurrent_reviewers(
    alice: User, rita: User, adam: User
) -> None:
    item = flagged_item(alice, double=True)
    got = _race([rita, adam])
    # Skip-locked may send one of them away empty-handed while the other holds the row lock;
    # asking again must then give the same item to the second reviewer.
    late = [u for u, g in zip([rita, adam], got, strict=True) if g is None]
    for user in late:
        again = services.review_next(reviewer=user)
        assert again is not None
        got[[rita, adam].index(user)] = again.item_id
    assert got == [item.pk, item.pk]
    assert services.review_next(reviewer=reviewer("rex")) is None
