"""Synthetic questions: generated from knowledge-base chunks by a chosen model (langchain-core's
fake chat model at the network edge), reviewed in the queue, and only then added to a dataset
with their provenance."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from chatbot.accounts import roles
from chatbot.llm.types import EndpointConfig
from chatbot.models import (
    AuditEntry,
    Chunk,
    Collection,
    Dataset,
    DatasetItem,
    Document,
    ModelEndpoint,
    Source,
    SyntheticCandidate,
    SyntheticRun,
)
from chatbot.models.knowledge import EMBEDDING_DIMENSIONS
from evaluation.datasets.services import dataset_create
from evaluation.synthetic import generate, services

ClientAs = Callable[[User], Client]

VPN_CHUNK = (
    "To connect to the VPN, open the GlobalConnect client, choose the Europe gateway and sign "
    "in with your work account. The client reconnects by itself after sleep."
)
PASSWORD_CHUNK = (
    "To reset a forgotten password, open the sign-in page and click Forgot password. "
    "The reset link expires after 30 minutes."
)


def variants_json(*pairs: tuple[str, str]) -> str:
    return json.dumps({"questions": [{"question": q, "answer": a} for q, a in pairs]})


def negatives_json(*pairs: tuple[str, str]) -> str:
    return json.dumps({"questions": [{"question": q, "missing": m} for q, m in pairs]})


VARIANTS = variants_json(
    ("How do I get on the VPN from home?", "Open GlobalConnect, pick Europe and sign in."),
    ("Which VPN gateway should I use?", "The Europe gateway."),
)
NEGATIVES = negatives_json(
    ("Can I use the VPN on my personal phone?", "nothing about personal devices"),
)


def shared_chunks(*texts: str, shared_with: tuple[str, ...] = (roles.REVIEWER,)) -> list[Chunk]:
    """Chunks of a new collection shared with the roles named (admins read every collection)."""
    collection = Collection.objects.create(name=f"Help {uuid.uuid4().hex[:8]}")
    collection.groups.set([Group.objects.get_or_create(name=role)[0] for role in shared_with])
    source = Source.objects.create(collection=collection, name="docs", kind="path", location="/x")
    made = []
    for ordinal, text in enumerate(texts):
        document = Document.objects.create(
            source=source,
            collection=collection,
            external_id=f"doc-{ordinal}.md",
            title=f"Guide {ordinal}",
            chunk_count=1,
        )
        made.append(
            Chunk.objects.create(
                document=document,
                collection=collection,
                ordinal=0,
                text=text,
                embedding=[1.0] + [0.0] * (EMBEDDING_DIMENSIONS - 1),
            )
        )
    return made


@pytest.fixture
def generator(fake_endpoint: Callable[..., ModelEndpoint]) -> Callable[..., ModelEndpoint]:
    """A catalogue entry whose structured replies are `choices` (the first call gets the first;
    a retry, which shows the model its earlier output, gets the next)."""

    def make(*choices: str, name: str = "writer", **fields: Any) -> ModelEndpoint:
        endpoint = fake_endpoint(["(plain text)"], name=name, default=False, **fields)
        endpoint.options = {**endpoint.options, "choices": list(choices)}
        endpoint.save(update_fields=["options"])
        return endpoint

    return make


def start(
    user: User,
    endpoint: ModelEndpoint,
    chunks: list[Chunk],
    *,
    kinds: tuple[str, ...] = ("variant",),
    dataset: Dataset | None = None,
    variants: int = 2,
    negatives: int = 1,
) -> SyntheticRun:
    return services.synthetic_run_create(
        dataset=dataset or dataset_create(name=f"Synthetic {uuid.uuid4().hex[:6]}", user=user),
        collection=chunks[0].collection,
        endpoint=endpoint,
        kinds=list(kinds),
        variants_per_chunk=variants,
        negatives_per_chunk=negatives,
        sample_size=len(chunks),
        user=user,
    )


def processed(run: SyntheticRun) -> SyntheticRun:
    """The job's body, as the Celery task runs it (the worker test runs the task itself)."""
    return services.synthetic_run_process(run_id=run.pk)


# --- generation ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_makes_pending_candidates_with_their_chunk_and_generator(rita: User, generator) -> None:
    chunks = shared_chunks(VPN_CHUNK, PASSWORD_CHUNK)
    endpoint = generator(VARIANTS)
    run = processed(start(rita, endpoint, chunks))

    assert run.status == SyntheticRun.Status.DONE, run.error
    assert (run.chunks_done, run.chunks_total, run.candidates_made) == (2, 2, 4)
    assert run.tokens_in > 0 and run.tokens_out > 0
    candidates = list(SyntheticCandidate.objects.filter(run=run).order_by("pk"))
    assert {c.status for c in candidates} == {SyntheticCandidate.Status.PENDING}
    assert {c.chunk_id for c in candidates} == {chunks[0].pk, chunks[1].pk}
    first = candidates[0]
    assert first.kind == SyntheticCandidate.Kind.VARIANT
    assert first.question == "How do I get on the VPN from home?"
    assert first.expected_answer == "Open GlobalConnect, pick Europe and sign in."
    assert first.document_id == chunks[0].document_id
    assert first.endpoint_name == "writer"
    assert first.prompt_hash == generate.prompt_hash("variant")
    assert first.generator == generate.generator_key(EndpointConfig.from_model(endpoint), "variant")
    # Nothing enters the dataset before a reviewer accepts it.
    assert not DatasetItem.objects.filter(dataset=run.dataset).exists()


@pytest.mark.django_db
def test_it_makes_hard_negatives_the_assistant_should_refuse(rita: User, generator) -> None:
    chunks = shared_chunks(VPN_CHUNK)
    run = processed(start(rita, generator(NEGATIVES), chunks, kinds=("negative",)))

    (candidate,) = SyntheticCandidate.objects.filter(run=run)
    assert candidate.kind == SyntheticCandidate.Kind.NEGATIVE
    assert candidate.question == "Can I use the VPN on my personal phone?"
    assert candidate.expected_answer == ""
    assert candidate.note == "nothing about personal devices"


@pytest.mark.django_db
def test_it_asks_once_more_when_the_output_does_not_fit(rita: User, generator) -> None:
    chunks = shared_chunks(VPN_CHUNK)
    run = processed(start(rita, generator("Sure! Here are some questions:", VARIANTS), chunks))

    assert run.invalid_outputs == 0
    assert run.candidates_made == 2
    assert SyntheticCandidate.objects.filter(run=run).count() == 2


@pytest.mark.django_db
def test_it_gives_up_on_output_that_does_not_fit_twice(rita: User, generator) -> None:
    chunks = shared_chunks(VPN_CHUNK, PASSWORD_CHUNK)
    # Questions without answers, then not JSON at all: never a candidate.
    bad = json.dumps({"questions": [{"question": "How do I get on the VPN?"}]})
    run = processed(start(rita, generator(bad, "no idea"), chunks))

    assert run.status == SyntheticRun.Status.DONE
    assert run.candidates_made == 0
    assert run.invalid_outputs == 2
    assert not SyntheticCandidate.objects.filter(run=run).exists()
    problem = run.problems[0]["problem"]
    assert "'answer' is a required property" in problem
    assert "not valid JSON" in problem


@pytest.mark.django_db
def test_it_notes_the_kind_whose_output_did_not_fit_and_keeps_the_other(
    rita: User, generator
) -> None:
    # The model answers every request in the variants' shape: the negatives never fit.
    chunks = shared_chunks(VPN_CHUNK)
    run = processed(start(rita, generator(VARIANTS), chunks, kinds=("variant", "negative")))

    assert run.candidates_made == 2
    assert run.invalid_outputs == 1
    assert run.problems[0]["kind"] == "negative"
    assert set(SyntheticCandidate.objects.filter(run=run).values_list("kind", flat=True)) == {
        "variant"
    }


def test_it_parses_fenced_json_and_refuses_repeated_questions() -> None:
    fenced = f"```json\n{VARIANTS}\n```"
    assert len(generate.parse_output("variant", 3, fenced)) == 2
    twice = variants_json(("How do I reset?", "Click it."), ("how do I  RESET?", "Click it."))
    with pytest.raises(generate.InvalidOutput, match="twice"):
        generate.parse_output("variant", 3, twice)
    with pytest.raises(generate.InvalidOutput, match="more than the 1 questions asked for"):
        generate.parse_output("variant", 1, VARIANTS)


@pytest.mark.django_db
def test_it_sends_personal_data_to_a_restricted_model_as_placeholders(
    rita: User, generator
) -> None:
    chunks = shared_chunks("Payslips: write to payroll@example.com with your staff number.")
    # The model sees the placeholder and writes it back; the veil puts the address back.
    reply = variants_json(("Where do I send payslip questions?", "To <EMAIL_ADDRESS_1>."))
    run = processed(start(rita, generator(reply, personal_data_allowed=False), chunks))

    (candidate,) = SyntheticCandidate.objects.filter(run=run)
    assert candidate.expected_answer == "To payroll@example.com."


@pytest.mark.django_db
def test_it_refuses_a_model_outside_the_collections_regions(rita: User, generator) -> None:
    chunks = shared_chunks(VPN_CHUNK)
    Collection.objects.filter(pk=chunks[0].collection_id).update(allowed_regions=["eu"])
    endpoint = generator(VARIANTS, region="us")

    with pytest.raises(services.InvalidSynthetic, match="eu"):
        start(rita, endpoint, [Chunk.objects.select_related("collection").get(pk=chunks[0].pk)])
    assert not SyntheticRun.objects.exists()


# --- idempotence -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_running_the_same_job_again_never_duplicates_candidates(rita: User, generator) -> None:
    chunks = shared_chunks(VPN_CHUNK, PASSWORD_CHUNK)
    endpoint = generator(VARIANTS)
    run = processed(start(rita, endpoint, chunks))
    assert SyntheticCandidate.objects.count() == 4

    # The job delivered twice (a lost acknowledgement): the finished run is left as it is.
    processed(run)
    # Redelivered after a worker died before it recorded the end: it starts over the chunks.
    SyntheticRun.objects.filter(pk=run.pk).update(status=SyntheticRun.Status.RUNNING, chunks_done=0)
    processed(run)
    # The same job asked for again: same chunks, same generator, same questions.
    again = processed(start(rita, endpoint, chunks, dataset=run.dataset))

    assert SyntheticCandidate.objects.count() == 4
    assert (again.candidates_made, again.duplicates_skipped) == (0, 4)


@pytest.mark.django_db
def test_another_prompt_or_model_is_another_generator(rita: User, generator) -> None:
    chunks = shared_chunks(VPN_CHUNK)
    processed(start(rita, generator(VARIANTS, name="writer-a"), chunks))
    processed(start(rita, generator(VARIANTS, name="writer-b"), chunks))

    assert SyntheticCandidate.objects.values("generator").distinct().count() == 2
    assert SyntheticCandidate.objects.count() == 4


# --- the review flow -------------------------------------------------------------------------


def one_candidate(user: User, generator, *, kind: str = "variant") -> SyntheticCandidate:
    chunks = shared_chunks(VPN_CHUNK)
    reply = VARIANTS if kind == "variant" else NEGATIVES
    run = processed(start(user, generator(reply), chunks, kinds=(kind,), variants=2))
    return SyntheticCandidate.objects.filter(run=run).order_by("pk").first()  # type: ignore[return-value]


@pytest.mark.django_db
def test_an_accepted_question_joins_the_dataset_with_its_provenance(
    rita: User, adam: User, generator, client_as: ClientAs
) -> None:
    candidate = one_candidate(adam, generator)
    dataset = candidate.dataset
    before = dataset.version

    response = client_as(rita).post(
        reverse("review:synthetic_candidate", args=[candidate.pk]),
        {
            "action": "accept",
            "question": candidate.question,
            "expected_answer": candidate.expected_answer,
        },
    )

    assert response.status_code == 302
    candidate.refresh_from_db()
    item = DatasetItem.objects.get(dataset=dataset)
    assert candidate.status == SyntheticCandidate.Status.ACCEPTED
    assert candidate.dataset_item_id == item.pk and candidate.reviewed_by == rita
    assert item.question == candidate.question
    assert item.expected_answer == candidate.expected_answer
    assert item.context == VPN_CHUNK and not item.unanswerable
    assert item.added_in == before + 1
    provenance = item.metadata["synthetic"]
    assert provenance["chunk"] == candidate.chunk_id
    assert provenance["document"] == candidate.document_id
    assert provenance["generator"]["endpoint"] == "writer"
    assert provenance["generator"]["prompt_hash"] == candidate.prompt_hash
    assert provenance["job"] == candidate.run_id
    assert provenance["reviewer"] == "rita" and provenance["edited"] is False
    entry = AuditEntry.objects.get(action="synthetic.accept")
    assert entry.actor_name == "rita" and entry.details["item"] == item.pk
    # The page goes on to the next question waiting.
    nxt = SyntheticCandidate.objects.filter(status="pending").order_by("pk").first()
    assert nxt is not None
    assert response["Location"] == reverse("review:synthetic_candidate", args=[nxt.pk])


@pytest.mark.django_db
def test_a_reviewers_edit_goes_to_the_item_and_the_generated_text_is_kept(
    rita: User, generator, client_as: ClientAs
) -> None:
    candidate = one_candidate(rita, generator)
    client_as(rita).post(
        reverse("review:synthetic_candidate", args=[candidate.pk]),
        {
            "action": "accept",
            "question": "How do I connect to the VPN when working from home?",
            "expected_answer": "Open GlobalConnect, choose the Europe gateway, sign in.",
        },
    )

    item = DatasetItem.objects.get(dataset=candidate.dataset)
    assert item.question == "How do I connect to the VPN when working from home?"
    assert item.answers == ["Open GlobalConnect, choose the Europe gateway, sign in."]
    assert item.metadata["synthetic"]["edited"] is True
    assert item.metadata["synthetic"]["generated_question"] == "How do I get on the VPN from home?"
    candidate.refresh_from_db()
    assert candidate.edited and candidate.question == "How do I get on the VPN from home?"


@pytest.mark.django_db
def test_accepting_twice_adds_one_item(rita: User, adam: User, generator, client_as) -> None:
    candidate = one_candidate(rita, generator)
    first = services.candidate_accept(candidate=candidate, reviewer=rita)
    second = services.candidate_accept(candidate=candidate, reviewer=adam)
    response = client_as(adam).post(
        reverse("review:synthetic_candidate", args=[candidate.pk]),
        {"action": "accept", "question": "Something else entirely?", "expected_answer": "No."},
    )

    assert first.pk == second.pk
    assert response.status_code == 302
    assert DatasetItem.objects.filter(dataset=candidate.dataset).count() == 1
    assert AuditEntry.objects.filter(action="synthetic.accept").count() == 1


@pytest.mark.django_db
def test_a_rejected_question_stays_out_of_the_dataset(
    rita: User, generator, client_as: ClientAs
) -> None:
    candidate = one_candidate(rita, generator)
    client = client_as(rita)
    url = reverse("review:synthetic_candidate", args=[candidate.pk])

    client.post(url, {"action": "reject", "reason": "Too close to the passage's wording."})
    refused = client.post(url, {"action": "accept", "question": candidate.question})

    candidate.refresh_from_db()
    assert candidate.status == SyntheticCandidate.Status.REJECTED
    assert candidate.reject_reason == "Too close to the passage's wording."
    assert refused.status_code == 400
    assert "rejected this question already" in refused.content.decode()
    assert not DatasetItem.objects.filter(dataset=candidate.dataset).exists()
    assert AuditEntry.objects.filter(action="synthetic.reject", actor_name="rita").exists()


@pytest.mark.django_db
def test_an_accepted_hard_negative_is_an_unanswerable_item(rita: User, generator) -> None:
    candidate = one_candidate(rita, generator, kind="negative")
    item = services.candidate_accept(candidate=candidate, reviewer=rita)

    assert item.unanswerable and item.expected_answer == "" and item.answers == []
    assert item.metadata["synthetic"]["kind"] == "negative"


@pytest.mark.django_db
def test_a_variant_needs_an_expected_answer(rita: User, generator, client_as) -> None:
    candidate = one_candidate(rita, generator)
    response = client_as(rita).post(
        reverse("review:synthetic_candidate", args=[candidate.pk]),
        {"action": "accept", "question": candidate.question, "expected_answer": "  "},
    )
    assert response.status_code == 400
    assert "needs its expected answer" in response.content.decode()
    assert not DatasetItem.objects.exists()


# --- pages -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reviewer_starts_a_run_from_the_dataset_page(
    rita: User, generator, client_as: ClientAs, django_capture_on_commit_callbacks
) -> None:
    chunks = shared_chunks(VPN_CHUNK, PASSWORD_CHUNK)
    dataset = dataset_create(name="VPN questions", user=rita)
    endpoint = generator(VARIANTS)
    client = client_as(rita)
    page = client.get(reverse("review:dataset", args=[dataset.pk])).content.decode()
    assert reverse("review:synthetic_new") + f"?dataset={dataset.pk}" in page

    form = client.get(reverse("review:synthetic_new"), {"dataset": dataset.pk})
    assert form.status_code == 200
    assert chunks[0].collection.name in form.content.decode()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(
            reverse("review:synthetic_new"),
            {
                "dataset": dataset.pk,
                "collection": chunks[0].collection_id,
                "endpoint": endpoint.pk,
                "kinds": ["variant", "negative"],
                "variants_per_chunk": 3,
                "negatives_per_chunk": 1,
                "sample_size": 1,
            },
        )

    run = SyntheticRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("review:synthetic_run", args=[run.pk])
    assert run.created_by == rita and run.kinds == ["variant", "negative"]
    assert len(run.chunk_ids) == 1 and run.chunk_ids[0] in {c.pk for c in chunks}
    assert len(queued) == 1  # the job, sent once the run is saved
    assert AuditEntry.objects.get(action="synthetic.generate").actor_name == "rita"
    progress = client.get(
        reverse("review:synthetic_run", args=[run.pk]), headers={"HX-Request": "true"}
    )
    assert 'hx-trigger="every 1s"' in progress.content.decode()


@pytest.mark.django_db
def test_the_run_page_shows_the_finished_runs_counts_and_problems(
    rita: User, generator, client_as: ClientAs
) -> None:
    chunks = shared_chunks(VPN_CHUNK)
    run = processed(start(rita, generator(VARIANTS), chunks, kinds=("variant", "negative")))
    page = client_as(rita).get(reverse("review:synthetic_run", args=[run.pk])).content.decode()

    assert "2 waiting" in page
    assert "output did not fit twice" in page
    assert "hx-trigger" not in page


@pytest.mark.django_db
def test_the_review_queue_points_to_waiting_synthetic_questions(
    rita: User, generator, client_as: ClientAs
) -> None:
    one_candidate(rita, generator)
    client = client_as(rita)
    queue = client.get(reverse("review:queue")).content.decode()
    assert "2 generated questions wait for review" in queue

    listed = client.get(reverse("review:synthetic_queue")).content.decode()
    assert "How do I get on the VPN from home?" in listed
    taken = client.post(reverse("review:synthetic_next"))
    first = SyntheticCandidate.objects.order_by("pk").first()
    assert first is not None
    assert taken["Location"] == reverse("review:synthetic_candidate", args=[first.pk])


@pytest.mark.django_db
def test_model_output_is_escaped_on_every_page(rita: User, generator, client_as: ClientAs) -> None:
    chunks = shared_chunks(VPN_CHUNK)
    reply = variants_json(("<script>alert(1)</script> VPN?", "<img src=x onerror=alert(1)>"))
    run = processed(start(rita, generator(reply), chunks))
    candidate = SyntheticCandidate.objects.get(run=run)
    client = client_as(rita)

    for url in (
        reverse("review:synthetic_candidate", args=[candidate.pk]),
        reverse("review:synthetic_queue"),
    ):
        page = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- who may ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["nora", "alice"])
def test_only_reviewers_and_admins_may_open_or_act(
    who: str, cast: dict[str, User], rita: User, generator, client_as: ClientAs
) -> None:
    candidate = one_candidate(rita, generator)
    client = client_as(cast[who])
    for name, args in (
        ("review:synthetic_queue", []),
        ("review:synthetic_new", []),
        ("review:synthetic_next", []),
        ("review:synthetic_run", [candidate.run_id]),
        ("review:synthetic_run_resume", [candidate.run_id]),
        ("review:synthetic_candidate", [candidate.pk]),
    ):
        url = reverse(name, args=args)
        assert client.get(url).status_code in {403, 405}, url
        assert client.post(url, {"action": "accept"}).status_code == 403, url
    assert not DatasetItem.objects.exists()
    assert SyntheticRun.objects.count() == 1


@pytest.mark.django_db
def test_a_reviewer_sees_only_chunks_of_collections_shared_with_them(
    rita: User, adam: User, generator, client_as: ClientAs
) -> None:
    secret = shared_chunks("Board minutes: the merger closes in March.", shared_with=())
    run = processed(start(adam, generator(VARIANTS), secret))
    candidate = SyntheticCandidate.objects.filter(run=run).first()
    assert candidate is not None
    client = client_as(rita)

    assert client.get(reverse("review:synthetic_candidate", args=[candidate.pk])).status_code == 404
    assert client.get(reverse("review:synthetic_run", args=[run.pk])).status_code == 404
    assert "Board minutes" not in client.get(reverse("review:synthetic_queue")).content.decode()
    assert (
        secret[0].collection.name
        not in client.get(reverse("review:synthetic_new")).content.decode()
    )
    forged = client.post(
        reverse("review:synthetic_new"),
        {
            "dataset": run.dataset_id,
            "collection": secret[0].collection_id,
            "endpoint": run.endpoint_id,
            "kinds": ["variant"],
            "variants_per_chunk": 1,
            "negatives_per_chunk": 1,
            "sample_size": 1,
        },
    )
    assert forged.status_code == 400
    assert SyntheticRun.objects.count() == 1
    # The admin reads every collection.
    assert (
        client_as(adam).get(reverse("review:synthetic_candidate", args=[candidate.pk])).status_code
        == 200
    )


# --- the real worker -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_job(rita: User, generator, worker: TestWorkController) -> None:
    chunks = shared_chunks(VPN_CHUNK)
    run = start(rita, generator(VARIANTS), chunks)

    # A deadline so a broken worker fails the test instead of hanging it; not a timing claim.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.finished:
            break
        time.sleep(0.2)
    assert run.status == SyntheticRun.Status.DONE, run.error or run.status
    assert SyntheticCandidate.objects.filter(run=run).count() == 2
