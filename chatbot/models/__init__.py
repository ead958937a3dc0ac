"""The one data model of the product, one file per area."""

from chatbot.models.accounts import ApiKey, Capability
from chatbot.models.catalogue import ModelEndpoint
from chatbot.models.chat import Conversation, Feedback, Turn
from chatbot.models.knowledge import Chunk, Collection, Document, Source
from chatbot.models.tracing import Span

__all__ = [
    "ApiKey",
    "Capability",
    "Chunk",
    "Collection",
    "Conversation",
    "Document",
    "Feedback",
    "ModelEndpoint",
    "Source",
    "Span",
    "Turn",
]
