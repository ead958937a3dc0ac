"""Reads for the knowledge base. Visibility is decided here, once, for pages, search and answers."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Q, QuerySet

from chatbot.accounts import roles
from chatbot.models import Chunk, Collection, Document, Source

AnyUser = User | AnonymousUser


def collections_visible_to(user: AnyUser) -> QuerySet[Collection]:
    """Admins see every collection; everyone else those shared with one of their groups."""
    if not user.is_authenticated:
        return Collection.objects.none()
    if sees_every_collection(user):
        return Collection.objects.all()
    return Collection.objects.filter(groups__user__pk=user.pk).distinct()


def sees_every_collection(user: AnyUser) -> bool:
    """Knowledge admins manage, and so may read, every collection (pages, search and answers)."""
    return user.is_authenticated and user.has_perm(roles.MANAGE_KNOWLEDGE)


def collections_with_counts(user: AnyUser) -> QuerySet[Collection]:
    return (
        collections_visible_to(user)
        .annotate(
            source_count=Count("sources", distinct=True),
            document_count=Count("documents", distinct=True),
        )
        .prefetch_related("groups")
        .order_by("name")
    )


def collection_get_for(user: AnyUser, collection_id: int) -> Collection:
    return collections_visible_to(user).get(pk=collection_id)


def sources_for(collection: Collection) -> QuerySet[Source]:
    return collection.sources.annotate(
        document_count=Count("documents", distinct=True),
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


def chunks_for(document: Document) -> QuerySet[Chunk]:
    return document.chunks.order_by("ordinal").only("id", "ordinal", "heading", "text")
