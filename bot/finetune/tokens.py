"""Token counts with OpenAI's encodings, offline.

`toktok-rs` compiles the `cl100k_base` and `o200k_base` vocabularies into its wheel, so
nothing is downloaded at run time (tiktoken fetches its files on first use). Its counts
equal tiktoken's: checked against tiktoken, loaded with OpenAI's published encoding files,
on all counsel-chat text plus random strings (about a million tokens in each encoding);
the tests pin reference counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import toktok

TOKENS_PER_MESSAGE = 3  # <|start|>{role}<|message|> ... <|end|>
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>


def encoding_for(model: str) -> str:
    """`cl100k_base` for gpt-3.5 and gpt-4; `o200k_base` for gpt-4o, gpt-4.1 and newer (and unknown models)."""
    base = model.removeprefix("ft:").split(":")[0]
    newer = ("gpt-4o", "gpt-4.1", "gpt-4.5", "chatgpt-4o")
    if base.startswith(("gpt-3.5", "gpt-4")) and not base.startswith(newer):
        return "cl100k_base"
    return "o200k_base"


def count(texts: Iterable[str], encoding: str) -> list[int]:
    return toktok.batch_count(list(texts), encoding, threads=1)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def message_tokens(messages: list[dict[str, Any]], encoding: str) -> tuple[int, int]:
    """(total, assistant) tokens of one example by the OpenAI cookbook's rule.

    Total: 3 per message, the tokens of each value (non-text values such as tool calls
    as JSON; the training-only `weight` is not sent to the model), 1 more for a `name`,
    and 3 for the reply priming. Assistant: the tokens of the assistant messages' content
    and tool calls.
    """
    values: list[str] = []
    extra = REPLY_PRIMING
    assistant: list[str] = []
    for message in messages:
        extra += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "weight" or value is None:
                continue
            values.append(_text(value))
            extra += TOKENS_PER_NAME if key == "name" else 0
        if message.get("role") == "assistant":
            assistant += [_text(message[key]) for key in ("content", "tool_calls") if message.get(key) is not None]
    counts = count(values + assistant, encoding)
    return sum(counts[: len(values)]) + extra, sum(counts[len(values) :])
