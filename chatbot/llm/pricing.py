from __future__ import annotations

from decimal import Decimal

from chatbot.llm.types import EndpointConfig, Usage

MILLION = Decimal(1_000_000)


def usage_cost(endpoint: EndpointConfig, usage: Usage) -> Decimal:
    """Cost in the catalogue's currency from per-million-token prices."""
    return (
        Decimal(usage.input_tokens) * endpoint.price_input_per_mtok
        + Decimal(usage.output_tokens) * endpoint.price_output_per_mtok
    ) / MILLION


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about four characters a token) for servers that give no counts."""
    return max(1, (len(text) + 3) // 4) if text else 0
