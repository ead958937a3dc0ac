"""The reward model: a small classifier on answer embeddings, trained from human grades and thumbs,
versioned, and run on every new answer as one more judge.

Labels: good (1) when the reviewers' rubric mean is 4 or more, or the thumbs are up; bad (0) when
the answer was corrected, the rubric mean is 2 or less, or the thumbs are down. A reviewer's grade
outranks the thumbs; a turn with neither, or with a middling grade and no thumbs, is not used.
"""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from chatbot.jobs import job_submit_on_commit
from chatbot.llm.embeddings import embeddings
from chatbot.models import RewardModel
from evaluation.exports import selectors
from evaluation.exports.fingerprints import normalised
from evaluation.judges import JudgeCase, Skip, Verdict

logger = logging.getLogger(__name__)

MIN_EXAMPLES = 20
MIN_PER_CLASS = 5
HELD_OUT_SHARE = 0.25
SEED = 0
MAX_EXAMPLES = 20_000  # the most recent labelled turns; older ones add little and cost time
VERSION_LOCK = 0x5E3A_0D01  # pg advisory lock key for reward model versions
ALGORITHM = "logistic-regression on all-MiniLM-L6-v2 [question | answer | question*answer]"


class NotEnoughExamples(ValueError):
    """Too few labelled answers to train on; the message says how many more are needed."""


@dataclass(frozen=True)
class Example:
    turn_id: int
    question: str
    answer: str
    label: int
    source: str


def label_for(turn: selectors.GradedTurn) -> tuple[int, str] | None:
    """(label, what decided it), or None when the turn says nothing clear."""
    if any(normalised(fix) != normalised(turn.answer) for fix in turn.corrections):
        return 0, "corrected"
    if turn.rubric_means:
        mean = sum(turn.rubric_means) / len(turn.rubric_means)
        if mean >= 4:
            return 1, "rubric"
        if mean <= 2:
            return 0, "rubric"
    if turn.net_thumbs > 0:
        return 1, "thumbs"
    if turn.net_thumbs < 0:
        return 0, "thumbs"
    return None


def reward_examples() -> list[Example]:
    examples = []
    for turn in selectors.graded_turns(limit=MAX_EXAMPLES):
        labelled = label_for(turn)
        if labelled is not None:
            label, source = labelled
            examples.append(Example(turn.turn_id, turn.question, turn.answer, label, source))
    return examples


def examples_check(examples: list[Example]) -> None:
    counts = Counter(e.label for e in examples)
    good, bad = counts[1], counts[0]
    if len(examples) < MIN_EXAMPLES or min(good, bad) < MIN_PER_CLASS:
        raise NotEnoughExamples(
            f"Only {len(examples)} labelled answers so far ({good} good, {bad} bad). Training "
            f"needs at least {MIN_EXAMPLES}, with at least {MIN_PER_CLASS} good and "
            f"{MIN_PER_CLASS} bad: review more answers in the queue, or wait for more thumbs."
        )


def features(pairs: list[tuple[str, str]]) -> np.ndarray:
    """[question | answer | question*answer] embeddings: the product lets the classifier see
    whether the answer is about the question, not only what the answer sounds like."""
    if not pairs:
        return np.zeros((0, 0))
    vectors = np.asarray(
        embeddings().embed_documents([text for pair in pairs for text in pair]), dtype=np.float32
    )
    questions, answers = vectors[0::2], vectors[1::2]
    return np.hstack([questions, answers, questions * answers])


def _fit(examples: list[Example]) -> tuple[Any, dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x = features([(e.question, e.answer) for e in examples])
    y = np.array([e.label for e in examples])
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=HELD_OUT_SHARE, stratify=y, random_state=SEED
    )
    model = LogisticRegression(max_iter=2000, random_state=SEED)
    model.fit(x_train, y_train)
    accuracy = float((model.predict(x_test) == y_test).mean())
    majority = int(np.bincount(y_train, minlength=2).argmax())
    baseline = float((y_test == majority).mean())
    metrics = {
        "trained_on": len(y_train),
        "held_out": len(y_test),
        "heldout_accuracy": accuracy,
        "baseline_accuracy": baseline,
        "labels": {"good": int(y.sum()), "bad": int(len(y) - y.sum())},
        "sources": dict(Counter(e.source for e in examples)),
        "features": "question | answer | question*answer (all-MiniLM-L6-v2, 384 each)",
    }
    return model, metrics


def inactive_reason(metrics: dict[str, Any]) -> str:
    """Why a new version must not score production answers, or "" when it may: it has to beat
    always guessing the majority label on its own held-out split, or it adds only noise."""
    accuracy, baseline = metrics["heldout_accuracy"], metrics["baseline_accuracy"]
    if accuracy > baseline:
        return ""
    return (
        f"Held-out accuracy {accuracy:.0%} does not beat the majority baseline of {baseline:.0%} "
        f"on the same {metrics['held_out']} held-out answers, so it was kept inactive."
    )


def reward_train(*, user: User | None = None) -> RewardModel:
    """Train the next version on every labelled answer. It becomes the active one only when it
    beats the majority baseline on its held-out split; otherwise it is kept, inactive, with the
    reason, and the version already active keeps scoring."""
    examples = reward_examples()
    examples_check(examples)
    model, metrics = _fit(examples)
    reason = inactive_reason(metrics)
    if reason:
        metrics["inactive_reason"] = reason
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    with transaction.atomic():
        # Two trainings finishing at once take consecutive versions, one after the other.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [VERSION_LOCK])
        latest = RewardModel.objects.aggregate(v=Max("version"))["v"] or 0
        if not reason:
            RewardModel.objects.filter(active=True).update(active=False)
        return RewardModel.objects.create(
            version=latest + 1,
            artifact=buffer.getvalue(),
            algorithm=ALGORITHM,
            trained_on=metrics["trained_on"],
            held_out=metrics["held_out"],
            heldout_accuracy=metrics["heldout_accuracy"],
            baseline_accuracy=metrics["baseline_accuracy"],
            metrics=metrics,
            active=not reason,
            created_by=user,
        )


@transaction.atomic
def reward_activate(*, model: RewardModel) -> RewardModel:
    """Make one version the one that scores new answers (rolling back a worse one)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [VERSION_LOCK])
    RewardModel.objects.filter(active=True).exclude(pk=model.pk).update(active=False)
    RewardModel.objects.filter(pk=model.pk).update(active=True)
    model.active = True
    return model


# --- training in the background ------------------------------------------------------------------

STATE_KEY = "evaluation:reward-training"
STATE_TTL_S = 24 * 3600
STALE_RUNNING_S = 30 * 60  # a worker that died mid-training stops blocking new runs after this


def reward_training_state() -> dict[str, Any] | None:
    """The last training run: {"status": queued|running|done|failed, "message", ...}."""
    state = cache.get(STATE_KEY)
    return state if isinstance(state, dict) else None


def _busy(state: dict[str, Any] | None) -> bool:
    if state is None or state.get("status") not in {"queued", "running"}:
        return False
    return timezone.now().timestamp() - float(state.get("since", 0)) < STALE_RUNNING_S


def reward_train_queue(*, user: User) -> dict[str, Any]:
    """Check there is enough to learn from, then train in the background. Raises
    `NotEnoughExamples` with a message for the person when there is not."""
    if _busy(reward_training_state()):
        raise NotEnoughExamples("A training run is already in progress; wait for it to finish.")
    examples_check(reward_examples())
    from evaluation.exports.tasks import reward_train_task

    token = uuid.uuid4().hex
    state = {"token": token, "status": "queued", "since": timezone.now().timestamp(),
             "message": "Waiting for a worker…", "user_id": user.pk}  # fmt: skip
    cache.set(STATE_KEY, state, STATE_TTL_S)
    job_submit_on_commit(reward_train_task, token, user.pk)
    return state


def reward_train_run(*, token: str, user: User | None) -> dict[str, Any]:
    """The task's body: run the training the token names once, recording how it went."""
    state = reward_training_state()
    if state is None or state.get("token") != token or state.get("status") in {"done", "failed"}:
        return state or {}
    state.update(status="running", since=timezone.now().timestamp(), message="Training…")
    cache.set(STATE_KEY, state, STATE_TTL_S)
    try:
        model = reward_train(user=user)
    except NotEnoughExamples as exc:
        state.update(status="failed", message=str(exc))
    except Exception as exc:
        logger.exception("reward model training failed")
        state.update(status="failed", message=f"Training failed ({type(exc).__name__}: {exc}).")
    else:
        outcome = model.metrics.get("inactive_reason") or "it now scores new answers."
        state.update(
            status="done",
            version=model.version,
            message=f"Trained version {model.version}: held-out accuracy "
            f"{model.heldout_accuracy:.0%} against a majority baseline of "
            f"{model.baseline_accuracy:.0%}; {outcome}",
        )
    cache.set(STATE_KEY, state, STATE_TTL_S)
    return state


# --- scoring (the reward-model judge) ------------------------------------------------------------

_loaded: dict[int, Any] = {}
_load_lock = threading.Lock()


def _estimator(version: int) -> Any:
    with _load_lock:
        if version not in _loaded:
            raw = selectors.reward_model_artifact(version=version)
            if raw is None:
                return None
            import joblib

            # Only this module writes artifacts (reward_train); loading them is loading our own.
            _loaded.clear()
            _loaded[version] = joblib.load(io.BytesIO(raw))
        return _loaded[version]


def reward_score(case: JudgeCase) -> Verdict | Skip:
    """The active reward model's probability that the answer is good."""
    if not case.answer.strip():
        return Skip("the turn has no answer to score")
    version = selectors.reward_model_active_version()
    if version is None:
        return Skip("no reward model is active yet; train one on the reward model page")
    model = _estimator(version)
    if model is None:
        return Skip(f"reward model v{version} was removed")
    row = features([(case.question, case.answer)])
    good = list(model.classes_).index(1)
    probability = float(model.predict_proba(row)[0][good])
    return Verdict(
        score=probability,
        details={"reward_model_version": version, "probability": round(probability, 4)},
    )
