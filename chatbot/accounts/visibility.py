"""Which collections of the knowledge base a person may read. Decided here, once, for the
knowledge pages, search, answers, traces, review pages and training exports."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from chatbot.accounts import roles
from chatbot.models import Collection

AnyUser = User | AnonymousUser


def sees_every_collection(user: AnyUser) -> bool:
    """Knowledge admins manage, and so may read, every collection (pages, search and answers)."""
    return user.is_authenticated and user.has_perm(roles.MANAGE_KNOWLEDGE)


def collections_visible_to(user: AnyUser) -> QuerySet[Collection]:
    """Admins see every collection; everyone else those shared with one of their groups."""
    if not user.is_authenticated:
        return Collection.objects.none()
    if sees_every_collection(user):
        return Collection.objects.all()
    return Collection.objects.filter(groups__user__pk=user.pk).distinct()


class CollectionGate:
    """Answers "may this person read a passage of collection N?" with at most one query,
    for pages that show many passages (trace waterfalls, review items, exports)."""

    def __init__(self, user: AnyUser) -> None:
        self.user = user
        self._all = sees_every_collection(user)
        self._ids: set[int] | None = None

    def allows(self, collection_id: int | None) -> bool:
        if self._all:
            return True
        if collection_id is None:
            return False
        if self._ids is None:
            self._ids = set(collections_visible_to(self.user).values_list("pk", flat=True))
        return collection_id in self._ids


HIDDEN_PASSAGE = "Passage from a collection not shared with you."
