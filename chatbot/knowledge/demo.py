"""The demo knowledge base `make run` starts with: a small support handbook and a few past
tickets (deploy/demo-kb/), shared with every role, so a first question gets a cited answer."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import Group

from chatbot.accounts import roles
from chatbot.knowledge import services
from chatbot.models import Collection, Source

DEMO_DIR = settings.BASE_DIR / "deploy" / "demo-kb"


@dataclass(frozen=True)
class DemoSource:
    collection: str
    description: str
    kind: str
    path: str


DEMO_SOURCES = [
    DemoSource(
        "Support handbook",
        "How we reset passwords, refund, escalate and bill.",
        Source.Kind.PATH,
        "handbook",
    ),
    DemoSource(
        "Past tickets",
        "Solved support tickets, for “have we seen this before?”.",
        Source.Kind.TICKETS,
        "tickets.csv",
    ),
]


def demo_knowledge_ensure() -> list[Collection]:
    """Create the demo collections and queue their ingestion, once; later runs change nothing."""
    groups = list(Group.objects.filter(name__in=[roles.AGENT, roles.REVIEWER, roles.ADMIN]))
    made: list[Collection] = []
    for demo in DEMO_SOURCES:
        if Collection.objects.filter(name=demo.collection).exists():
            continue
        collection = services.collection_create(
            name=demo.collection, description=demo.description, groups=groups
        )
        services.source_create(
            collection=collection,
            kind=demo.kind,
            location=str(DEMO_DIR / demo.path),
            name=demo.path,
        )
        made.append(collection)
    return made
