"""Alerts: thresholds evaluated over a window of production turns, each firing recorded once per
crossing, shown as a banner and POSTed to a webhook (a fake HTTP peer); the admin page."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import User
from django.utils import timezone

from chatbot.chat import services
from chatbot.models import AlertFiring, AlertRule, ReviewItem, Turn
from observability import alerts
from observability import services as observability
from tests.fake_peers import fake_peer


def _turns(user: User, statuses: list[str], **fields) -> list[Turn]:
    conversation = services.conversation_create(owner=user)
    made = []
    for status in statuses:
        turn = services.turn_create(conversation=conversation, user_text="q")
        Turn.objects.filter(pk=turn.pk).update(status=status, **fields)
        made.append(turn)
    return made


def _rule(**fields) -> AlertRule:
    defaults = {"name": "errors", "metric": "error_rate", "threshold": 0.2, "min_turns": 5}
    return AlertRule.objects.create(**{**defaults, **fields})


def _ok(path, body):
    return 200, [b"{}"], "application/json"


@pytest.mark.django_db
def test_it_fires_once_per_crossing_and_posts_to_the_webhook(alice) -> None:
    turns = _turns(alice, ["done"] * 6 + ["failed"] * 4)
    with fake_peer(_ok) as (url, seen):
        rule = _rule(webhook_url=f"{url}/hooks/alerts")

        fired = observability.alerts_evaluate()
        assert len(fired) == 1
        firing = fired[0]
        assert firing.value == pytest.approx(0.4) and firing.turns == 10
        observability.alert_deliver(firing_id=firing.pk)
        observability.alert_deliver(firing_id=firing.pk)  # safe to run twice

        assert len(seen) == 1 and seen[0]["path"] == "/hooks/alerts"
        payload = seen[0]["body"]
        assert payload["alert"] == "errors" and payload["metric"] == "error_rate"
        assert payload["value"] == pytest.approx(0.4) and payload["threshold"] == 0.2
        assert "above" in payload["text"]
        firing.refresh_from_db()
        assert firing.delivered and firing.attempts == 1 and firing.delivered_at

        assert observability.alerts_evaluate() == [], "still firing: not recorded again"
        rule.refresh_from_db()
        assert rule.state == AlertRule.State.FIRING and rule.last_value == pytest.approx(0.4)

        Turn.objects.filter(pk__in=[t.pk for t in turns[6:9]]).update(status="done")
        assert observability.alerts_evaluate() == []
        rule.refresh_from_db()
        firing.refresh_from_db()
        assert rule.state == AlertRule.State.OK and firing.resolved_at is not None

        Turn.objects.filter(pk__in=[t.pk for t in turns[:3]]).update(status="failed")
        assert len(observability.alerts_evaluate()) == 1
    assert AlertFiring.objects.filter(rule=rule).count() == 2


@pytest.mark.django_db
def test_it_reads_each_metric_over_its_window(alice) -> None:
    now = timezone.now()
    turns = _turns(alice, ["done"] * 20, total_ms=100.0, ttft_ms=10.0, cost=Decimal("0.5"))
    slow = [turns[0].pk, turns[1].pk]
    Turn.objects.filter(pk__in=slow).update(total_ms=9000.0, ttft_ms=900.0)
    ReviewItem.objects.create(turn=turns[1])
    ReviewItem.objects.create(turn=turns[2])
    old = _turns(alice, ["failed"] * 5, cost=Decimal("100"))
    Turn.objects.filter(pk__in=[t.pk for t in old]).update(created_at=now - timedelta(hours=3))
    replay = _turns(alice, ["failed"] * 5)
    Turn.objects.filter(pk__in=[t.pk for t in replay]).update(is_replay=True)

    def read(metric: str, window: int = 60) -> alerts.Reading:
        rule = AlertRule(name=metric, metric=metric, threshold=1, window_minutes=window)
        return alerts.metric_read(rule, now=now + timedelta(seconds=1))

    assert read("error_rate") == alerts.Reading(value=0.0, turns=20)
    assert read("latency_p95").value == 9000.0, "p95 of 20 is the 19th: a slow one"
    assert read("ttft_p95").value == 900.0
    assert read("flagged_share").value == pytest.approx(0.1)
    assert read("cost_per_day", window=120).value == pytest.approx(10 * 12), "20 x $0.5 in 2 h"
    assert read("error_rate", window=240).value == pytest.approx(5 / 25)


@pytest.mark.django_db
def test_it_waits_for_enough_turns_before_judging_a_rate(alice) -> None:
    _turns(alice, ["failed"] * 3)
    rule = _rule(min_turns=5)

    assert observability.alerts_evaluate() == []
    rule.refresh_from_db()
    assert rule.state == AlertRule.State.OK and rule.last_value == 1.0


@pytest.mark.django_db
def test_it_records_a_webhook_that_fails(alice) -> None:
    _turns(alice, ["failed"] * 5)
    with fake_peer(lambda path, body: (500, [b"down"], "text/plain")) as (url, _):
        _rule(webhook_url=url)
        [firing] = observability.alerts_evaluate()
        with pytest.raises(observability.AlertDeliveryFailed):
            observability.alert_deliver(firing_id=firing.pk)
    firing.refresh_from_db()
    assert not firing.delivered and firing.attempts == 1
    assert firing.error == "The webhook answered HTTP 500."


@pytest.mark.django_db
def test_it_shows_a_banner_on_the_dashboard_while_a_rule_fires(alice, rita, client_as) -> None:
    _turns(alice, ["failed"] * 5)
    _rule(name="Too many errors")
    observability.alerts_evaluate()

    page = client_as(rita).get("/dashboard/").content.decode()

    assert "1 alert firing" in page and "Too many errors" in page
    assert "Too many errors" in client_as(rita).get("/dashboard/alerts/").content.decode()


@pytest.mark.django_db
def test_it_lets_admins_add_edit_disable_and_delete_rules(adam, client_as) -> None:
    client = client_as(adam)
    form = {
        "name": "p95 latency",
        "metric": "latency_p95",
        "threshold": "5000",
        "window_minutes": "60",
        "min_turns": "20",
        "webhook_url": "https://hooks.example.com/alerts",
    }

    assert client.post("/dashboard/alerts/", form).status_code == 302
    rule = AlertRule.objects.get(name="p95 latency")
    assert rule.threshold == 5000 and rule.webhook_url == "https://hooks.example.com/alerts"
    response = client.post(f"/dashboard/alerts/{rule.pk}/", {**form, "threshold": "8000"})
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.threshold == 8000
    assert client.post(f"/dashboard/alerts/{rule.pk}/disable/").status_code == 302
    rule.refresh_from_db()
    assert not rule.enabled
    assert client.post(f"/dashboard/alerts/{rule.pk}/delete/").status_code == 302
    assert not AlertRule.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metric": "error_rate", "threshold": "5"}, "Rates run from 0 to 1"),
        ({"window_minutes": "1"}, "from 5 minutes to 7 days"),
        ({"threshold": "-1"}, "cannot be negative"),
        ({"webhook_url": "not a url"}, "Enter a valid URL"),
        ({"metric": "mood"}, "Select a valid choice"),
    ],
)
def test_it_answers_a_bad_rule_with_a_clear_400(adam, client_as, changes, message) -> None:
    form = {
        "name": "x",
        "metric": "latency_p95",
        "threshold": "1",
        "window_minutes": "60",
        "min_turns": "20",
        **changes,
    }

    response = client_as(adam).post("/dashboard/alerts/", form)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not AlertRule.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["rita", "alice", "nora"])
def test_it_lets_only_admins_change_rules(cast, client_as, who) -> None:
    rule = _rule()
    client = client_as(cast[who])

    assert client.post("/dashboard/alerts/", {"name": "x"}).status_code == 403
    assert client.get(f"/dashboard/alerts/{rule.pk}/").status_code == 403
    assert client.post(f"/dashboard/alerts/{rule.pk}/delete/").status_code == 403
    assert AlertRule.objects.filter(pk=rule.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_it_delivers_the_webhook_from_a_real_worker(alice, worker: TestWorkController) -> None:
    from observability.tasks import alerts_evaluate_task

    _turns(alice, ["failed"] * 5)
    with fake_peer(_ok) as (url, seen):
        _rule(webhook_url=url)

        [firing_id] = alerts_evaluate_task.delay().get(timeout=60)

        deadline = time.monotonic() + 60
        while not AlertFiring.objects.get(pk=firing_id).delivered and time.monotonic() < deadline:
            time.sleep(0.2)
    assert AlertFiring.objects.get(pk=firing_id).delivered
    assert len(seen) == 1
