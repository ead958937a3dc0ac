"""The demo knowledge base that `make run` seeds ingests cleanly and answers the obvious questions."""

from __future__ import annotations

import pytest

from chatbot.knowledge.demo import demo_knowledge_ensure
from chatbot.knowledge.ingest import source_ingest
from chatbot.models import Document, Source
from chatbot.retrieval.search import hybrid_search

pytestmark = pytest.mark.django_db


def test_the_demo_knowledge_base_ingests_and_is_shared_with_every_role(alice, rita) -> None:
    collections = demo_knowledge_ensure()
    assert [c.name for c in collections] == ["Support handbook", "Past tickets"]
    assert demo_knowledge_ensure() == []  # a second start changes nothing
    for source in Source.objects.all():
        assert source_ingest(source_id=source.pk).status == Source.Status.DONE
    assert Document.objects.filter(collection__name="Support handbook").count() == 5
    tickets = Document.objects.filter(collection__name="Past tickets")
    assert tickets.count() == 4 and tickets.filter(external_id="T-1041").exists()
    assert not Document.objects.filter(status=Document.Status.ERROR).exists()

    for user in (alice, rita):
        hits = hybrid_search(user=user, query="How long is the password reset link valid?").hits
        assert hits[0].title == "Resetting a customer's password"
        assert hits[0].similarity is not None and hits[0].similarity > 0.3
    seen = hybrid_search(user=alice, query="reset e-mail never arrives spam filter", k=10).hits
    assert "T-1041" in [h.external_id for h in seen]
