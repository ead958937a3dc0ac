"""Finished turns for the judge tests, recorded through the same services the turn loop uses."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.contrib.auth.models import User

from chatbot.chat import services
from chatbot.llm.types import Usage
from chatbot.models import Chunk, Collection, Document, Source, Turn
from chatbot.models.knowledge import EMBEDDING_DIMENSIONS
from observability.tracing import Tracer

PASSWORD_CHUNK = (
    "To reset a forgotten password, open the sign-in page and click Forgot password. "
    "We email a reset link to your work address. The reset link expires after 30 minutes."
)


def chunks(*texts: str) -> list[Chunk]:
    collection = Collection.objects.create(name=f"Help {uuid.uuid4().hex[:8]}")
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
) -> Turn:
    conversation = services.conversation_create(owner=user)
    turn = services.turn_create(conversation=conversation, user_text=question)
    citations = [
        services.CitationRecord(
            chunk_id=chunk.pk, number=n, score=0.5, similarity=0.8, cited=f"[{n}]" in answer
        )
        for n, chunk in enumerate(chunks(*context), start=1)
    ]
    result = services.TurnResult(
        status=status,
        answer=answer,
        usage=Usage(input_tokens=20, output_tokens=10),
        cost=Decimal("0.00001"),
        ttft_ms=10.0,
        total_ms=50.0,
        no_answer=no_answer,
        citations=citations,
    )
    services.turn_finish(turn_id=turn.pk, result=result, tracer=Tracer())
    turn.refresh_from_db()
    return turn
