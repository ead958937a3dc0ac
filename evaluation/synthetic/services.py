"""Writes for synthetic questions: starting a generation run, the job that runs it, and a
reviewer's accept (optionally edited) or reject.

A run is saved first and its job queued on commit. The job works through the run's sampled chunks
in order from `chunks_done`, and each chunk's candidates are saved in the same transaction as the
counter that passes it, so a job sent twice, or again after its worker died, carries on where the
last one stopped. A candidate's key is (chunk, generator, question text): the same model and
prompt giving the same question about the same chunk again, in this run or another, finds the
first candidate instead of making a second.

Nothing enters a dataset until a reviewer accepts it; accepting twice returns the first item.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chatbot.accounts.visibility import collections_visible_to
from chatbot.agent.routing import route_step, routing_load
from chatbot.jobs import job_submit_on_commit
from chatbot.llm.pricing import usage_cost
from chatbot.llm.types import EndpointConfig, ModelError, Usage
from chatbot.models import (
    Chunk,
    Collection,
    Dataset,
    DatasetItem,
    ModelEndpoint,
    SyntheticCandidate,
    SyntheticRun,
)
from chatbot.retrieval.search import SearchHit
from chatbot.telemetry.audit import audit_record
from evaluation.datasets.services import dataset_item_add
from evaluation.offline.data import ItemData
from evaluation.synthetic import generate
from evaluation.synthetic.generate import NEGATIVE, VARIANT, Passage

logger = logging.getLogger(__name__)

TASK = "evaluation.synthetic_run"
MAX_SAMPLE = 200
MAX_VARIANTS = 5
MAX_NEGATIVES = 3
PROBLEMS_KEPT = 20
QUESTION_LIMIT = 2000
ANSWER_LIMIT = 4000


class InvalidSynthetic(ValueError):
    """A run or a review decision that cannot be made; the message is shown as it is."""


# --- starting a run --------------------------------------------------------------------------


def chunks_sample(collection: Collection, size: int) -> list[int]:
    """`size` of the collection's current chunks, the same ones for the same collection version
    and size (so asking again for the same job finds the candidates it already made)."""
    ids = list(
        Chunk.objects.filter(collection=collection, retired_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if len(ids) <= size:
        return ids
    # A seeded sample for repeatability, not secrecy.
    chooser = random.Random(f"{collection.pk}:{collection.version}:{size}")  # noqa: S311
    return sorted(chooser.sample(ids, size))


def _hit(chunk: Chunk) -> SearchHit:
    """A chunk in the shape the router reads passages in (its collection, heading and text)."""
    document = chunk.document
    return SearchHit(
        chunk_id=chunk.pk,
        score=0.0,
        dense_rank=None,
        sparse_rank=None,
        similarity=None,
        text_rank=None,
        heading=chunk.heading,
        text=chunk.text,
        document_id=document.pk,
        external_id=document.external_id,
        title=document.title,
        url=document.url,
        collection_id=chunk.collection_id,
        collection_name=chunk.collection.name,
    )


def _route(user: User | None, endpoint_name: str, chunk: Chunk) -> EndpointConfig:
    """The named model, if the routing rules let this chunk go to it: residency (the
    collection's regions, the asker's groups), sensitivity and budget rules, as for a turn.
    A named model is never swapped for another; raises `ModelError` (a `RouteRefused`) in words
    when it may not take the chunk."""
    routing = routing_load(user=user, requested=endpoint_name)
    route = route_step(
        routing,
        task="synthetic",
        question=chunk.text[:500],
        texts=[chunk.text],
        hits=[_hit(chunk)],
    )
    return route.endpoint


def _kinds_clean(kinds: list[str]) -> list[str]:
    chosen = [k for k in generate.KINDS if k in kinds]
    if not chosen:
        raise InvalidSynthetic("Choose question variants, hard negatives, or both.")
    return chosen


def synthetic_run_create(
    *,
    dataset: Dataset,
    collection: Collection,
    endpoint: ModelEndpoint,
    kinds: list[str],
    variants_per_chunk: int,
    negatives_per_chunk: int,
    sample_size: int,
    user: User,
) -> SyntheticRun:
    """Save a run over a sample of `collection`'s chunks and queue its job on commit."""
    kinds = _kinds_clean(kinds)
    if not collections_visible_to(user).filter(pk=collection.pk).exists():
        # The form offers only the collections the person may read; a forged id lands here.
        raise InvalidSynthetic("That collection is not shared with you.")
    if not endpoint.enabled:
        raise InvalidSynthetic(f"The model “{endpoint.name}” is turned off in the catalogue.")
    if not 1 <= sample_size <= MAX_SAMPLE:
        raise InvalidSynthetic(f"Sample between 1 and {MAX_SAMPLE} chunks.")
    if not 1 <= variants_per_chunk <= MAX_VARIANTS:
        raise InvalidSynthetic(f"Ask for 1 to {MAX_VARIANTS} variants per chunk.")
    if not 1 <= negatives_per_chunk <= MAX_NEGATIVES:
        raise InvalidSynthetic(f"Ask for 1 to {MAX_NEGATIVES} hard negatives per chunk.")
    chunk_ids = chunks_sample(collection, sample_size)
    if not chunk_ids:
        raise InvalidSynthetic(
            f"“{collection.name}” has no chunks yet — ingest a source into it first."
        )
    first = Chunk.objects.select_related("document", "collection").get(pk=chunk_ids[0])
    try:
        # Residency and confidentiality are per collection: one chunk tells whether the model
        # may receive any of them, before a job is queued that could only fail.
        _route(user, endpoint.name, first)
    except ModelError as exc:
        raise InvalidSynthetic(exc.user_message) from exc
    with transaction.atomic():
        run = SyntheticRun.objects.create(
            dataset=dataset,
            collection=collection,
            endpoint=endpoint,
            endpoint_name=endpoint.name,
            kinds=kinds,
            variants_per_chunk=variants_per_chunk,
            negatives_per_chunk=negatives_per_chunk,
            sample_size=sample_size,
            chunk_ids=chunk_ids,
            chunks_total=len(chunk_ids),
            prompt_version=generate.PROMPT_VERSION,
            prompt_hashes={k: generate.prompt_hash(k) for k in kinds},
            created_by=user,
        )
        audit_record(
            "synthetic.generate",
            target=run,
            details={
                "dataset": dataset.pk,
                "collection": collection.pk,
                "endpoint": endpoint.name,
                "kinds": kinds,
                "chunks": len(chunk_ids),
            },
            actor=user,
        )
        job_submit_on_commit(TASK, run.pk)
    return run


def synthetic_run_resume(*, run: SyntheticRun, user: User) -> SyntheticRun:
    """Queue a failed (or long-waiting) run's job again; it carries on from the next chunk."""
    if run.status == SyntheticRun.Status.DONE:
        raise InvalidSynthetic("This run is finished; start a new one to generate more.")
    with transaction.atomic():
        SyntheticRun.objects.filter(pk=run.pk).exclude(status=SyntheticRun.Status.DONE).update(
            status=SyntheticRun.Status.QUEUED, error="", finished_at=None
        )
        audit_record("synthetic.resume", target=run, details={"from_chunk": run.chunks_done})
        job_submit_on_commit(TASK, run.pk)
    run.refresh_from_db()
    return run


# --- the job ---------------------------------------------------------------------------------


def synthetic_run_fail(*, run_id: int, reason: str) -> None:
    SyntheticRun.objects.filter(pk=run_id).exclude(status=SyntheticRun.Status.DONE).update(
        status=SyntheticRun.Status.FAILED, error=reason[:2000], finished_at=timezone.now()
    )


@dataclass
class _ChunkOutcome:
    made: list[tuple[str, generate.Generated]]
    problems: list[dict[str, Any]]
    usage: Usage


def _count_for(run: SyntheticRun, kind: str) -> int:
    return run.variants_per_chunk if kind == VARIANT else run.negatives_per_chunk


def _generate_for(run: SyntheticRun, endpoint: EndpointConfig, chunk: Chunk) -> _ChunkOutcome:
    """Every kind the run asks for, for one chunk. An output that does not fit twice is a
    problem noted for the page; a model that cannot be reached raises `ModelError`."""
    usage = Usage()
    outcome = _ChunkOutcome([], [], usage)
    passage = Passage(text=chunk.text, title=chunk.document.title, heading=chunk.heading)
    for kind in run.kinds:
        try:
            generation = generate.generate(
                endpoint, kind=kind, count=_count_for(run, kind), passage=passage, usage=usage
            )
        except generate.InvalidOutput as exc:
            outcome.problems.append(
                {"chunk": chunk.pk, "kind": kind, "problem": f"output did not fit twice: {exc}"}
            )
            continue
        outcome.made.extend((kind, item) for item in generation.items)
    return outcome


def _save_chunk(
    run: SyntheticRun, chunk: Chunk | None, endpoint: EndpointConfig, outcome: _ChunkOutcome
) -> None:
    """The chunk's candidates and the run's counters, in one transaction."""
    with transaction.atomic():
        made = skipped = 0
        for kind, item in outcome.made:
            assert chunk is not None
            _, created = SyntheticCandidate.objects.get_or_create(
                chunk=chunk,
                generator=generate.generator_key(endpoint, kind),
                text_hash=generate.text_hash(item.question),
                defaults={
                    "run": run,
                    "dataset_id": run.dataset_id,
                    "document_id": chunk.document_id,
                    "collection_id": chunk.collection_id,
                    "kind": kind,
                    "question": item.question,
                    "expected_answer": item.answer,
                    "note": item.note,
                    "endpoint_name": endpoint.name,
                    "prompt_hash": generate.prompt_hash(kind),
                },
            )
            made += created
            skipped += not created
        run.chunks_done += 1
        run.candidates_made += made
        run.duplicates_skipped += skipped
        run.invalid_outputs += sum(1 for p in outcome.problems if p.get("kind"))
        run.problems = (run.problems + outcome.problems)[-PROBLEMS_KEPT:]
        run.tokens_in += outcome.usage.input_tokens
        run.tokens_out += outcome.usage.output_tokens
        run.tokens_estimated = run.tokens_estimated or outcome.usage.estimated
        run.cost += usage_cost(endpoint, outcome.usage)
        run.save(
            update_fields=[
                "chunks_done",
                "candidates_made",
                "duplicates_skipped",
                "invalid_outputs",
                "problems",
                "tokens_in",
                "tokens_out",
                "tokens_estimated",
                "cost",
            ]
        )


def _start(run: SyntheticRun) -> EndpointConfig | None:
    endpoint = run.endpoint
    if endpoint is None or not endpoint.enabled:
        synthetic_run_fail(
            run_id=run.pk,
            reason=f"The model “{run.endpoint_name}” was removed or turned off in the "
            "catalogue; start a new run with another model.",
        )
        return None
    run.status = SyntheticRun.Status.RUNNING
    run.started_at = run.started_at or timezone.now()
    run.save(update_fields=["status", "started_at"])
    return EndpointConfig.from_model(endpoint)


def synthetic_run_process(*, run_id: int) -> SyntheticRun:
    """Generate for every chunk of the run not done yet, saving after each; safe to run twice."""
    run = SyntheticRun.objects.select_related("endpoint", "created_by").get(pk=run_id)
    if run.finished:
        return run
    endpoint = _start(run)
    if endpoint is None:
        run.refresh_from_db()
        return run
    remaining = run.chunk_ids[run.chunks_done :]
    chunks = Chunk.objects.select_related("document", "collection").in_bulk(remaining)
    refused = 0
    for chunk_id in remaining:
        chunk = chunks.get(chunk_id)
        if chunk is None or chunk.retired_at is not None:
            note = {"chunk": chunk_id, "problem": "the chunk changed or left the knowledge base"}
            _save_chunk(run, None, endpoint, _ChunkOutcome([], [note], Usage()))
            continue
        try:
            routed = _route(run.created_by, endpoint.name, chunk)
        except ModelError as exc:
            # Residency, a sensitivity rule or a budget: this chunk may not go to this model.
            refused += 1
            note = {"chunk": chunk_id, "problem": f"not sent: {exc.user_message}"}
            _save_chunk(run, None, endpoint, _ChunkOutcome([], [note], Usage()))
            continue
        try:
            outcome = _generate_for(run, routed, chunk)
        except ModelError as exc:
            synthetic_run_fail(
                run_id=run.pk,
                reason=f"{exc.user_message} The questions made so far are kept; resume the "
                "run to carry on from the next chunk.",
            )
            run.refresh_from_db()
            return run
        _save_chunk(run, chunk, routed, outcome)
    run.status = SyntheticRun.Status.DONE
    if remaining and refused == len(remaining) and not run.candidates_made:
        run.status = SyntheticRun.Status.FAILED
        run.error = "The routing rules sent none of the chunks to this model: " + str(
            run.problems[-1]["problem"] if run.problems else ""
        )
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    logger.info(
        "synthetic run %s: %s chunks, %s candidates, %s duplicates, %s invalid outputs on %s",
        run.pk,
        run.chunks_done,
        run.candidates_made,
        run.duplicates_skipped,
        run.invalid_outputs,
        endpoint.name,
    )
    return run


# --- review decisions ------------------------------------------------------------------------


def _provenance(candidate: SyntheticCandidate, reviewer: User, edited: bool) -> dict[str, Any]:
    run = candidate.run
    document = candidate.document
    return {
        "candidate": candidate.pk,
        "kind": candidate.kind,
        "chunk": candidate.chunk_id,
        "document": candidate.document_id,
        "document_title": (document.title or document.external_id) if document else "",
        "collection": candidate.collection_id,
        "generator": {
            "endpoint": candidate.endpoint_name,
            "endpoint_id": run.endpoint_id,
            "prompt_version": run.prompt_version,
            "prompt_hash": candidate.prompt_hash,
            "key": candidate.generator,
        },
        "job": run.pk,
        "reviewer": reviewer.get_username(),
        "reviewer_id": reviewer.pk,
        "edited": edited,
        "generated_question": candidate.question,
        "generated_answer": candidate.expected_answer,
    }


def _locked(candidate: SyntheticCandidate) -> SyntheticCandidate:
    return (
        SyntheticCandidate.objects.select_for_update(of=("self",))
        .select_related("run", "document", "chunk", "dataset_item", "reviewed_by")
        .get(pk=candidate.pk)
    )


def candidate_accept(
    *,
    candidate: SyntheticCandidate,
    reviewer: User,
    question: str | None = None,
    expected_answer: str | None = None,
) -> DatasetItem:
    """Add the candidate (as the reviewer edited it) to its run's dataset, with its provenance
    on the item. Accepting an accepted candidate again returns the item it already made."""
    with transaction.atomic():
        current = _locked(candidate)
        if current.status == SyntheticCandidate.Status.ACCEPTED and current.dataset_item:
            return current.dataset_item
        if current.status == SyntheticCandidate.Status.REJECTED:
            who = current.reviewed_by.get_username() if current.reviewed_by else "a reviewer"
            raise InvalidSynthetic(f"{who} rejected this question already.")
        final_question = " ".join((question if question is not None else current.question).split())
        final_answer = (
            expected_answer if expected_answer is not None else current.expected_answer
        ).strip()
        negative = current.kind == NEGATIVE
        if negative:
            final_answer = ""
        if not final_question:
            raise InvalidSynthetic("The question cannot be empty.")
        if len(final_question) > QUESTION_LIMIT:
            raise InvalidSynthetic(f"Keep the question under {QUESTION_LIMIT:,} characters.")
        if not negative and not final_answer:
            raise InvalidSynthetic("A question variant needs its expected answer.")
        if len(final_answer) > ANSWER_LIMIT:
            raise InvalidSynthetic(f"Keep the answer under {ANSWER_LIMIT:,} characters.")
        edited = final_question != current.question or final_answer != (
            "" if negative else current.expected_answer
        )
        context = current.chunk.text.strip() if current.chunk and not negative else ""
        item = dataset_item_add(
            dataset=current.dataset,
            data=ItemData(
                question=final_question,
                expected_answer=final_answer,
                answers=(final_answer,) if final_answer else (),
                context=context,
                unanswerable=negative,
                external_id=f"synthetic-{current.pk}",
                metadata={"synthetic": _provenance(current, reviewer, edited)},
            ),
        )
        current.status = SyntheticCandidate.Status.ACCEPTED
        current.reviewed_by = reviewer
        current.reviewed_at = timezone.now()
        current.edited = edited
        current.dataset_item = item
        current.save(
            update_fields=["status", "reviewed_by", "reviewed_at", "edited", "dataset_item"]
        )
        audit_record(
            "synthetic.accept",
            target=current,
            details={
                "dataset": current.dataset_id,
                "item": item.pk,
                "version": item.added_in,
                "edited": edited,
            },
            actor=reviewer,
        )
    candidate.refresh_from_db()
    return item


def candidate_reject(
    *, candidate: SyntheticCandidate, reviewer: User, reason: str = ""
) -> SyntheticCandidate:
    """Keep the candidate out of the dataset. An accepted one is removed from its dataset on
    the dataset page instead (its item is part of a version already)."""
    with transaction.atomic():
        current = _locked(candidate)
        if current.status == SyntheticCandidate.Status.ACCEPTED:
            raise InvalidSynthetic(
                "This question is in the dataset already; remove it on the dataset page."
            )
        if current.status == SyntheticCandidate.Status.REJECTED:
            return current
        current.status = SyntheticCandidate.Status.REJECTED
        current.reviewed_by = reviewer
        current.reviewed_at = timezone.now()
        current.reject_reason = " ".join(reason.split())[:500]
        current.save(update_fields=["status", "reviewed_by", "reviewed_at", "reject_reason"])
        audit_record(
            "synthetic.reject",
            target=current,
            details={"reason": current.reject_reason} if current.reject_reason else {},
            actor=reviewer,
        )
    candidate.refresh_from_db()
    return current
