"""Flag rules put turns in the review queue: one test per rule kind, plus idempotence and hooks."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User

from chatbot.chat import services as chat
from chatbot.models import FlagRule, Judge, ReviewItem, Turn
from evaluation.review import flagging
from evaluation.review.flagging import rules_ensure, sampled, turn_flag, turn_flag_quietly
from evaluation.tasks import judge_run_task, judge_turn_task
from tests.evaluation.judging import finished_turn
from tests.evaluation.review.support import judge_score, rule, rules

pytestmark = pytest.mark.django_db


def _kinds(item: ReviewItem | None) -> list[str]:
    assert item is not None
    return sorted(r["kind"] for r in item.reasons)


def test_it_seeds_the_default_rules_once(rita: User) -> None:
    first = rules_ensure()
    FlagRule.objects.filter(kind=FlagRule.Kind.THUMBS_DOWN).update(priority=70)
    again = rules_ensure()
    assert len(first) == len(again) == 5
    assert FlagRule.objects.get(kind=FlagRule.Kind.THUMBS_DOWN).priority == 70
    sample = FlagRule.objects.get(kind=FlagRule.Kind.RANDOM_SAMPLE)
    assert (sample.priority, sample.sample_rate, sample.double_review) == (10, 0.02, True)


def test_it_flags_a_thumbs_down_when_the_feedback_commits(
    alice: User, django_capture_on_commit_callbacks
) -> None:
    rules()
    turn = finished_turn(alice)
    with django_capture_on_commit_callbacks(execute=True):
        chat.feedback_set(turn=turn, user=alice, rating=-1, comment="Wrong page")
    item = ReviewItem.objects.get(turn=turn)
    assert _kinds(item) == ["thumbs_down"]
    assert item.priority == 80
    assert item.reviews_needed == 1


def test_it_does_not_flag_a_thumbs_up(alice: User, django_capture_on_commit_callbacks) -> None:
    rules()
    turn = finished_turn(alice)
    with django_capture_on_commit_callbacks(execute=True):
        # The "feedback given" hook runs evaluation's receiver, which flags only thumbs down.
        chat.feedback_set(turn=turn, user=alice, rating=1)
    assert turn_flag(turn_id=turn.pk) is None
    assert not ReviewItem.objects.exists()


def test_it_flags_an_escalation_with_the_highest_priority(
    alice: User, rita: User, django_capture_on_commit_callbacks
) -> None:
    rules()
    turn = finished_turn(alice)
    with django_capture_on_commit_callbacks(execute=True):
        chat.feedback_set(turn=turn, user=rita, rating=-1)
        chat.escalation_create(turn=turn, user=alice, reason="Need a person")
    item = ReviewItem.objects.get(turn=turn)
    assert _kinds(item) == ["escalation", "thumbs_down"]
    assert item.priority == 90
    assert item.rule is not None and item.rule.kind == FlagRule.Kind.ESCALATION


def test_it_flags_a_judge_under_its_threshold(alice: User) -> None:
    rules()
    turn = finished_turn(alice)
    judge_score(turn, name="toxicity", kind=Judge.Kind.TOXICITY, passed=True)
    assert turn_flag(turn_id=turn.pk) is None
    judge_score(turn, name="format", kind=Judge.Kind.FORMAT, passed=False)
    item = turn_flag(turn_id=turn.pk)
    assert _kinds(item) == ["judge_below"]
    assert item is not None and item.priority == 60
    assert "format v1 scored 0.10" in item.reasons[0]["reason"]


def test_it_limits_a_judge_rule_to_the_named_judge(alice: User) -> None:
    rules()
    FlagRule.objects.filter(kind=FlagRule.Kind.JUDGE_BELOW).update(judge_name="pii")
    turn = finished_turn(alice)
    judge_score(turn, name="format", kind=Judge.Kind.FORMAT, passed=False)
    assert turn_flag(turn_id=turn.pk) is None
    judge_score(turn, name="pii", kind=Judge.Kind.PII, passed=False)
    assert _kinds(turn_flag(turn_id=turn.pk)) == ["judge_below"]


def test_it_flags_a_turn_with_no_answer(alice: User) -> None:
    rules()
    answered = finished_turn(alice)
    unanswered = finished_turn(alice, answer="I don't know.", no_answer=True)
    assert turn_flag(turn_id=answered.pk) is None
    item = turn_flag(turn_id=unanswered.pk)
    assert _kinds(item) == ["no_answer"]
    assert item is not None and item.priority == 50


def test_it_samples_turns_at_random_for_double_review(alice: User) -> None:
    rules()
    sample = rule(FlagRule.Kind.RANDOM_SAMPLE)
    turn = finished_turn(alice)
    sample.sample_rate = 0.0
    sample.save()
    assert turn_flag(turn_id=turn.pk) is None
    sample.sample_rate = 1.0
    sample.save()
    item = turn_flag(turn_id=turn.pk)
    assert _kinds(item) == ["random_sample"]
    assert item is not None and (item.priority, item.reviews_needed) == (10, 2)


def test_it_samples_deterministically_at_about_the_rate() -> None:
    picked = [i for i in range(1, 20_001) if sampled(i, 0.02)]
    # The hash is fixed, so this share is the same on every run; it is near 2% by construction.
    assert 0.015 < len(picked) / 20_000 < 0.025
    assert picked == [i for i in range(1, 20_001) if sampled(i, 0.02)]
    # Raising the rate keeps every turn already in the sample.
    assert set(picked) <= {i for i in range(1, 20_001) if sampled(i, 0.05)}


def test_it_does_not_sample_unfinished_or_failed_turns(alice: User) -> None:
    rules()
    FlagRule.objects.filter(kind=FlagRule.Kind.RANDOM_SAMPLE).update(sample_rate=1.0)
    failed = finished_turn(alice, status=Turn.Status.FAILED)
    pending = chat.turn_create(conversation=failed.conversation, user_text="Still thinking?")
    assert turn_flag(turn_id=failed.pk) is None
    assert turn_flag(turn_id=pending.pk) is None


def test_it_flags_idempotently(alice: User) -> None:
    rules()
    turn = finished_turn(alice, answer="I don't know.", no_answer=True)
    first = turn_flag(turn_id=turn.pk)
    second = turn_flag(turn_id=turn.pk)
    assert first is not None and second is not None
    assert first.pk == second.pk
    assert second.reasons == first.reasons
    assert ReviewItem.objects.count() == 1


def test_it_adds_reasons_and_raises_priority_on_an_open_item(alice: User) -> None:
    rules()
    turn = finished_turn(alice, answer="I don't know.", no_answer=True)
    turn_flag(turn_id=turn.pk)
    FlagRule.objects.filter(kind=FlagRule.Kind.RANDOM_SAMPLE).update(sample_rate=1.0)
    chat.escalation_create(turn=turn, user=alice)
    item = turn_flag(turn_id=turn.pk)
    assert _kinds(item) == ["escalation", "no_answer", "random_sample"]
    assert item is not None and (item.priority, item.reviews_needed) == (90, 2)


def test_it_keeps_a_reviewed_item_done_when_a_new_reason_arrives(alice: User) -> None:
    rules()
    turn = finished_turn(alice, answer="I don't know.", no_answer=True)
    item = turn_flag(turn_id=turn.pk)
    assert item is not None
    ReviewItem.objects.filter(pk=item.pk).update(status=ReviewItem.Status.DONE)
    chat.escalation_create(turn=turn, user=alice)
    again = turn_flag(turn_id=turn.pk)
    assert again is not None
    assert again.status == ReviewItem.Status.DONE
    assert again.priority == 50
    assert _kinds(again) == ["escalation", "no_answer"]


def test_it_ignores_disabled_rules(alice: User) -> None:
    rules()
    FlagRule.objects.filter(kind=FlagRule.Kind.NO_ANSWER).update(enabled=False)
    turn = finished_turn(alice, answer="I don't know.", no_answer=True)
    assert turn_flag(turn_id=turn.pk) is None


def test_it_logs_and_swallows_a_flagging_failure(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=flagging.__name__):
        turn_flag_quietly("not-a-turn-id")  # type: ignore[arg-type]
    assert "flagging turn not-a-turn-id for review failed" in caplog.text


def test_it_flags_from_the_judge_tasks(alice: User) -> None:
    rules()
    # The turn-level task flags what needs no judge straight away.
    unanswered = finished_turn(alice, answer="I don't know.", no_answer=True)
    judge_turn_task(unanswered.pk)
    assert _kinds(ReviewItem.objects.get(turn=unanswered)) == ["no_answer"]

    # A judge that fails the answer flags it when its score is stored.
    judge = Judge.objects.create(
        name="format", kind=Judge.Kind.FORMAT, threshold=1.0, options={"max_chars": 5}
    )
    long_answer = finished_turn(alice, answer="Open the sign-in page and click Forgot password.")
    assert judge_run_task(long_answer.pk, judge.pk) == "done"
    assert _kinds(ReviewItem.objects.get(turn=long_answer)) == ["judge_below"]


def test_it_keeps_replays_out_of_the_queue(alice: User) -> None:
    rules()
    original = finished_turn(alice, answer="I don't know.", no_answer=True)
    replay = finished_turn(alice, answer="I don't know.", no_answer=True)
    Turn.objects.filter(pk=replay.pk).update(is_replay=True, replay_of=original)
    assert turn_flag(turn_id=replay.pk) is None
    assert not ReviewItem.objects.filter(turn=replay).exists()
    assert turn_flag(turn_id=original.pk) is not None
