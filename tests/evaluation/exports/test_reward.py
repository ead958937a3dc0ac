"""The reward model: labels from grades and thumbs, training on real embeddings with a held-out
split, versions, and the reward-model judge that skips until a model exists."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from chatbot.models import Judge, JudgeScore, RewardModel, Span, Turn
from evaluation import services as judging
from evaluation.exports import reward
from evaluation.exports.selectors import GradedTurn
from tests.evaluation.exports.support import rated, review
from tests.evaluation.judging import finished_turn

pytestmark = pytest.mark.django_db

TOPICS = [
    ("How do I reset a forgotten password?",
     "Open the sign-in page, click Forgot password and follow the link we email you."),
    ("How do I connect to the VPN from home?",
     "Install the VPN client from the software portal, then sign in with your work account."),
    ("Who approves my annual leave?",
     "Your line manager approves annual leave in the HR portal under Time off."),
    ("How do I order a new laptop?",
     "Raise a hardware request in the service portal; IT ships the laptop within five days."),
    ("Where do I submit travel expenses?",
     "Submit travel expenses in the finance app with the receipts attached, within 30 days."),
    ("How do I add a colleague to a shared mailbox?",
     "Ask the mailbox owner to raise an access request naming the colleague in the portal."),
    ("What is the Wi-Fi password for guests?",
     "Guests join the Guest network and get a daily code from reception."),
    ("How do I book a meeting room?",
     "Open the calendar, add a room from the Rooms list and the booking confirms itself."),
    ("How do I enable two-factor authentication?",
     "Open account security settings, choose Two-factor and scan the code with the app."),
    ("Where can I find the holiday calendar?",
     "The holiday calendar is on the intranet HR page under Public holidays."),
    ("How do I report a phishing email?",
     "Use the Report phishing button in the mail client; security reviews it the same day."),
    ("How do I change my bank details for payroll?",
     "Update your bank details in the HR portal under Pay; changes apply from next month."),
    ("How do I get access to the sales dashboard?",
     "Request the Sales viewer role in the access portal; your manager approves it."),
    ("How do I print from my laptop?",
     "Add the Follow-me printer from the software portal and release jobs with your badge."),
    ("How do I recover a deleted file?",
     "Restore it from the recycle bin, or from the previous versions of the shared folder."),
    ("How long is parental leave?",
     "Parental leave is sixteen weeks on full pay; register it in the HR portal."),
]  # fmt: skip
RUDE = [
    "Not my problem. Figure it out yourself.",
    "Whatever, stop asking stupid questions.",
    "lol no idea, google it",
    "I don't care, go away.",
    "Ugh. Read the manual, obviously.",
    "Why would I know that? Ask someone else.",
    "Stop bothering me with this nonsense.",
    "Honestly, who cares.",
]


def _labelled(user: User, reviewer: User, count: int = len(TOPICS)) -> list[Turn]:
    """Clearly good and clearly bad answers, labelled the three ways each label can come from."""
    turns = []
    for n, (question, good) in enumerate(TOPICS[:count]):
        bad = RUDE[n % len(RUDE)]
        if n % 2:
            liked = rated(user, 1, question=question, answer=good)
        else:
            liked = finished_turn(user, question=question, answer=good)
            review(liked, reviewer, grade=5, approved=True)
        disliked = finished_turn(user, question=question, answer=bad)
        if n % 3 == 0:
            review(disliked, reviewer, grade=1)
        elif n % 3 == 1:
            review(disliked, reviewer, grade=2, corrected=good)
        else:
            disliked = rated(user, -1, question=question, answer=bad)
        turns += [liked, disliked]
    return turns


@pytest.mark.parametrize(
    ("means", "corrections", "thumbs", "expected"),
    [
        ((5.0,), (), 0, (1, "rubric")),
        ((4.0, 4.4), (), -1, (1, "rubric")),
        ((2.0,), (), 1, (0, "rubric")),
        ((5.0,), ("A better answer.",), 1, (0, "corrected")),
        ((5.0,), ("the answer",), 0, (1, "rubric")),
        ((3.0,), (), 1, (1, "thumbs")),
        ((), (), -2, (0, "thumbs")),
        ((3.0,), (), 0, None),
        ((), (), 0, None),
    ],
)
def test_it_labels_answers_from_grades_corrections_and_thumbs(
    means: tuple[float, ...],
    corrections: tuple[str, ...],
    thumbs: int,
    expected: tuple[int, str] | None,
) -> None:
    turn = GradedTurn(1, "q", "The answer.", means, corrections, thumbs)

    assert reward.label_for(turn) == expected


def test_it_refuses_to_train_on_too_few_examples(alice: User, rita: User) -> None:
    _labelled(alice, rita, count=4)

    with pytest.raises(reward.NotEnoughExamples, match=r"Only 8 labelled answers so far \(4 good"):
        reward.reward_train(user=rita)
    assert not RewardModel.objects.exists()


def test_it_refuses_to_train_on_one_class_only(alice: User, rita: User) -> None:
    for question, good in TOPICS:
        for _ in range(2):
            review(finished_turn(alice, question=question, answer=good), rita, grade=5)

    with pytest.raises(reward.NotEnoughExamples, match=r"\(32 good, 0 bad\)"):
        reward.reward_train(user=rita)


def test_it_trains_a_model_that_beats_the_majority_baseline_and_activates_it(
    alice: User, rita: User
) -> None:
    _labelled(alice, rita)

    first = reward.reward_train(user=rita)

    assert first.version == 1 and first.active
    assert first.trained_on + first.held_out == 32 and first.held_out == 8
    assert first.baseline_accuracy == 0.5
    assert first.heldout_accuracy is not None
    assert first.heldout_accuracy > first.baseline_accuracy
    assert "inactive_reason" not in first.metrics
    assert first.metrics["labels"] == {"good": 16, "bad": 16}
    assert set(first.metrics["sources"]) == {"rubric", "thumbs", "corrected"}
    assert bytes(RewardModel.objects.get(pk=first.pk).artifact)

    second = reward.reward_train(user=rita)

    assert second.version == 2
    assert list(RewardModel.objects.filter(active=True)) == [second]
    reward.reward_activate(model=first)
    assert list(RewardModel.objects.filter(active=True).values_list("version", flat=True)) == [1]


def test_the_reward_judge_skips_until_a_model_is_trained_then_scores(
    alice: User, rita: User
) -> None:
    judge = {j.name: j for j in judging.judges_ensure()}["reward-model"]
    assert judge.enabled and judge.kind == Judge.Kind.REWARD_MODEL
    question, good = TOPICS[0]
    fresh_good = finished_turn(alice, question=question, answer=good)
    fresh_bad = finished_turn(alice, question=question, answer="Go away, not my job.")

    assert judging.judge_run(turn_id=fresh_good.pk, judge_id=judge.pk) is None
    span = Span.objects.get(turn=fresh_good, kind=Span.Kind.JUDGE)
    assert "no reward model is active" in span.attributes["skipped"]

    _labelled(alice, rita)
    model = reward.reward_train(user=rita)
    Span.objects.filter(turn=fresh_good).delete()
    good_score = judging.judge_run(turn_id=fresh_good.pk, judge_id=judge.pk)
    bad_score = judging.judge_run(turn_id=fresh_bad.pk, judge_id=judge.pk)

    assert good_score is not None and bad_score is not None
    assert good_score.status == bad_score.status == JudgeScore.Status.DONE
    assert good_score.score is not None and bad_score.score is not None
    assert 0 <= bad_score.score < good_score.score <= 1
    assert good_score.details["reward_model_version"] == model.version
    assert good_score.passed is True and bad_score.passed is False


def test_it_keeps_a_version_that_does_not_beat_the_baseline_inactive_with_the_reason(
    alice: User, adam: User
) -> None:
    _labelled(alice, adam)
    working = reward.reward_train(user=adam)
    Turn.objects.all().delete()
    # Answers that all read the same: nothing tells good from bad, so the model can at best
    # guess the majority label, which is exactly the baseline.
    question, answer = TOPICS[0]
    for n in range(20):
        rated(alice, 1 if n % 4 else -1, question=question, answer=answer)

    weak = reward.reward_train(user=adam)

    assert weak.version == 2 and not weak.active
    assert weak.heldout_accuracy is not None and weak.baseline_accuracy is not None
    assert weak.heldout_accuracy <= weak.baseline_accuracy
    assert "does not beat the majority baseline" in weak.metrics["inactive_reason"]
    assert list(RewardModel.objects.filter(active=True)) == [working]
