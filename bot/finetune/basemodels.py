"""What the fine-tuning estimate needs to know about each base model."""

from __future__ import annotations

from dataclasses import dataclass

from bot.finetune.errors import InputError
from bot.finetune.tokens import encoding_for

DEFAULT_BASE_MODEL = "gpt-4o-mini-2024-07-18"


@dataclass(frozen=True)
class BaseModel:
    name: str
    encoding: str
    token_limit: int  # tokens per training example
    training_price: float | None  # USD per million training tokens


# Training-example context lengths and training prices from OpenAI's fine-tuning guide and price list.
KNOWN: dict[str, tuple[int, float]] = {
    "gpt-4o-mini-2024-07-18": (65_536, 3.00),
    "gpt-4o-2024-08-06": (65_536, 25.00),
    "gpt-4.1-2025-04-14": (65_536, 25.00),
    "gpt-4.1-mini-2025-04-14": (65_536, 5.00),
    "gpt-4.1-nano-2025-04-14": (65_536, 1.50),
    "gpt-3.5-turbo-0125": (16_385, 8.00),
    "gpt-3.5-turbo-1106": (16_385, 8.00),
}
ALIASES = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
}


def base_model(name: str, max_tokens: int | None = None, price: float | None = None) -> BaseModel:
    """The model's encoding, token limit and price; `max_tokens` and `price` override the table.

    A fine-tuned model (`ft:BASE:...`) is looked up by its base. An unknown model needs `max_tokens`.
    """
    if price is not None and price < 0:
        raise InputError("--price-per-mtok must not be negative")
    base = name.removeprefix("ft:").split(":")[0]
    base = ALIASES.get(base, base)
    limit, known_price = KNOWN.get(base, (None, None))
    limit = max_tokens or limit
    if limit is None:
        known = ", ".join(sorted(KNOWN))
        raise InputError(f"unknown base model {name!r}: pass --max-tokens for its limit (known: {known})")
    return BaseModel(name, encoding_for(base), limit, price if price is not None else known_price)
