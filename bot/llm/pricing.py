"""What a model call cost, from per-million-token prices (settings override the table)."""

from __future__ import annotations

from urllib.parse import urlparse

from bot.models import Usage
from config.settings import Settings

# USD per million tokens (input, output), from OpenAI's public price list.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


def is_openai(base_url: str | None) -> bool:
    """Whether calls go to OpenAI itself (no base URL, or api.openai.com)."""
    return not base_url or (urlparse(base_url).hostname or "").lower() == "api.openai.com"


def prices(model: str, settings: Settings) -> tuple[float, float] | None:
    """Configured prices, else OpenAI's list price, but only when the calls go to OpenAI: a local
    server (llama.cpp, Ollama, vLLM) answering under an OpenAI model name costs nothing we know."""
    configured = (settings.openai.price_input_per_mtok, settings.openai.price_output_per_mtok)
    if configured[0] is not None and configured[1] is not None:
        return configured[0], configured[1]
    if not is_openai(settings.openai.base_url):
        return None
    return KNOWN_PRICES.get(model)  # fine-tuned models bill differently: configure their prices


def cost_usd(model: str, usage: Usage, settings: Settings) -> float | None:
    """None when the model's price is unknown (a local server, an unlisted model)."""
    price = prices(model, settings)
    if price is None:
        return None
    return round((usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1_000_000, 8)
