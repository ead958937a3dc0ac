"""Reads for the knowledge base pages. Visibility is decided in `chatbot.accounts.visibility`."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Q, QuerySet

from chatbot.accounts.visibility import collections_visible_to
from chatbot.models import Chunk, Collection, Document, Source

AnyUser = User | AnonymousUser

# A retired document left its source and is kept only for the answers that cite its chunks.
_LISTED_DOCUMENTS = ~Q(documents__status=Document.Status.RETIRED)


def collections_with_counts(user: AnyUser) -> QuerySet[Collection]:
    return (
        collections_visible_to(user)
        .annotate(
            source_count=Count("sources", distinct=True),
            document_count=Count("documents", filter=_LISTED_DOCUMENTS, distinct=True),
        )
        .prefetch_related("groups")
        .order_by("name")
    )


def collection_get_for(user: AnyUser, collection_id: int) -> Collection:
    return collections_visible_to(user).get(pk=collection_id)


def sources_for(collection: Collection) -> QuerySet[Source]:
    return collection.sources.annotate(
        document_count=Count("documents", filter=_LISTED_DOCUMENTS, distinct=True),
        error_count=Count(
            "documents", filter=Q(documents__status=Document.Status.ERROR), distinct=True
        ),
    ).order_by("name")


def source_get_for(user: AnyUser, source_id: int) -> Source:
    return Source.objects.select_related("collection").get(
        pk=source_id, collection__in=collections_visible_to(user)
    )


def document_get_for(user: AnyUser, document_id: int) -> Document:
    return Document.objects.select_related("source", "collection").get(
        pk=document_id, collection__in=collections_visible_to(user)
    )


def documents_for(source: Source) -> QuerySet[Document]:
    return source.documents.exclude(status=Document.Status.RETIRED).order_by(
        "status", "external_id"
    )


def chunks_for(document: Document) -> QuerySet[Chunk]:
    """The document's current chunks; retired ones show only beside the answers that cite them."""
    return (
        document.chunks.filter(retired_at__isnull=True)
        .order_by("ordinal")
        .only("id", "ordinal", "heading", "text")
    )
