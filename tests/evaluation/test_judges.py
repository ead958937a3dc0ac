"""Automatic judges on known good and bad answers: real Postgres, the real classifiers, and
langchain-core's fake chat model at the network edge for the LLM judges."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User

from chatbot.models import Judge, JudgeScore, ModelEndpoint, Span, Turn
from evaluation import selectors, services
from evaluation.judges import JudgeError, parse_score
from evaluation.tasks import judge_run_task
from tests.evaluation.judging import PASSWORD_CHUNK, finished_turn

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"
PHONE = "+1 212-555-0143"
CARD = "4111 1111 1111 1111"


@pytest.fixture
def judges(cast: dict[str, User]) -> dict[str, Judge]:
    return {j.name: j for j in services.judges_ensure()}


def run(judge: Judge, turn: Turn) -> JudgeScore | None:
    return services.judge_run(turn_id=turn.pk, judge_id=judge.pk)


def test_it_seeds_the_built_in_judges_once_with_llm_judges_off(
    judges: dict[str, Judge],
) -> None:
    again = services.judges_ensure()

    assert [j.pk for j in again] == [j.pk for j in sorted(judges.values(), key=lambda j: j.name)]
    assert set(judges) == {
        "toxicity", "pii", "format", "faithfulness-overlap", "faithfulness-llm", "relevance-llm",
        "reward-model", "policy-llm", "helpfulness-llm", "readability-llm",
    }  # fmt: skip
    assert Judge.objects.count() == 10
    assert not any(j.enabled for j in judges.values() if j.is_llm)
    assert all(j.version == 1 and j.scale == "0-1" for j in judges.values())


def test_the_pii_judge_reads_the_admins_patterns_itself(
    alice: User, judges: dict[str, Judge]
) -> None:
    """A worker judges without having read the patterns with a turn: the judge reads them."""
    from chatbot.compliance import pii
    from chatbot.models import PiiPattern

    pii.patterns_use([])  # a fresh worker process: no admin patterns in memory
    PiiPattern.objects.create(entity="EMPLOYEE_ID", regex=r"EMP-\d{6}")
    score = run(judges["pii"], finished_turn(alice, answer="Unlock EMP-123456 in the portal."))

    assert score is not None and score.passed is False
    assert score.details["counts"] == {"EMPLOYEE_ID": 1}
    pii.patterns_use([])


def test_it_scores_a_toxic_answer_low_and_a_clean_one_high(
    alice: User, judges: dict[str, Judge]
) -> None:
    toxic = run(judges["toxicity"], finished_turn(alice, answer="Shut up, you stupid idiot."))
    clean = run(judges["toxicity"], finished_turn(alice, answer="Click Forgot password."))

    assert toxic is not None and clean is not None
    assert toxic.score is not None and toxic.score < 0.5 and toxic.passed is False
    assert clean.score is not None and clean.score > 0.5 and clean.passed is True
    assert toxic.details["probability"] > 0.5
    assert toxic.status == clean.status == JudgeScore.Status.DONE


def test_it_flags_personal_data_without_storing_it(alice: User, judges: dict[str, Judge]) -> None:
    leaky = finished_turn(
        alice, answer=f"Mail {EMAIL}, call {PHONE} or pay with card {CARD} for a refund."
    )
    clean = finished_turn(alice, answer="Ask the service desk through the portal for a refund.")

    flagged = run(judges["pii"], leaky)
    passed = run(judges["pii"], clean)

    assert flagged is not None and passed is not None
    assert flagged.score == 0.0 and flagged.passed is False
    assert flagged.details["counts"] == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    first = flagged.details["entities"][0]
    assert first["type"] == "EMAIL_ADDRESS"
    assert leaky.answer[first["start"] : first["end"]] == EMAIL, "positions point into the answer"
    stored = json.dumps(flagged.details)
    for raw in (EMAIL, PHONE, CARD, "212", "1111", "example.com"):
        assert raw not in stored, f"{raw!r} must not be copied into the judge's details"
    assert passed.score == 1.0 and passed.passed is True and passed.details["entities"] == []


def test_it_wants_citations_when_the_knowledge_base_was_used(
    alice: User, judges: dict[str, Judge]
) -> None:
    cited = finished_turn(alice, answer="Click Forgot password [1].", context=(PASSWORD_CHUNK,))
    uncited = finished_turn(alice, answer="Click Forgot password.", context=(PASSWORD_CHUNK,))
    no_kb = finished_turn(alice, answer="Click Forgot password.")
    empty = finished_turn(alice, answer="   ")

    scores = {name: run(judges["format"], t) for name, t in
              [("cited", cited), ("uncited", uncited), ("no_kb", no_kb), ("empty", empty)]}  # fmt: skip

    assert scores["cited"] is not None and scores["cited"].score == 1.0
    uncited_score = scores["uncited"]
    assert uncited_score is not None
    assert uncited_score.score == pytest.approx(2 / 3) and uncited_score.passed is False
    checks = {c["check"]: c["passed"] for c in uncited_score.details["checks"]}
    assert checks == {"not_empty": True, "length": True, "cites_sources": False}
    assert scores["no_kb"] is not None and scores["no_kb"].score == 1.0
    assert [c["check"] for c in scores["no_kb"].details["checks"]] == ["not_empty", "length"]
    assert scores["empty"] is not None and scores["empty"].score == 0.5


def test_it_checks_valid_json_and_length_when_a_version_asks(
    alice: User, judges: dict[str, Judge]
) -> None:
    strict = services.judge_new_version(
        judge=judges["format"], options={"max_chars": 20, "json": True}
    )
    good = run(strict, finished_turn(alice, answer='{"ticket": 42}'))
    bad = run(strict, finished_turn(alice, answer="Not JSON, and longer than twenty."))

    assert good is not None and good.score == 1.0
    assert bad is not None and bad.score == pytest.approx(1 / 3)


def test_it_scores_overlap_faithfulness_of_supported_and_unsupported_answers(
    alice: User, judges: dict[str, Judge]
) -> None:
    supported = finished_turn(
        alice,
        answer="Open the sign-in page and click Forgot password [1]. The reset link expires "
        "after 30 minutes [1].",
        context=(PASSWORD_CHUNK,),
    )
    unsupported = finished_turn(
        alice,
        answer="Call the helpdesk hotline to unlock your account. A manager must approve "
        "every password change within two business days. The reset link expires after 30 minutes.",
        context=(PASSWORD_CHUNK,),
    )

    good = run(judges["faithfulness-overlap"], supported)
    bad = run(judges["faithfulness-overlap"], unsupported)

    assert good is not None and good.score == 1.0 and good.passed is True
    assert bad is not None and bad.score == pytest.approx(1 / 3) and bad.passed is False
    assert [s["supported"] for s in bad.details["sentences"]] == [False, False, True]
    assert "helpdesk" in bad.details["sentences"][0]["unsupported_words"]


def test_it_skips_faithfulness_without_context_and_traces_why(
    alice: User, judges: dict[str, Judge]
) -> None:
    turn = finished_turn(alice, answer="Click Forgot password.")

    assert run(judges["faithfulness-overlap"], turn) is None
    assert not JudgeScore.objects.filter(turn=turn).exists()
    span = Span.objects.get(turn=turn, kind=Span.Kind.JUDGE)
    assert span.attributes["skipped"] == "the turn used no knowledge-base context"


def test_it_scores_with_an_llm_judge_through_the_model_layer(
    alice: User, judges: dict[str, Judge], fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint(["The answer follows source [1] closely.\nScore: 4"])
    turn = finished_turn(alice, answer="Click Forgot password [1].", context=(PASSWORD_CHUNK,))

    score = run(judges["faithfulness-llm"], turn)

    assert score is not None and score.status == JudgeScore.Status.DONE
    assert score.score == 0.75 and score.passed is True
    assert score.details["raw_score"] == 4.0
    assert score.details["reasoning"].startswith("The answer follows source [1]")
    assert score.details["model"] == "fake-model"
    assert score.tokens_in > 0 and score.tokens_out > 0 and score.cost > 0
    span = Span.objects.get(turn=turn, kind=Span.Kind.JUDGE)
    assert span.name == "judge faithfulness-llm v1"
    assert span.attributes == {
        "judge": "faithfulness-llm", "version": 1, "judge_kind": "faithfulness_llm",
        "score": 0.75, "status": "done",
    }  # fmt: skip
    assert (span.tokens_in, span.tokens_out, span.cost) == (
        score.tokens_in, score.tokens_out, score.cost,
    )  # fmt: skip


def test_it_uses_the_judges_own_model_over_the_catalogue_default(
    alice: User, judges: dict[str, Judge], fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint(["Score: 1"])
    own = fake_endpoint(["Relevant and direct. Rating: 5/5"], name="judge-model", default=False)
    judge = services.judge_new_version(judge=judges["relevance-llm"], endpoint=own, enabled=True)

    score = run(judge, finished_turn(alice))

    assert score is not None and score.score == 1.0 and score.details["model"] == "judge-model"


def test_it_records_a_failure_when_the_judge_model_answers_garbage_and_retries(
    alice: User, judges: dict[str, Judge], fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint(["I like turtles."])
    turn = finished_turn(alice)

    # Celery runs the task and its automatic retries in this process (apply), against the test
    # database; a real worker does the same with a back-off between attempts.
    outcome = judge_run_task.apply(args=(turn.pk, judges["relevance-llm"].pk))

    assert outcome.failed()
    score = JudgeScore.objects.get(turn=turn, judge=judges["relevance-llm"])
    assert score.status == JudgeScore.Status.FAILED
    assert score.attempts == 3
    assert score.score is None and score.passed is None
    assert score.error == "The judge model's answer has no score from 1 to 5: 'I like turtles.'"
    spans = Span.objects.filter(turn=turn, kind=Span.Kind.JUDGE)
    assert spans.count() == 3
    assert all(s.error == score.error and s.attributes["status"] == "failed" for s in spans)


def test_it_records_a_failure_when_no_judge_model_is_available(
    alice: User, judges: dict[str, Judge]
) -> None:
    ModelEndpoint.objects.update(enabled=False)
    turn = finished_turn(alice)

    with pytest.raises(services.JudgeFailed):
        run(judges["relevance-llm"], turn)

    score = JudgeScore.objects.get(turn=turn)
    assert score.error == "No model is available right now. An admin needs to enable one."
    assert score.attempts == 1


def test_it_leaves_the_turn_alone_when_a_judge_fails(
    alice: User, judges: dict[str, Judge], fake_endpoint: Callable[..., ModelEndpoint]
) -> None:
    fake_endpoint(["no idea"])
    turn = finished_turn(alice, answer="Click Forgot password.")
    before = Turn.objects.filter(pk=turn.pk).values().get()

    for judge in [judges["toxicity"], judges["relevance-llm"], judges["pii"]]:
        with contextlib.suppress(services.JudgeFailed):
            run(judge, turn)

    assert Turn.objects.filter(pk=turn.pk).values().get() == before
    statuses = dict(JudgeScore.objects.filter(turn=turn).values_list("judge__name", "status"))
    assert statuses == {"toxicity": "done", "relevance-llm": "failed", "pii": "done"}


def test_it_scores_each_judge_version_separately(alice: User, judges: dict[str, Judge]) -> None:
    turn = finished_turn(alice, answer="Click Forgot password.")
    v1 = judges["toxicity"]
    first = run(v1, turn)

    v2 = services.judge_new_version(judge=v1, threshold=1.0)
    second = run(v2, turn)

    assert first is not None and second is not None
    assert (v2.name, v2.version, v2.kind) == ("toxicity", 2, Judge.Kind.TOXICITY)
    assert first.pk != second.pk and first.judge_id == v1.pk and second.judge_id == v2.pk
    assert first.score == second.score
    assert first.passed is True and second.passed is False, "each version uses its own threshold"
    v1.refresh_from_db()
    assert not v1.enabled, "the new version replaces the old one on new turns"
    assert v2 in selectors.judges_active() and v1 not in selectors.judges_active()
    assert run(v2, turn) == second, "running a version again keeps its score"
    assert JudgeScore.objects.get(pk=second.pk).attempts == 1


def test_it_refuses_a_judge_edit_it_cannot_run(judges: dict[str, Judge]) -> None:
    with pytest.raises(services.InvalidJudge, match="between 0 and 1"):
        services.judge_new_version(judge=judges["pii"], threshold=3)
    with pytest.raises(services.InvalidJudge, match=r"only \{question\}, \{answer\}"):
        services.judge_new_version(judge=judges["relevance-llm"], prompt_template="Q: {query}")
    with pytest.raises(services.InvalidJudge, match="cannot be changed: kind"):
        services.judge_new_version(judge=judges["pii"], kind="toxicity")
    assert Judge.objects.filter(name__in=["pii", "relevance-llm"]).count() == 2


def test_it_does_not_judge_an_unfinished_turn(alice: User, judges: dict[str, Judge]) -> None:
    failed = finished_turn(alice, status=Turn.Status.FAILED)

    assert run(judges["toxicity"], failed) is None
    assert not JudgeScore.objects.filter(turn=failed).exists()


def test_it_keeps_judge_versions_that_have_scores(alice: User, judges: dict[str, Judge]) -> None:
    from django.db.models import ProtectedError

    run(judges["toxicity"], finished_turn(alice))

    with pytest.raises(ProtectedError):
        judges["toxicity"].delete()


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Score: 4", 4.0),
        ("The answer is grounded.\n\n**Score:** 5", 5.0),
        ("rating = 2/5", 2.0),
        ("I'd give it 3/5.", 3.0),
        ("Score: 2. On reflection, Score: 3", 3.0),
        ("4", 4.0),
        (" 1. ", 1.0),
        ("Score: 4.5", 4.5),
    ],
)
def test_it_reads_the_score_in_a_judge_models_answer(output: str, expected: float) -> None:
    assert parse_score(output) == expected


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("I like turtles.", "no score from 1 to 5"),
        ("Score: 10", "outside the 1 to 5 scale"),
        ("Score: 0", "outside the 1 to 5 scale"),
        ("", "no score from 1 to 5"),
        ("There are 3 claims and 2 sources.", "no score from 1 to 5"),
    ],
)
def test_it_refuses_a_judge_model_answer_without_a_score(output: str, message: str) -> None:
    with pytest.raises(JudgeError, match=message):
        parse_score(output)


def test_it_seeds_the_judges_in_bootstrap(db: None) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("bootstrap", stdout=out)
    call_command("bootstrap", stdout=out)

    assert "judges: faithfulness-llm v1 (off), faithfulness-overlap v1, format v1" in out.getvalue()
    assert Judge.objects.count() == 10
