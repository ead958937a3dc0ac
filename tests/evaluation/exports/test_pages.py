"""The export and reward-model pages: reviewers may use them, agents and nora may not; downloads
stream only files inside the exports folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.models import Export, RewardModel
from evaluation.exports import reward
from tests.evaluation.exports.support import review, run_export
from tests.evaluation.exports.test_reward import _labelled
from tests.evaluation.judging import finished_turn

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]


def _pages(export: Export) -> list[tuple[str, str]]:
    return [
        ("get", reverse("review:exports")),
        ("get", reverse("review:export_new")),
        ("post", reverse("review:export_new")),
        ("get", reverse("review:export", args=[export.pk])),
        ("get", reverse("review:export_download", args=[export.pk])),
        ("get", reverse("review:reward")),
        ("post", reverse("review:reward_train")),
        ("post", reverse("review:reward_activate", args=[1])),
    ]


@pytest.mark.parametrize("who", ["alice", "nora"])
def test_it_refuses_agents_and_nora_on_the_export_and_reward_pages(
    client_as: ClientAs, cast: dict[str, User], who: str
) -> None:
    export = Export.objects.create(kind=Export.Kind.SFT)
    client = client_as(cast[who])

    for method, url in _pages(export):
        response = getattr(client, method)(url)
        assert response.status_code == 403, f"{who} reached {method.upper()} {url}"
    assert Export.objects.count() == 1


def test_it_lists_exports_and_starts_a_new_one(
    client_as: ClientAs, rita: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_as(rita)
    empty = client.get(reverse("review:exports"))
    assert "No exports yet" in empty.content.decode()

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(
            reverse("review:export_new"),
            {"kind": "dpo", "date_from": "2025-01-01", "date_to": ""},
        )

    export = Export.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("review:export", args=[export.pk])
    assert len(queued) == 1
    assert export.kind == "dpo" and export.created_by == rita
    assert export.params == {"date_from": "2025-01-01", "date_to": None}
    listing = client.get(reverse("review:exports")).content.decode()
    assert f"#{export.pk}" in listing and "Queued" in listing
    # While an export is queued or running, the table polls for progress.
    assert 'hx-trigger="every 1s"' in listing


def test_it_answers_bad_export_input_with_a_400_and_a_message(
    client_as: ClientAs, rita: User
) -> None:
    client = client_as(rita)

    backwards = client.post(
        reverse("review:export_new"),
        {"kind": "sft", "date_from": "2025-03-01", "date_to": "2025-01-01"},
    )
    unknown = client.post(reverse("review:export_new"), {"kind": "csv"})

    assert backwards.status_code == unknown.status_code == 400
    assert "The start date is after the end date." in backwards.content.decode()
    assert "Select a valid choice" in unknown.content.decode()
    assert not Export.objects.exists()


def test_it_shows_progress_as_a_partial_until_done_then_downloads(
    client_as: ClientAs, alice: User, rita: User
) -> None:
    review(finished_turn(alice), rita, approved=True)
    client = client_as(rita)
    running = Export.objects.create(
        kind=Export.Kind.SFT, status=Export.Status.RUNNING, rows_total=10, rows_done=4
    )

    partial = client.get(
        reverse("review:export", args=[running.pk]), headers={"HX-Request": "true"}
    )

    body = partial.content.decode()
    assert "<html" not in body and 'id="export-progress"' in body
    assert 'hx-trigger="every 1s"' in body and 'value="4" max="10"' in body
    assert client.get(reverse("review:export_download", args=[running.pk])).status_code == 404

    export, rows = run_export(Export.Kind.SFT)
    page = client.get(reverse("review:export", args=[export.pk])).content.decode()
    assert "every 1s" not in page and "Rows written" in page
    download = client.get(reverse("review:export_download", args=[export.pk]))

    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment;")
    assert f"sft-{export.pk:06d}.jsonl" in download["Content-Disposition"]
    assert download.getvalue().decode().count("\n") == len(rows) == 1


def test_it_shows_a_failed_export_with_its_reason(client_as: ClientAs, rita: User) -> None:
    failed = Export.objects.create(
        kind=Export.Kind.SFT, status=Export.Status.FAILED, error="The export failed (disk full)."
    )

    page = client_as(rita).get(reverse("review:export", args=[failed.pk])).content.decode()

    assert "The export failed (disk full)." in page and "every 1s" not in page


@pytest.mark.parametrize("path", ["../secret.txt", "/etc/passwd", "sub/../../secret.txt"])
def test_it_never_serves_a_file_outside_the_exports_folder(
    client_as: ClientAs, rita: User, exports_dir: Path, path: str
) -> None:
    exports_dir.mkdir(parents=True)
    (exports_dir.parent / "secret.txt").write_text("top secret")
    export = Export.objects.create(kind=Export.Kind.SFT, status=Export.Status.DONE, path=path)

    response = client_as(rita).get(reverse("review:export_download", args=[export.pk]))

    assert response.status_code == 404


def test_it_explains_when_there_is_too_little_to_train_on(
    client_as: ClientAs, alice: User, adam: User
) -> None:
    client = client_as(adam)
    assert "No reward model yet" in client.get(reverse("review:reward")).content.decode()

    response = client.post(reverse("review:reward_train"))

    assert response.status_code == 400
    assert "Only 0 labelled answers so far (0 good, 0 bad)" in response.content.decode()
    assert reward.reward_training_state() is None


def test_it_trains_in_the_background_and_shows_the_new_version(
    client_as: ClientAs, alice: User, rita: User, adam: User,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    _labelled(alice, rita)
    client = client_as(adam)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(reverse("review:reward_train"))

    assert response.status_code == 302 and len(queued) == 1
    state = reward.reward_training_state()
    assert state is not None and state["status"] == "queued"
    polling = client.get(reverse("review:reward"), headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 1s"' in polling and "Queued" in polling
    # A second press while one is queued does not start another.
    assert client.post(reverse("review:reward_train")).status_code == 400

    # The task's body, as the worker runs it; a second delivery of the same task does nothing.
    assert reward.reward_train_run(token=state["token"], user=rita)["status"] == "done"
    assert reward.reward_train_run(token=state["token"], user=rita)["status"] == "done"

    assert RewardModel.objects.count() == 1
    page = client.get(reverse("review:reward")).content.decode()
    assert "every 1s" not in page and "Trained version 1" in page and "Active" in page


def test_it_makes_an_older_version_active_again(
    client_as: ClientAs, alice: User, rita: User, adam: User
) -> None:
    _labelled(alice, rita)
    first = reward.reward_train(user=rita)
    reward.reward_train(user=rita)

    response = client_as(adam).post(reverse("review:reward_activate", args=[first.pk]))

    assert response.status_code == 302
    assert list(RewardModel.objects.filter(active=True)) == [first]


def test_it_says_how_many_rows_were_left_out_and_keeps_others_exports_from_reviewers(
    client_as: ClientAs, rita: User, adam: User
) -> None:
    from tests.evaluation.judging import admins_only_turn

    review(admins_only_turn(adam), adam, approved=True)
    by_rita, _ = run_export(Export.Kind.SFT, user=rita)
    by_adam, _ = run_export(Export.Kind.SFT, user=adam)
    client = client_as(rita)

    page = client.get(reverse("review:export", args=[by_rita.pk])).content.decode()
    assert "Left out: passages not shared with the exporter" in page
    assert "<dd>1</dd>" in page.split("Left out")[1][:200]
    refused = client.get(reverse("review:export_download", args=[by_adam.pk]))
    assert refused.status_code == 403
    assert "not shared with you" in refused.content.decode()
    assert (
        client_as(adam).get(reverse("review:export_download", args=[by_adam.pk])).status_code == 200
    )


def test_it_lets_reviewers_see_the_reward_model_but_only_admins_train_or_activate_it(
    client_as: ClientAs, alice: User, rita: User, nora: User
) -> None:
    _labelled(alice, rita)
    first = reward.reward_train(user=rita)
    second = reward.reward_train(user=rita)
    client = client_as(rita)

    page = client.get(reverse("review:reward"))
    train = client.post(reverse("review:reward_train"))
    activate = client.post(reverse("review:reward_activate", args=[first.pk]))

    assert page.status_code == 200
    body = page.content.decode()
    assert "v1" in body and "v2" in body
    assert "Train a new version" not in body and "Make active" not in body
    assert "Only admins train and activate" in body
    assert train.status_code == activate.status_code == 403
    assert reward.reward_training_state() is None
    assert list(RewardModel.objects.filter(active=True)) == [second]
    assert client_as(nora).get(reverse("review:reward")).status_code == 403
