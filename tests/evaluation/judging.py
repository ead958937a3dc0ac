"""Finished turns for the judge tests, recorded through the same services the turn loop uses."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.contrib.auth.models import Group, User

from chatbot.accounts import roles
from chatbot.agent import records
from chatbot.chat import services
from chatbot.llm.types import Usage
from chatbot.models import Chunk, Collection, Document, Source, Turn
from chatbot.models.knowledge import EMBEDDING_DIMENSIONS
from chatbot.telemetry.tracing import Tracer

PASSWORD_CHUNK = (
    "To reset a forgotten password, open the sign-in page and click Forgot password. "
    "We email a reset link to your work address. The reset link expires after 30 minutes."
)


def chunks(
    *texts: str, shared_with: tuple[str, ...] = (roles.AGENT, roles.REVIEWER)
) -> list[Chunk]:
    """Chunks of a new collection shared with the roles named (agents and reviewers, as the
    knowledge base usually is; admins read every collection)."""
    collection = Collection.objects.create(name=f"Help {uuid.uuid4().hex[:8]}")
    collection.groups.set([Group.objects.get_or_create(name=role)[0] for role in shared_with])
    source = Source.objects.create(collection=collection, name="docs", kind="path", location="/x")
    made = []
    for ordinal, text in enumerate(texts):
        document = Document.objects.create(
            source=source, collection=collection, external_id=f"doc-{ordinal}", chunk_count=1
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


def finished_turn(
    user: User,
    *,
    question: str = "How do I reset a forgotten password?",
    answer: str = "Open the sign-in page and click Forgot password.",
    context: tuple[str, ...] = (),
    status: str = Turn.Status.DONE,
    no_answer: bool = False,
    shared_with: tuple[str, ...] = (roles.AGENT, roles.REVIEWER),
    traced: bool = False,
) -> Turn:
    """A finished turn given `context` as its numbered passages; `traced` also records the
    retrieval span that returned them, as `ground` does."""
    conversation = services.conversation_create(owner=user)
    turn = services.turn_create(conversation=conversation, user_text=question)
    given = chunks(*context, shared_with=shared_with)
    citations = [
        records.CitationRecord(
            chunk_id=chunk.pk, number=n, score=0.5, similarity=0.8, cited=f"[{n}]" in answer
        )
        for n, chunk in enumerate(given, start=1)
    ]
    tracer = Tracer()
    if traced:
        with tracer.span("agent", "turn"):
            ids = [chunk.pk for chunk in given]
            with tracer.span("retrieval", "hybrid_search", chunk_ids=ids, relevant_chunk_ids=ids):
                pass
    result = records.TurnResult(
        status=status,
        answer=answer,
        usage=Usage(input_tokens=20, output_tokens=10),
        cost=Decimal("0.00001"),
        ttft_ms=10.0,
        total_ms=50.0,
        no_answer=no_answer,
        citations=citations,
    )
    records.turn_finish(turn_id=turn.pk, result=result, tracer=tracer)
    turn.refresh_from_db()
    return turn


# A passage of a collection shared only with admins: reviewers must never read it.
ADMINS_ONLY_PASSAGE = (
    "Project Bluebird is confidential: the Lisbon office closes at the end of June and its "
    "staff move to Porto."
)


def admins_only_turn(user: User, **fields: object) -> Turn:
    """A traced turn whose answer cites [1], a chunk of a collection shared only with admins."""
    return finished_turn(
        user,
        question=str(fields.pop("question", "Which office closes this summer?")),
        answer=str(fields.pop("answer", "An office closes at the end of June [1].")),
        context=(ADMINS_ONLY_PASSAGE,),
        shared_with=(roles.ADMIN,),
        traced=True,
        **fields,  # type: ignore[arg-type]
    )
