"""The per-example checks of chat fine-tuning data: OpenAI's cookbook checks, and stricter ones.

Each check yields an `Issue` whose kind is an error (the file must not be uploaded) or a
warning (it may train badly). File-level checks (token limit, duplicates, too few
examples) live in `validate`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ERRORS = {
    "invalid_utf8": "line is not valid UTF-8",
    "invalid_json": "line is not valid JSON",
    "data_type": "line is not a JSON object",
    "missing_messages_list": "no non-empty 'messages' list",
    "message_missing_key": "a message lacks 'role' or 'content'",
    "message_unrecognized_key": "a message has a key fine-tuning does not know",
    "unrecognized_role": "a message has an unknown role",
    "missing_content": "a message's content is empty or not text",
    "example_missing_assistant_message": "no assistant message to learn from",
    "invalid_weight": "weight is only for assistant messages, and only 0 or 1",
    "invalid_tool_calls": "tools, tool_calls or tool messages are malformed",
    "too_few_examples": "fewer than 10 examples: fine-tuning needs at least 10",
}
WARNINGS = {
    "missing_system_message": "no system message",
    "missing_user_message": "no user message",
    "over_token_limit": "over the token limit: the example will be truncated",
    "duplicate_example": "same as an earlier example",
    "unusual_role_order": "roles in an unusual order",
}
ROLES = frozenset({"system", "user", "assistant", "tool", "function"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call"})
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Issue:
    kind: str
    detail: str


def check_example(data: Any) -> list[Issue]:
    """Every error and per-example warning of one parsed line."""
    if not isinstance(data, dict):
        return [Issue("data_type", f"expected a JSON object, got {_type(data)}")]
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return [Issue("missing_messages_list", "expected a non-empty 'messages' list")]
    issues = [issue for number, message in enumerate(messages, 1) for issue in _check_message(number, message)]
    issues += _check_tools(data, messages)
    dicts = [message for message in messages if isinstance(message, dict)]
    roles = [message.get("role") for message in dicts]
    assistants = [message for message in dicts if message.get("role") == "assistant"]
    if not assistants:
        issues.append(Issue("example_missing_assistant_message", "no assistant message"))
    elif all(message.get("weight") == 0 for message in assistants):
        issues.append(Issue("example_missing_assistant_message", "every assistant message has weight 0"))
    if "system" not in roles:
        issues.append(Issue("missing_system_message", "no system message"))
    if "user" not in roles:
        issues.append(Issue("missing_user_message", "no user message"))
    if order := _unusual_order(roles):
        issues.append(Issue("unusual_role_order", order))
    return issues


def _type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _check_message(number: int, message: Any) -> list[Issue]:
    where = f"message {number}"
    if not isinstance(message, dict):
        return [Issue("message_missing_key", f"{where} is {_type(message)}, not an object with 'role' and 'content'")]
    issues = []
    role = message.get("role")
    calls_tool = role == "assistant" and ("tool_calls" in message or "function_call" in message)
    if "role" not in message:
        issues.append(Issue("message_missing_key", f"{where} has no 'role'"))
    elif role not in ROLES:
        issues.append(Issue("unrecognized_role", f"{where} has role {role!r}"))
    if "content" not in message and not calls_tool:
        issues.append(Issue("message_missing_key", f"{where} has no 'content'"))
    unknown = sorted(set(message) - MESSAGE_KEYS)
    if unknown:
        issues.append(Issue("message_unrecognized_key", f"{where} has {', '.join(map(repr, unknown))}"))
    content = message.get("content")
    if "content" in message and not (calls_tool and content is None):
        if not isinstance(content, str):
            issues.append(Issue("missing_content", f"{where} content is {_type(content)}, not text"))
        elif not content.strip():
            issues.append(Issue("missing_content", f"{where} content is empty"))
    if "weight" in message:
        weight = message["weight"]
        if role != "assistant":
            issues.append(Issue("invalid_weight", f"{where} is {role!r}: only assistant messages take a weight"))
        elif isinstance(weight, bool) or weight not in (0, 1):
            issues.append(Issue("invalid_weight", f"{where} weight is {json.dumps(weight)}: expected 0 or 1"))
    return issues


def _check_tools(data: dict[str, Any], messages: list[Any]) -> list[Issue]:
    """`tools` declarations, assistant `tool_calls`, and `tool` messages answering those calls."""
    issues: list[Issue] = []
    declared: set[str] | None = None
    if "tools" in data:
        declared = set()
        tools = data["tools"]
        if not isinstance(tools, list) or not tools:
            issues.append(Issue("invalid_tool_calls", "'tools' must be a non-empty list"))
            tools = []
        for number, tool in enumerate(tools, 1):
            name = _tool_name(tool)
            if name is None:
                issues.append(Issue("invalid_tool_calls", f"tools[{number}] is not a function with a valid name"))
            else:
                declared.add(name)
    open_calls: set[str] = set()
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            continue
        where, role = f"message {number}", message.get("role")
        if "tool_calls" in message:
            if role != "assistant":
                issues.append(
                    Issue("invalid_tool_calls", f"{where} is {role!r}: only assistant messages make tool calls")
                )
            else:
                issues += [
                    Issue("invalid_tool_calls", f"{where}: {p}") for p in _call_problems(message, declared, open_calls)
                ]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                issues.append(
                    Issue("invalid_tool_calls", f"{where} answers no earlier tool call (tool_call_id {call_id!r})")
                )
            else:
                open_calls.discard(call_id)
        elif "tool_call_id" in message:
            issues.append(Issue("invalid_tool_calls", f"{where} is {role!r}: only tool messages have a tool_call_id"))
    return issues


def _tool_name(tool: Any) -> str | None:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        return None
    parameters = function.get("parameters", {})  # type: ignore[union-attr]
    return name if isinstance(parameters, dict) else None


def _call_problems(message: dict[str, Any], declared: set[str] | None, open_calls: set[str]) -> list[str]:
    calls = message["tool_calls"]
    if not isinstance(calls, list) or not calls:
        return ["'tool_calls' must be a non-empty list"]
    problems = []
    for number, call in enumerate(calls, 1):
        function = call.get("function") if isinstance(call, dict) else None
        call_id = call.get("id") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(call_id, str) or not call_id or call.get("type") != "function" or not isinstance(name, str):
            problems.append(f"tool call {number} needs an 'id', type 'function' and a function 'name'")
            continue
        if declared is not None and name not in declared:
            problems.append(f"tool call {number} calls {name!r}, which 'tools' does not declare")
        if not _json_object(function.get("arguments")):  # type: ignore[union-attr]
            problems.append(f"tool call {number} arguments are not a JSON object string")
        if call_id in open_calls:
            problems.append(f"tool call {number} repeats the id {call_id!r}")
        open_calls.add(call_id)
    return problems


def _json_object(text: Any) -> bool:
    try:
        return isinstance(text, str) and isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _unusual_order(roles: list[Any]) -> str | None:
    """System turns only first, the conversation opens with the user, no two user or assistant
    turns in a row, and it ends with the assistant."""
    started = False
    for number, (previous, role) in enumerate(zip([None, *roles], roles, strict=False), 1):
        if role == "system" and started:
            return f"message {number} is a system message after the conversation started"
        if role != "system" and not started:
            started = True
            if role != "user":
                return f"message {number} opens the conversation as {role!r}, not 'user'"
        if role == previous and role in ("user", "assistant"):
            return f"messages {number - 1} and {number} are both {role!r}"
    if roles and roles[-1] != "assistant":
        return f"the last message is {roles[-1]!r}, not 'assistant'"
    return None
