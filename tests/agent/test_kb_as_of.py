"""A turn run as of past knowledge-base versions: the agent's kb_search tool reads them too, and
the turn records the versions it read. Real ingestion and search; the model is the fake."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group

from chatbot.accounts import roles
from chatbot.agent.tools.access import tools_ensure
from chatbot.agent.turn import turn_run
from chatbot.chat import services as chat_services
from chatbot.knowledge import services as knowledge
from chatbot.knowledge.ingest import source_ingest
from chatbot.models import AssistantSettings, Citation, ModelEndpoint, Span, ToolSetting, Turn
from tests.knowledge.ingest_support import CountingEmbeddings

pytestmark = pytest.mark.django_db

OLD = "Printers on floor 3 need the blue driver."
NEW = "Printers on floor 3 now need the green driver."


async def _quiet(_: str) -> None:
    pass


def test_the_agents_search_reads_the_knowledge_base_as_of_the_given_versions(
    tmp_path: Path, alice, fake_endpoint
) -> None:
    (tmp_path / "printers.txt").write_text(OLD)
    collection = knowledge.collection_create(
        name="Office IT", groups=Group.objects.filter(name=roles.AGENT)
    )
    source = knowledge.source_create(
        collection=collection, kind="path", location=str(tmp_path), queue=False
    )
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())
    collection.refresh_from_db()
    then = collection.version
    (tmp_path / "printers.txt").write_text(NEW)
    source_ingest(source_id=source.pk, embedder=CountingEmbeddings())
    AssistantSettings.objects.update_or_create(
        pk=1, defaults={"grounding": "required", "min_similarity": 0.2, "min_coverage": 0.0}
    )
    tools_ensure()
    # The loop runs when a tool beyond search is offered.
    ToolSetting.objects.filter(name__in=["kb_search", "draft"]).update(
        enabled=True, roles=["agent"]
    )
    endpoint = fake_endpoint(
        ["Use the driver in [1]."], tool_calling=ModelEndpoint.ToolCalling.NATIVE
    )
    endpoint.options["tool_calls"] = [
        [{"name": "kb_search", "args": {"query": "printer driver floor 3"}}]
    ]
    endpoint.save()
    turn = chat_services.turn_create(
        conversation=chat_services.conversation_create(owner=alice),
        user_text="Which driver do the printers on floor 3 need?",
    )

    outcome = async_to_sync(turn_run)(turn_id=turn.pk, emit=_quiet, as_of={collection.pk: then})

    assert outcome.status == "done"
    search = Span.objects.get(turn_id=turn.pk, kind="tool", name="kb_search")
    assert "blue driver" in search.attributes["result"]
    assert "green driver" not in search.attributes["result"]
    cited = Citation.objects.select_related("chunk").filter(turn=turn, cited=True)
    assert [c.chunk.text for c in cited] == [OLD]
    assert Turn.objects.get(pk=turn.pk).kb_versions == {str(collection.pk): then}
