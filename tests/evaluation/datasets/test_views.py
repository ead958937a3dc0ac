"""The dataset and experiment pages: reviewers and admins in, agents and nora refused everywhere."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template import RequestContext, Template
from django.test import Client
from django.urls import reverse

from chatbot.models import Dataset, DatasetItem, Experiment, ExperimentResult, ModelEndpoint
from evaluation.datasets import selectors, services
from evaluation.offline.data import ItemData
from tests.evaluation.datasets.helpers import EVALSET_ROWS, jsonl_bytes, make_dataset, reviewed_turn

pytestmark = pytest.mark.django_db


def upload(rows: list[dict[str, Any]] | bytes, name: str = "set.jsonl") -> SimpleUploadedFile:
    content = rows if isinstance(rows, bytes) else jsonl_bytes(rows)
    return SimpleUploadedFile(name, content, content_type="application/jsonl")


def finished(dataset: Dataset, endpoint: ModelEndpoint, user: User, **scores: float) -> Experiment:
    experiment = services.experiment_create(
        dataset=dataset, endpoint=endpoint, retrieval={"grounding": "off"}, user=user, queue=False
    )
    for item in selectors.dataset_items(dataset):
        ExperimentResult.objects.create(
            experiment=experiment, item=item, answer="<script>alert(1)</script> Tray 2.",
            scores={"pii": scores.get("pii", 1.0), "token_f1": scores.get("f1", 0.5)},
        )  # fmt: skip
    Experiment.objects.filter(pk=experiment.pk).update(
        status=Experiment.Status.DONE,
        items_done=dataset.items.count(),
        summary={"judges": {"pii": 1.0}, "metrics": {"token_f1": 0.5}, "n": 1},
    )
    experiment.refresh_from_db()
    return experiment


@pytest.fixture
def world(alice: User, rita: User, fake_endpoint: Callable[..., ModelEndpoint]) -> dict[str, Any]:
    endpoint = fake_endpoint(["Tray 2."])
    dataset = make_dataset(questions=["Which tray?"])
    return {
        "endpoint": endpoint,
        "dataset": dataset,
        "item": dataset.items.get(),
        "experiment": finished(dataset, endpoint, rita),
        "review": reviewed_turn(alice, rita),
    }


def pages(world: dict[str, Any]) -> list[str]:
    return [
        reverse("review:datasets"),
        reverse("review:dataset", args=[world["dataset"].pk]),
        reverse("review:dataset_import"),
        reverse("review:dataset_item_remove", args=[world["item"].pk]),
        reverse("review:dataset_add_review", args=[world["review"].pk]),
        reverse("review:experiments"),
        reverse("review:experiment_new"),
        reverse("review:experiment", args=[world["experiment"].pk]),
        reverse("review:experiment_compare"),
    ]


@pytest.mark.parametrize("who", ["alice", "nora"])
def test_it_refuses_agents_and_people_without_a_role_on_every_page(
    cast: dict[str, User], client_as: Callable[[User], Client], world: dict[str, Any], who: str
) -> None:
    client = client_as(cast[who])
    for url in pages(world):
        for method in ("get", "post"):
            response = getattr(client, method)(url, {"dataset": world["dataset"].pk})
            assert response.status_code in {403, 405}, f"{who} {method.upper()} {url}"
    assert DatasetItem.objects.filter(removed_in__isnull=False).count() == 0
    assert Dataset.objects.count() == 1


def test_it_sends_anonymous_visitors_to_the_login_page(world: dict[str, Any]) -> None:
    for url in pages(world):
        response = Client().get(url)
        assert response.status_code in {302, 405}
        if response.status_code == 302:
            assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("who", ["rita", "adam"])
def test_it_shows_every_page_to_reviewers_and_admins(
    cast: dict[str, User], client_as: Callable[[User], Client], world: dict[str, Any], who: str
) -> None:
    client = client_as(cast[who])
    for url in pages(world):
        if "remove" in url or "from-review" in url:
            continue  # POST-only actions, tested below
        assert client.get(url).status_code == 200, url


def test_it_lists_datasets_with_version_and_item_count(
    rita: User, client_as: Callable[[User], Client]
) -> None:
    client = client_as(rita)
    assert "No datasets yet" in client.get(reverse("review:datasets")).content.decode()
    dataset = make_dataset(questions=["One?", "Two?"])
    services.dataset_item_add(dataset=dataset, data=ItemData(question="Three?"))

    page = client.get(reverse("review:datasets")).content.decode()

    assert "Regression" in page and "v2" in page
    assert '<td class="num">3</td>' in page


def test_it_pages_a_datasets_items_and_shows_older_versions(
    rita: User, client_as: Callable[[User], Client]
) -> None:
    dataset = make_dataset(questions=[f"Question {n:03}?" for n in range(60)])
    services.dataset_item_add(dataset=dataset, data=ItemData(question="Newest question?"))
    client = client_as(rita)
    url = reverse("review:dataset", args=[dataset.pk])

    first = client.get(url).content.decode()
    second = client.get(url, {"page": 2, "version": 2}).content.decode()
    old = client.get(url, {"version": 1, "page": 2}).content.decode()

    assert "Question 000?" in first and "Question 050?" not in first
    assert "Page 1 of 2 · 61 items" in first and "version=2&amp;page=2" in first
    assert "Newest question?" in second
    assert "Newest question?" not in old and "60 items" in old
    assert client.get(url, {"version": 9}).status_code == 400
    assert client.get(reverse("review:dataset", args=[dataset.pk + 99])).status_code == 404


def test_it_imports_an_uploaded_file_and_explains_a_bad_one(
    rita: User, client_as: Callable[[User], Client]
) -> None:
    client = client_as(rita)
    url = reverse("review:dataset_import")

    response = client.post(url, {"file": upload(EVALSET_ROWS), "name": "covid"})
    dataset = Dataset.objects.get(name="covid")
    assert response.status_code == 302 and response["Location"] == reverse(
        "review:dataset", args=[dataset.pk]
    )
    assert selectors.dataset_items(dataset).count() == 3 and dataset.created_by == rita

    bad = client.post(
        url, {"file": upload(b'{"question": "ok?"}\n{broken\n'), "dataset": dataset.pk}
    )
    assert bad.status_code == 400 and "Line 2: not valid JSON" in bad.content.decode()
    wrong_type = client.post(url, {"file": upload(b"hello", name="notes.txt"), "name": "x"})
    assert wrong_type.status_code == 400 and "use a .jsonl file" in wrong_type.content.decode()
    empty = client.post(url, {"file": upload(b"", name="empty.jsonl"), "name": "x"})
    assert empty.status_code == 400

    into = client.post(url, {"file": upload(EVALSET_ROWS[:1]), "dataset": dataset.pk})
    dataset.refresh_from_db()
    assert into.status_code == 302 and dataset.version == 2
    assert selectors.dataset_items(dataset).count() == 4
    assert Dataset.objects.count() == 1


def test_it_names_an_imported_dataset_after_its_file(
    rita: User, client_as: Callable[[User], Client]
) -> None:
    client_as(rita).post(
        reverse("review:dataset_import"), {"file": upload(EVALSET_ROWS, name="faq-set.jsonl")}
    )
    assert Dataset.objects.filter(name="faq-set").exists()


def test_it_creates_a_dataset_and_refuses_a_duplicate_name(
    rita: User, client_as: Callable[[User], Client]
) -> None:
    client = client_as(rita)
    created = client.post(reverse("review:datasets"), {"name": "Smoke", "description": "x"})
    assert created.status_code == 302
    duplicate = client.post(reverse("review:datasets"), {"name": "Smoke"})
    assert duplicate.status_code == 400 and "exists already" in duplicate.content.decode()


def test_it_removes_an_item_from_the_next_version(
    rita: User, client_as: Callable[[User], Client], world: dict[str, Any]
) -> None:
    url = reverse("review:dataset_item_remove", args=[world["item"].pk])
    client = client_as(rita)

    assert client.get(url).status_code == 405
    response = client.post(url)
    again = client.post(url, follow=True)

    assert response.status_code == 302
    world["item"].refresh_from_db()
    assert world["item"].removed_in == 2
    assert "already removed in version 2" in again.content.decode()


def test_it_adds_a_reviewed_turn_to_a_dataset_in_one_click(
    rita: User, client_as: Callable[[User], Client], world: dict[str, Any]
) -> None:
    review, dataset = world["review"], world["dataset"]
    url = reverse("review:dataset_add_review", args=[review.pk])
    client = client_as(rita)
    back = f"/review/items/{review.item_id}/"

    response = client.post(url, {"dataset": dataset.pk, "next": back})

    assert response.status_code == 302 and response["Location"] == back
    item = DatasetItem.objects.get(source_review=review)
    assert item.dataset == dataset and item.source_turn == review.turn

    fresh = client.post(
        url, {"new_dataset": "Password regressions", "next": "https://evil.example/"}
    )
    made = Dataset.objects.get(name="Password regressions")
    assert fresh["Location"] == reverse("review:dataset", args=[made.pk])
    assert made.items.get().source_review == review

    assert client.post(url, {}).status_code == 400
    assert "Choose a dataset or name a new one" in client.post(url, {}).content.decode()
    assert client.get(url).status_code == 405
    missing = reverse("review:dataset_add_review", args=[review.pk + 99])
    assert client.post(missing, {"dataset": dataset.pk}).status_code == 404


def test_it_explains_why_a_review_cannot_become_an_item(
    alice: User, rita: User, client_as: Callable[[User], Client], world: dict[str, Any]
) -> None:
    review = reviewed_turn(alice, rita, corrected="", approved=False)
    response = client_as(rita).post(
        reverse("review:dataset_add_review", args=[review.pk]), {"dataset": world["dataset"].pk}
    )
    assert response.status_code == 400
    assert "no corrected answer" in response.content.decode()


def test_it_starts_an_experiment_from_the_form(
    rita: User,
    client_as: Callable[[User], Client],
    world: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = client_as(rita)
    url = reverse("review:experiment_new")
    form = client.get(url, {"dataset": world["dataset"].pk}).content.decode()
    assert 'for="id_prompt_template"' in form and "fake-model" in form
    data = {
        "dataset": world["dataset"].pk,
        "endpoint": world["endpoint"].pk,
        "grounding": "preferred",
        "k": 4,
        "min_similarity": 0.35,
        "min_coverage": 0.4,
        "min_answerable": 0.6,
        "prompt_template": "You are terse.",
        "name": "terse prompt",
    }

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(url, data)

    experiment = Experiment.objects.get(name="terse prompt")
    assert response.status_code == 302
    assert response["Location"] == reverse("review:experiment", args=[experiment.pk])
    assert len(queued) == 1
    assert experiment.retrieval == {
        "grounding": "preferred", "k": 4, "min_similarity": 0.35, "min_coverage": 0.4,
        "min_answerable": 0.6, "collections": None,
    }  # fmt: skip
    assert experiment.prompt_template == "You are terse." and experiment.created_by == rita
    bad = client.post(url, {**data, "k": 99})
    assert bad.status_code == 400 and "less than or equal to 20" in bad.content.decode()


def test_it_shows_progress_while_running_and_results_when_done(
    rita: User,
    client_as: Callable[[User], Client],
    world: dict[str, Any],
    django_assert_num_queries: Any,
) -> None:
    client = client_as(rita)
    running = services.experiment_create(
        dataset=world["dataset"], endpoint=world["endpoint"], retrieval={"grounding": "off"},
        user=rita, queue=False,
    )  # fmt: skip
    url = reverse("review:experiment", args=[running.pk])

    page = client.get(url).content.decode()
    assert 'hx-trigger="every 1s"' in page and "0 of 1 items" in page
    with django_assert_num_queries(4):  # session, user, the permission read, experiment
        poll = client.get(url, HTTP_HX_REQUEST="true")
    assert "<html" not in poll.content.decode() and "HX-Refresh" not in poll

    Experiment.objects.filter(pk=running.pk).update(status=Experiment.Status.FAILED, error="boom")
    failed = client.get(url, HTTP_HX_REQUEST="true")
    assert failed["HX-Refresh"] == "true" and "boom" in failed.content.decode()

    done = client.get(reverse("review:experiment", args=[world["experiment"].pk])).content.decode()
    assert 'hx-trigger="every 1s"' not in done
    assert "token F1" in done and "pii" in done
    assert "<script>alert(1)</script>" not in done and "&lt;script&gt;" in done


def test_it_compares_two_experiments(
    rita: User, client_as: Callable[[User], Client], world: dict[str, Any]
) -> None:
    client = client_as(rita)
    a = world["experiment"]
    b = finished(world["dataset"], world["endpoint"], rita, f1=0.9)
    url = reverse("review:experiment_compare")

    assert client.get(url).status_code == 200
    page = client.get(url, {"a": a.pk, "b": b.pk, "tolerance": "0.1"}).content.decode()

    assert "Items that changed" in page and "token F1 0.50 → 0.90" in page
    assert "B wins" in page
    same = client.get(url, {"a": a.pk, "b": a.pk})
    assert same.status_code == 400 and "two different experiments" in same.content.decode()
    assert client.get(url, {"a": a.pk, "b": 999999}).status_code == 400


def test_it_offers_the_one_click_form_on_any_page_showing_a_review(
    alice: User, rita: User, rf: Any, world: dict[str, Any]
) -> None:
    review = world["review"]
    request = rf.get("/review/items/7/")
    request.user = rita
    render = Template("{% load dataset_forms %}{% add_to_dataset_form review %}").render

    form = render(RequestContext(request, {"review": review}))

    assert reverse("review:dataset_add_review", args=[review.pk]) in form
    assert 'name="next" value="/review/items/7/"' in form and "Regression" in form
    assert 'for="add-' in form and "Already in" not in form
    services.dataset_item_from_review(review=review, dataset=world["dataset"])
    assert "Already in Regression." in render(RequestContext(request, {"review": review}))
    bare = reviewed_turn(alice, rita, corrected="", approved=False)
    assert "Write a corrected answer" in render(RequestContext(request, {"review": bare}))


def test_it_preselects_the_dataset_changed_last(
    rita: User, client_as: Callable[[User], Client], world: dict[str, Any]
) -> None:
    older = world["dataset"]
    newer = services.dataset_create(name="newer questions")
    Dataset.objects.filter(pk=older.pk).update(updated_at=newer.updated_at - timedelta(days=1))
    page = client_as(rita).get(reverse("review:experiment_new")).content.decode()
    assert f'<option value="{newer.pk}" selected>' in page
