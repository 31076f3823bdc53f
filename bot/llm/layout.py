"""Chat requests that any chat template accepts.

Strict templates (Gemma, Mistral, many llama.cpp models) refuse anything but one optional
system message followed by user and assistant turns that alternate, starting and ending with
the user (HTTP 400 "Conversation roles must alternate"). `strict_roles` merges every system
message into the first, joins consecutive turns of one role (a failed turn leaves two user
messages in a row), and drops assistant turns before the first user turn.
"""

from __future__ import annotations

from typing import Literal

Layout = Literal["strict", "multi_system"]


def strict_roles(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    systems = [m["content"] for m in messages if m.get("role") == "system" and m.get("content")]
    turns: list[dict[str, str]] = []
    for message in messages:
        role = message.get("role")
        if role == "system":
            continue
        if not turns and role != "user":
            continue  # a template must start with the user
        if turns and turns[-1]["role"] == role:
            turns[-1] = {"role": role, "content": f"{turns[-1]['content']}\n\n{message['content']}"}
        else:
            turns.append({"role": str(role), "content": message["content"]})
    while turns and turns[-1]["role"] != "user":
        turns.pop()
    return ([{"role": "system", "content": "\n\n".join(systems)}] if systems else []) + turns


def laid_out(messages: list[dict[str, str]], layout: Layout) -> list[dict[str, str]]:
    return strict_roles(messages) if layout == "strict" else messages
