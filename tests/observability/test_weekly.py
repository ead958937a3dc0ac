"""The weekly report: a week of turns the test builds, and the week before, turned into stored
figures with the changes between them; one row per week however often it runs; the webhook (a
fake HTTP peer) on success, on failure and retried by a real worker; who may see and act."""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import User
from django.test import Client

from chatbot.models import (
    AuditEntry,
    Conversation,
    Dataset,
    DatasetItem,
    Export,
    Feedback,
    FineTuneJob,
    Judge,
    JudgeScore,
    Promotion,
    PromptVersion,
    Review,
    ReviewItem,
    Turn,
    WeeklyReport,
)
from evaluation.review.agreement import judge_trust_all
from observability import weekly
from tests.fake_peers import fake_peer

MONDAY = date(2026, 3, 9)  # the week reported on
BEFORE = date(2026, 3, 2)  # the week before
NOW = datetime(2026, 3, 16, 6, 0, tzinfo=UTC)  # the Monday after, when the job runs


def _at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def _turn(owner: User, moment: datetime, **fields: Any) -> Turn:
    conversation = Conversation.objects.create(
        owner=owner, is_replay=fields.get("is_replay", False)
    )
    defaults: dict[str, Any] = {"user_text": "q", "answer": "a", "status": Turn.Status.DONE}
    turn = Turn.objects.create(conversation=conversation, **{**defaults, **fields})
    Turn.objects.filter(pk=turn.pk).update(created_at=moment)
    return turn


def _review(turn: Turn, reviewer: User, grade: int, moment: datetime, **fields: Any) -> Review:
    item, _ = ReviewItem.objects.get_or_create(turn=turn)
    grades = dict.fromkeys(Review.RUBRIC, grade)
    review = Review.objects.create(item=item, turn=turn, reviewer=reviewer, **grades, **fields)
    Review.objects.filter(pk=review.pk).update(created_at=moment)
    return review


def _score(turn: Turn, judge: Judge, passed: bool) -> None:
    JudgeScore.objects.create(
        turn=turn, judge=judge, score=1.0 if passed else 0.0, passed=passed, status="done"
    )


@pytest.fixture
def weeks(cast: dict[str, User], fake_endpoint) -> dict[str, Any]:
    """Two weeks of production, each figure chosen so the expected numbers are plain."""
    alice, rita, adam = cast["alice"], cast["rita"], cast["adam"]
    small = fake_endpoint(name="week-small", default=False)
    large = fake_endpoint(name="week-large", default=False)
    judge = Judge.objects.create(name="week-format", kind=Judge.Kind.FORMAT)
    prompt = PromptVersion.objects.create(
        kind=PromptVersion.Kind.SYSTEM, number=901, text="Be brief.", status="retired"
    )
    done = {"ttft_ms": 100.0, "total_ms": 1000.0, "tokens_in": 100, "tokens_out": 50}
    # The week: four answers on the small model (one a day), one failure on the large one, and
    # a replay and a pending turn, which never count.
    answered = [
        _turn(alice, _at(MONDAY + timedelta(days=d)), endpoint=small, cost=Decimal("0.01"),
              prompt_version=prompt, **done)
        for d in range(4)
    ]  # fmt: skip
    _turn(alice, _at(MONDAY + timedelta(days=5)), endpoint=large, status=Turn.Status.FAILED)
    _turn(alice, _at(MONDAY + timedelta(days=2)), endpoint=small, is_replay=True, **done)
    _turn(alice, _at(MONDAY + timedelta(days=3)), endpoint=small, status=Turn.Status.PENDING)
    for turn, passed in zip(answered[:3], (True, True, False), strict=True):
        _score(turn, judge, passed)
    Feedback.objects.create(turn=answered[0], user=alice, rating=1)
    Feedback.objects.create(turn=answered[1], user=alice, rating=1)
    Feedback.objects.create(turn=answered[2], user=alice, rating=-1)
    review = _review(
        answered[2], rita, 4, _at(MONDAY + timedelta(days=4)), corrected_answer="Better."
    )
    ReviewItem.objects.get_or_create(turn=answered[3])
    dataset = Dataset.objects.create(name="week-regressions")
    item = DatasetItem.objects.create(
        dataset=dataset, question="q", added_in=1, source_review=review, source_turn=answered[2]
    )
    DatasetItem.objects.filter(pk=item.pk).update(created_at=_at(MONDAY + timedelta(days=4)))
    export = Export.objects.create(
        kind="sft", status="done", rows_written=10, finished_at=_at(MONDAY + timedelta(days=5))
    )
    tuned = fake_endpoint(name="week-tuned", default=False)
    FineTuneJob.objects.create(
        export=export, method="sft", base_model="base", fingerprint="week", status="done",
        endpoint=tuned, finished_at=_at(MONDAY + timedelta(days=5), 15),
        lineage={"rows": {"train": 9, "validation": 1}},
    )  # fmt: skip
    FineTuneJob.objects.create(  # failed: it trained nothing that counts
        export=export, method="sft", base_model="base", fingerprint="week-2", status="failed",
        finished_at=_at(MONDAY + timedelta(days=5), 16), lineage={"rows": {"train": 5}},
    )  # fmt: skip
    Promotion.objects.create(
        endpoint=tuned, dataset=dataset, status="promoted", created_by=adam,
        promoted_by=adam, promoted_at=_at(MONDAY + timedelta(days=6)),
    )  # fmt: skip
    # The week before: two slower, dearer answers, one thumbed down and graded 2.
    earlier = [
        _turn(alice, _at(BEFORE + timedelta(days=d)), endpoint=small, cost=Decimal("0.02"),
              **{**done, "total_ms": 3000.0})
        for d in range(2)
    ]  # fmt: skip
    Feedback.objects.create(turn=earlier[0], user=alice, rating=-1)
    _review(earlier[1], rita, 2, _at(BEFORE + timedelta(days=1)))
    return {"small": small, "large": large, "judge": judge, "prompt": prompt, "turns": answered}


@pytest.mark.django_db
def test_it_computes_a_weeks_figures_and_the_change_from_the_week_before(weeks) -> None:
    report = weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    figures = report.figures
    turns, before = figures["turns"], figures["previous_turns"]

    assert (report.week_start, report.week_end, report.label) == (
        MONDAY,
        date(2026, 3, 15),
        "2026-W11",
    )
    assert (turns["turns"], turns["done"], turns["failed"]) == (5, 4, 1)
    assert (turns["judged"], turns["flagged"], turns["reviews"]) == (3, 2, 1)
    assert turns["judge_pass_rate"] == pytest.approx(2 / 3)
    assert turns["thumbs_up_rate"] == pytest.approx(2 / 3)
    assert turns["review_grade"] == pytest.approx(4.0)
    assert turns["cost"] == pytest.approx(0.04)
    assert (before["turns"], before["cost"], before["review_grade"]) == (
        2,
        pytest.approx(0.04),
        2.0,
    )
    assert before["thumbs_up_rate"] == 0 and before["judge_pass_rate"] is None

    changes = figures["changes"]
    assert changes["turns"] == {"week": 5, "previous": 2, "delta": 3, "relative": 1.5}
    assert changes["review_grade"]["delta"] == pytest.approx(2.0)
    assert changes["thumbs_up_rate"]["delta"] == pytest.approx(2 / 3)
    assert changes["cost"]["delta"] == pytest.approx(0.0)
    assert changes["judge_pass_rate"]["delta"] is None, "nothing was judged the week before"
    assert changes["total_p95"]["delta"] < 0, "the week's answers were faster"
    assert changes["corrected"] == {"week": 1, "previous": 0, "delta": 1, "relative": None}

    work = figures["work"]
    assert (work["reviews"], work["corrected"], work["dataset_items"]) == (1, 1, 1)
    assert (work["exports"], work["export_rows"], work["finetune_done"]) == (1, 10, 1)
    assert work["finetuned_endpoints"] == ["week-tuned"]
    assert (work["finetune_rows"], work["finetune_failed"]) == (9, 1), "training rows, done jobs"
    assert changes["finetune_rows"] == {"week": 9, "previous": 0, "delta": 9, "relative": None}
    assert (work["promoted"], work["promoted_endpoints"]) == (1, ["week-tuned"])
    assert figures["previous_work"]["reviews"] == 1

    assert [(e["name"], e["turns"]) for e in figures["endpoints"]] == [
        ("week-small", 4),
        ("week-large", 1),
    ]
    assert figures["endpoints"][0]["share"] == pytest.approx(0.8)
    prompts = {p["label"]: p["turns"] for p in figures["prompts"]}
    assert prompts == {
        "System prompt v901": 4,
        "The caller's own system prompt, or none recorded": 1,
    }
    expected = {t.name: (t.kappa, t.pairs, t.state) for t in judge_trust_all()}
    assert {j["name"]: (j["kappa"], j["pairs"], j["state"]) for j in figures["judges"]} == expected
    assert expected["week-format"][1] == 1, "the one reviewed turn the judge scored"

    assert "Weekly report 2026-W11, 9 Mar to 15 Mar 2026 (UTC)" in report.summary
    assert "Turns logged 5 (+3, +150.0%)" in report.summary
    assert "Cost $0.04 (no change)" in report.summary
    assert "Promoted to the default: week-tuned." in report.summary
    assert "fine-tuning jobs finished 1 (+1), rows trained on 9 (+9)" in report.summary


@pytest.mark.django_db
def test_it_keeps_one_report_a_week_however_often_it_runs(weeks, alice) -> None:
    first = weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    again = weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    assert WeeklyReport.objects.count() == 1 and again.pk == first.pk
    assert again.figures == first.figures

    _turn(alice, _at(MONDAY + timedelta(days=6)), endpoint=weeks["small"])
    updated = weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    assert updated.pk == first.pk and updated.figures["turns"]["turns"] == 6

    ran = weekly.weekly_reports_run(now=NOW, backfill=6)
    assert ran[0] == first.pk
    # The week before is filled in; nothing before the first production turn.
    assert sorted(WeeklyReport.objects.values_list("week_start", flat=True)) == [BEFORE, MONDAY]
    weekly.weekly_reports_run(now=NOW, backfill=6)
    assert WeeklyReport.objects.count() == 2

    with pytest.raises(weekly.NotAFinishedWeek):
        weekly.weekly_report_compute(week_start=MONDAY + timedelta(days=7), now=NOW)
    with pytest.raises(weekly.NotAFinishedWeek):
        weekly.weekly_report_compute(week_start=MONDAY + timedelta(days=1), now=NOW)


@pytest.mark.django_db
def test_it_cuts_weeks_in_the_sites_time_zone(settings, alice) -> None:
    # Sunday 23:30 UTC is already Monday in Berlin (UTC+1 in March).
    _turn(alice, datetime(2026, 3, 8, 23, 30, tzinfo=UTC))

    in_utc = weekly.weekly_report_compute(week_start=MONDAY, now=NOW).figures
    assert (in_utc["turns"]["turns"], in_utc["previous_turns"]["turns"]) == (0, 1)

    settings.TIME_ZONE = "Europe/Berlin"
    start, end = weekly.week_bounds(MONDAY)
    assert start == datetime(2026, 3, 8, 23, 0, tzinfo=UTC) and end - start == timedelta(days=7)
    in_berlin = weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    assert in_berlin.figures["turns"]["turns"] == 1 and in_berlin.time_zone == "Europe/Berlin"
    assert "No production turns" not in in_berlin.summary


def _ok(path: str, body: dict[str, Any]) -> tuple[Any, ...]:
    return 200, [b"{}"], "application/json"


@pytest.mark.django_db
def test_it_posts_the_report_to_the_webhook_once(weeks, settings) -> None:
    report = weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    with fake_peer(_ok) as (url, seen):
        settings.WEEKLY_REPORT_WEBHOOK_URL = f"{url}/hooks/weekly"
        weekly.weekly_report_deliver(report_id=report.pk)
        weekly.weekly_report_deliver(report_id=report.pk)  # safe to run twice

    assert len(seen) == 1 and seen[0]["path"] == "/hooks/weekly"
    body = seen[0]["body"]
    assert body["week"] == "2026-W11" and body["week_start"] == "2026-03-09"
    assert body["text"] == report.summary
    assert body["figures"]["changes"]["turns"]["delta"] == 3
    report.refresh_from_db()
    assert report.delivery == WeeklyReport.Delivery.DELIVERED
    assert report.delivery_attempts == 1 and report.delivered_at and not report.delivery_error


@pytest.mark.django_db
def test_it_records_a_webhook_that_fails(weeks, settings) -> None:
    report = weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    with fake_peer(lambda path, body: (503, [b"down"], "text/plain")) as (url, seen):
        settings.WEEKLY_REPORT_WEBHOOK_URL = url
        with pytest.raises(weekly.WeeklyReportDeliveryFailed):
            weekly.weekly_report_deliver(report_id=report.pk)
    report.refresh_from_db()
    assert len(seen) == 1
    assert report.delivery == WeeklyReport.Delivery.FAILED and report.delivery_attempts == 1
    assert report.delivery_error == "The webhook answered HTTP 503."


@pytest.mark.django_db
def test_the_monday_job_queues_the_new_week_for_posting_once(
    weeks, settings, django_capture_on_commit_callbacks
) -> None:
    settings.WEEKLY_REPORT_WEBHOOK_URL = "http://127.0.0.1:9/hooks"
    with django_capture_on_commit_callbacks() as queued:
        [latest, backfilled] = weekly.weekly_reports_run(now=NOW, backfill=2)
    assert len(queued) == 1, "only the week just ended is posted"
    assert WeeklyReport.objects.get(pk=latest).delivery == WeeklyReport.Delivery.SENDING
    assert WeeklyReport.objects.get(pk=backfilled).delivery == WeeklyReport.Delivery.NONE
    with django_capture_on_commit_callbacks() as queued:
        weekly.weekly_reports_run(now=NOW, backfill=2)
    assert queued == [], "already on its way: not queued twice"


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_retries_a_failed_post(alice, settings, worker: TestWorkController) -> None:
    from observability.tasks import weekly_report_deliver_task

    _turn(alice, _at(MONDAY))
    report = weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    answers = iter([(500, [b"busy"], "text/plain")])

    def flaky(path: str, body: dict[str, Any]) -> tuple[Any, ...]:
        return next(answers, (200, [b"{}"], "application/json"))

    with fake_peer(flaky) as (url, seen):
        settings.WEEKLY_REPORT_WEBHOOK_URL = url
        weekly_report_deliver_task.delay(report.pk)
        deadline = clock.monotonic() + 60
        while clock.monotonic() < deadline:
            report.refresh_from_db()
            if report.delivery == WeeklyReport.Delivery.DELIVERED:
                break
            clock.sleep(0.2)
    assert report.delivery == WeeklyReport.Delivery.DELIVERED
    assert report.delivery_attempts == 2 and len(seen) == 2


# --- the pages -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_the_weeks_and_one_weeks_report(weeks, rita, client_as) -> None:
    weekly.weekly_reports_run(now=NOW, backfill=2)
    client: Client = client_as(rita)

    listing = client.get("/dashboard/weekly/").content.decode()
    assert "2026-W11" in listing and "2026-W10" in listing
    assert 'href="/dashboard/weekly/2026-03-09/"' in listing

    response = client.get("/dashboard/weekly/2026-03-09/")
    assert response.status_code == 200
    page = response.content.decode()
    for text in ("Week 2026-W11", "From logged to shipped", "+3 (+150.0%)", "week-small",
                 "System prompt v901", "Judges against human reviews", "week-format",
                 "Fine-tuning jobs finished: 1, trained on 9 rows, registered as week-tuned; 1 failed.",
                 "Rows trained on",
                 "Retrieval drift", "week-tuned", "← 2026-W10"):  # fmt: skip
        assert text in page, text
    assert "Compute again" not in page, "reviewers read; admins act"
    assert client.get("/dashboard/weekly/2026-03-16/").status_code == 404
    assert client.get("/dashboard/weekly/not-a-date/").status_code == 404


@pytest.mark.django_db
def test_admins_compute_a_week_again_and_post_it_audited(weeks, adam, client_as, settings) -> None:
    report = weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    client = client_as(adam)
    assert "Compute again" in client.get("/dashboard/weekly/2026-03-09/").content.decode()

    response = client.post("/dashboard/weekly/2026-03-09/recompute/")
    assert response.status_code == 302
    assert WeeklyReport.objects.count() == 1
    assert AuditEntry.objects.filter(action="weekly_report.recompute", actor_id=adam.pk).exists()

    with fake_peer(_ok) as (url, seen):
        settings.WEEKLY_REPORT_WEBHOOK_URL = url
        assert client.post("/dashboard/weekly/2026-03-09/post/").status_code == 302
    report.refresh_from_db()
    assert report.delivery == WeeklyReport.Delivery.DELIVERED and len(seen) == 1
    entry = AuditEntry.objects.get(action="weekly_report.post")
    assert entry.details == {"week": "2026-W11", "outcome": "Posted"}


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_it_refuses_what_a_role_may_not_do(weeks, cast, client_as, who) -> None:
    weekly.weekly_report_compute(week_start=MONDAY, now=NOW)
    client = client_as(cast[who])
    if who != "rita":  # rita reads the dashboard
        assert client.get("/dashboard/weekly/").status_code == 403
        assert client.get("/dashboard/weekly/2026-03-09/").status_code == 403
    assert client.post("/dashboard/weekly/2026-03-09/recompute/").status_code == 403
    assert client.post("/dashboard/weekly/2026-03-09/post/").status_code == 403
    assert client.post("/dashboard/weekly/run/").status_code == 403
    assert not AuditEntry.objects.filter(action__startswith="weekly_report.").exists()


@pytest.mark.django_db
def test_an_admin_can_ask_for_the_missing_reports_now(weeks, cast, client_as, queued_tasks) -> None:
    queued_tasks()  # whatever an earlier test left on the broker
    client = client_as(cast["adam"])
    page = client.get("/dashboard/weekly/").content.decode()
    assert "No weekly report yet" in page and "Compute missing reports now" in page
    assert (
        "Compute missing reports now"
        not in client_as(cast["rita"]).get("/dashboard/weekly/").content.decode()
    ), "a reader of the dashboard sees no button"

    response = client.post("/dashboard/weekly/run/", follow=True)
    assert "Computing the missing weekly reports in the background" in response.content.decode()
    entry = AuditEntry.objects.get(action="weekly_report.run")
    assert entry.actor_id == cast["adam"].pk and entry.details == {"queued": True}
    # Sent to the real broker (and taken off it here, so no later test's worker runs it).
    assert queued_tasks() == ["observability.weekly_reports_run"]


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_sign_in(weeks) -> None:
    response = Client().get("/dashboard/weekly/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
