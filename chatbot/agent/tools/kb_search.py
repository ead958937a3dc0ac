"""kb_search: the hybrid retrieval over the knowledge base, as the person asking."""

from __future__ import annotations

from typing import Any, ClassVar

from chatbot.agent.grounding import ground, source_block
from chatbot.agent.tools.base import Tool, ToolContext, ToolFailed, ToolResult
from chatbot.telemetry.tracing import Tracer


class KbSearch(Tool):
    name = "kb_search"
    label = "Knowledge-base search"
    description = (
        "Search the company's knowledge base (handbook, past tickets, documents) for passages "
        "that answer a question about how things work or what to do."
    )
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 2,
                "maxLength": 500,
                "description": "What to search for, in plain words.",
            }
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    default_timeout_s = 10.0
    # The query is the question as asked: what a small model copies from here searches well.
    example = (
        "How do I reset a customer's password?",
        {"query": "How do I reset a customer's password?"},
    )

    def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        query = str(arguments["query"]).strip()
        if not query:
            raise ToolFailed("The search needs some words to look for.")
        grounding = ground(
            user=lambda: context.user,
            question=query,
            tracer=context.tracer or Tracer(),
            as_of=context.kb_as_of,
            config=context.config,
        )
        hits = grounding.hits
        if not hits:
            return ToolResult(
                summary="nothing relevant found",
                content="No passage in the knowledge base answers this.",
                data={"reason": grounding.reason, "no_answer": grounding.no_answer},
            )
        titles = sorted({h.title or h.external_id for h in hits})
        return ToolResult(
            summary=f"{len(hits)} passage{'s' if len(hits) != 1 else ''}: {', '.join(titles)}"[
                :200
            ],
            content="\n\n".join(source_block(n, h) for n, h in enumerate(hits, start=1)),
            data={"reason": grounding.reason, "kb_versions": grounding.kb_versions},
            hits=list(hits),
        )
