"""The judges the seed still asked for: policy violations against the admins' policies,
helpfulness and readability, all LLM judges that run only on a model able to grade. langchain-
core's fake chat model stands in for the judge model at the network edge."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.llm.catalogue import local_endpoint_ensure
from chatbot.models import AuditEntry, Judge, JudgePolicy, JudgeScore, ModelEndpoint, Span
from evaluation import policies, services
from evaluation.judge_models import judge_model
from evaluation.judges import JudgeError, parse_violations
from tests.evaluation.judging import finished_turn

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]
Fake = Callable[..., ModelEndpoint]
REFUNDS = "Never promise a refund; the billing team decides refunds."
PASSWORDS = "Never ask for or repeat a password."


@pytest.fixture
def judges(cast: dict[str, User]) -> dict[str, Judge]:
    return {j.name: j for j in services.judges_ensure()}


def on(judge: Judge) -> Judge:
    return services.judge_new_version(judge=judge, enabled=True)


def write_policies() -> None:
    policies.policy_save(name="No refund promises", rule=REFUNDS)
    policies.policy_save(name="No passwords", rule=PASSWORDS)
    policies.policy_save(name="Retired rule", rule="Say hello first.", enabled=False)


# --- verdict parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Nothing wrong here.\nViolations: none", []),
        ("**Violations:** None.", []),
        ("Violates 2: repeats the password.\nViolations: 2", [2]),
        ("Violates 1: promises money.\nViolates 2: asks for it.\nViolations: 2, 1", [1, 2]),
        ("Violations: 1\nOn reflection...\nViolations: none", []),
    ],
)
def test_it_reads_which_policies_a_judge_model_names(output: str, expected: list[int]) -> None:
    assert parse_violations(output, 2) == expected


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("The answer is fine.", 'no "Violations:" line'),
        ("Violations: the second one", "unreadable"),
        ("Violations: 3", "named policy 3, but there are 2"),
    ],
)
def test_it_refuses_a_policy_verdict_it_cannot_read(output: str, message: str) -> None:
    with pytest.raises(JudgeError, match=message):
        parse_violations(output, 2)


# --- the policy judge ----------------------------------------------------------------------------


def test_it_names_the_policies_an_answer_breaks(
    alice: User, judges: dict[str, Judge], fake_endpoint: Fake
) -> None:
    write_policies()
    # Policies are numbered in name order: 1 "No passwords", 2 "No refund promises".
    fake_endpoint(["Violates 2: it promises the money back.\nViolations: 2"])
    turn = finished_turn(alice, answer="Don't worry, you will get a full refund tomorrow.")

    score = services.judge_run(turn_id=turn.pk, judge_id=on(judges["policy-llm"]).pk)

    assert score is not None and score.status == JudgeScore.Status.DONE
    assert score.score == 0.0 and score.passed is False
    assert score.details["violations"] == [
        {"number": 2, "policy": "No refund promises", "why": "it promises the money back."}
    ]
    assert score.details["policies_checked"] == 2, "the policy that is off is not checked"
    assert score.details["model"] == "fake-model"


def test_it_passes_an_answer_that_breaks_no_policy(
    alice: User, judges: dict[str, Judge], fake_endpoint: Fake
) -> None:
    write_policies()
    fake_endpoint(["It only explains the reset page.\nViolations: none"])

    score = services.judge_run(turn_id=finished_turn(alice).pk, judge_id=judges["policy-llm"].pk)

    assert score is not None and score.score == 1.0 and score.passed is True
    assert score.details["violations"] == []


def test_it_records_a_failure_when_the_policy_verdict_is_unreadable(
    alice: User, judges: dict[str, Judge], fake_endpoint: Fake
) -> None:
    write_policies()
    fake_endpoint(["Violations: 7"])
    turn = finished_turn(alice)

    with pytest.raises(services.JudgeFailed):
        services.judge_run(turn_id=turn.pk, judge_id=judges["policy-llm"].pk)

    score = JudgeScore.objects.get(turn=turn)
    assert score.score is None and score.details == {}
    assert "named policy 7, but there are 2" in score.error


def test_it_skips_every_answer_until_a_policy_is_written(
    alice: User, judges: dict[str, Judge], fake_endpoint: Fake
) -> None:
    fake_endpoint(["Violations: none"])
    turn = finished_turn(alice)

    assert services.judge_run(turn_id=turn.pk, judge_id=judges["policy-llm"].pk) is None

    span = Span.objects.get(turn=turn, kind=Span.Kind.JUDGE)
    assert span.attributes["skipped"].startswith("no policies are written yet")
    assert not JudgeScore.objects.filter(turn=turn).exists()


# --- helpfulness and readability -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "output", "score", "passed"),
    [
        ("helpfulness-llm", "It gives the exact steps. Score: 5", 1.0, True),
        ("helpfulness-llm", "Vague; no next step.\nScore: 2", 0.25, False),
        ("readability-llm", "Plain words, a short list. Rating: 4/5", 0.75, True),
        ("readability-llm", "One long sentence of jargon. Score: 1", 0.0, False),
    ],
)
def test_it_scores_helpfulness_and_readability(
    alice: User, judges: dict[str, Judge], fake_endpoint: Fake,
    name: str, output: str, score: float, passed: bool,
) -> None:  # fmt: skip
    fake_endpoint([output])

    made = services.judge_run(turn_id=finished_turn(alice).pk, judge_id=judges[name].pk)

    assert made is not None and made.status == JudgeScore.Status.DONE
    assert made.score == score and made.passed is passed
    assert made.details["reasoning"] == output and made.tokens_in > 0


# --- needs a capable model -----------------------------------------------------------------------


def test_it_seeds_the_bundled_local_model_as_unable_to_grade(db: None) -> None:
    assert local_endpoint_ensure().capable_judge is False
    assert ModelEndpoint(name="hosted", model_id="big").capable_judge is True


@pytest.mark.parametrize("name", ["policy-llm", "helpfulness-llm", "readability-llm"])
def test_it_does_not_run_an_llm_judge_on_a_model_unable_to_grade(
    alice: User, judges: dict[str, Judge], fake_endpoint: Fake, name: str
) -> None:
    write_policies()
    fake_endpoint(["Score: 5\nViolations: none"], capable_judge=False)
    turn = finished_turn(alice)

    assert services.judge_run(turn_id=turn.pk, judge_id=on(judges[name]).pk) is None

    assert not JudgeScore.objects.filter(turn=turn).exists(), "no made-up score"
    span = Span.objects.get(turn=turn, kind=Span.Kind.JUDGE)
    assert span.attributes["skipped"].startswith("needs a capable model: no model is picked")
    assert (span.tokens_in, span.tokens_out) == (0, 0), "the model was not called"


def test_it_runs_on_the_judges_own_capable_model_over_a_small_default(
    alice: User, judges: dict[str, Judge], fake_endpoint: Fake
) -> None:
    fake_endpoint(["Score: 1"], capable_judge=False)
    own = fake_endpoint(["Clear and short. Score: 5"], name="grader", default=False)
    judge = services.judge_new_version(judge=judges["readability-llm"], endpoint=own)

    score = services.judge_run(turn_id=finished_turn(alice).pk, judge_id=judge.pk)

    assert score is not None and score.score == 1.0 and score.details["model"] == "grader"


def test_it_says_a_judge_needs_a_capable_model_when_its_own_model_is_small(
    judges: dict[str, Judge], fake_endpoint: Fake
) -> None:
    fake_endpoint(["Score: 5"])
    small = fake_endpoint(["Score: 5"], name="tiny", default=False, capable_judge=False)
    judge = services.judge_new_version(judge=judges["helpfulness-llm"], endpoint=small)

    model = judge_model(judge)

    assert model is not None and not model.ready
    assert model.needs.startswith("needs a capable model: its model 'tiny' is not marked capable")
    assert judge_model(judges["toxicity"]) is None, "a judge that asks no model needs none"


def test_it_shows_needs_a_capable_model_in_the_console(
    client_as: ClientAs, adam: User, judges: dict[str, Judge], fake_endpoint: Fake
) -> None:
    endpoint = fake_endpoint(["Score: 5"], capable_judge=False)
    client = client_as(adam)

    listing = client.get(reverse("console:judges")).content.decode()
    form = client.get(reverse("console:judge_edit", args=[judges["policy-llm"].pk])).content
    endpoint.capable_judge = True
    endpoint.save()
    fixed = client.get(reverse("console:judges")).content.decode()

    # Five LLM judges, each on the small default.
    assert listing.count(">Needs a capable model</span>") == 5
    assert "Needs a capable model.</strong> This judge does not run" in form.decode()
    assert "the default model &#x27;fake-model&#x27; is not marked capable" in form.decode()
    assert ">Needs a capable model</span>" not in fixed


def test_it_offers_the_capable_mark_on_the_model_form(
    client_as: ClientAs, adam: User, fake_endpoint: Fake
) -> None:
    endpoint = fake_endpoint(["Hi"])
    page = client_as(adam).get(reverse("console:model_edit", args=[endpoint.pk])).content.decode()
    assert "Capable enough to grade answers" in page


# --- writing policies in the console -------------------------------------------------------------


def test_it_adds_edits_and_deletes_a_policy_with_an_audit_trail(
    client_as: ClientAs, adam: User, judges: dict[str, Judge]
) -> None:
    client = client_as(adam)

    added = client.post(
        reverse("console:judge_policies"),
        {"name": "No refund promises", "rule": REFUNDS, "enabled": "on"},
    )
    policy = JudgePolicy.objects.get()
    edited = client.post(
        reverse("console:judge_policy_edit", args=[policy.pk]),
        {"name": "No refund promises", "rule": "Refunds: only billing decides."},
    )
    page = client.get(reverse("console:judge_policies")).content.decode()
    policy.refresh_from_db()
    deleted = client.post(reverse("console:judge_policy_delete", args=[policy.pk]))

    assert added.status_code == edited.status_code == deleted.status_code == 302
    assert (policy.rule, policy.enabled) == ("Refunds: only billing decides.", False)
    assert "Refunds: only billing decides." in page and '<span class="badge badge-off">Off' in page
    assert not JudgePolicy.objects.exists()
    entries = list(
        AuditEntry.objects.filter(action__startswith="judge_policy")
        .order_by("pk")
        .values_list("action", "details")
    )
    assert [action for action, _ in entries] == [
        "judge_policy.save", "judge_policy.save", "judge_policy.delete",
    ]  # fmt: skip
    assert entries[0][1]["created"] is True
    assert entries[1][1]["changed"] == {
        "rule": [REFUNDS, "Refunds: only billing decides."], "enabled": [True, False],
    }  # fmt: skip
    assert entries[2][1]["name"] == "No refund promises"


def test_it_refuses_a_policy_it_cannot_use(
    client_as: ClientAs, adam: User, judges: dict[str, Judge]
) -> None:
    policies.policy_save(name="No refund promises", rule=REFUNDS)
    client = client_as(adam)

    empty = client.post(reverse("console:judge_policies"), {"name": "Blank", "rule": "  "})
    twice = client.post(
        reverse("console:judge_policies"), {"name": "no REFUND promises", "rule": "Again."}
    )

    assert empty.status_code == twice.status_code == 400
    assert "This field is required." in empty.content.decode()
    assert "There is already a policy named" in twice.content.decode()
    assert JudgePolicy.objects.count() == 1
    assert AuditEntry.objects.filter(action="judge_policy.save").count() == 1


def test_it_tells_the_admin_the_policy_judge_needs_a_capable_model(
    client_as: ClientAs, adam: User, judges: dict[str, Judge], fake_endpoint: Fake
) -> None:
    fake_endpoint(["Violations: none"], capable_judge=False)

    page = client_as(adam).get(reverse("console:judge_policies")).content.decode()

    assert "Needs a capable model.</strong> The policy judge does not run" in page
    assert "No policies yet" in page


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_it_refuses_the_policies_to_everyone_but_admins(
    client_as: ClientAs, cast: dict[str, User], who: str
) -> None:
    policy = policies.policy_save(name="No refund promises", rule=REFUNDS)
    client = client_as(cast[who])

    assert client.get(reverse("console:judge_policies")).status_code == 403
    assert client.post(
        reverse("console:judge_policies"), {"name": "Sneaky", "rule": "Anything goes."}
    ).status_code == 403  # fmt: skip
    edit = reverse("console:judge_policy_edit", args=[policy.pk])
    assert client.get(edit).status_code == 403
    assert client.post(edit, {"name": "Changed", "rule": "Changed."}).status_code == 403
    delete = reverse("console:judge_policy_delete", args=[policy.pk])
    assert client.post(delete).status_code == 403
    assert list(JudgePolicy.objects.values_list("name", "rule")) == [
        ("No refund promises", REFUNDS)
    ]


def test_it_shows_the_broken_policies_on_the_review_item_escaped(
    client_as: ClientAs, rita: User, alice: User, judges: dict[str, Judge], fake_endpoint: Fake
) -> None:
    from chatbot.models import ReviewItem

    write_policies()
    fake_endpoint(["Violates 1: it says <script>alert(1)</script>.\nViolations: 1"])
    turn = finished_turn(alice, answer="Your password is hunter2.")
    services.judge_run(turn_id=turn.pk, judge_id=judges["policy-llm"].pk)
    item = ReviewItem.objects.create(turn=turn, reasons=[])

    body = client_as(rita).get(reverse("review:item", args=[item.pk])).content.decode()

    assert "Breaks “No passwords”: it says &lt;script&gt;alert(1)&lt;/script&gt;." in body
    assert "<script>alert(1)" not in body
