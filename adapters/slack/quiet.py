"""No user text in Slack libraries' logs: bolt and slack_sdk print request and response bodies in places.

Where they do (bolt-python and python-slack-sdk, the versions pinned here):
* bolt: "Invalid request signature detected (signature: ..., body: ...)" at INFO; "A global middleware
  ... without providing a response for the request ({body})" at WARNING; "Unhandled request ({...})"
  at WARNING (a filtered body, which keeps a dialog submission's or a block suggestion's typed value);
  "Responding with status: 200 body: ..." and "Skipped self event: {event}" at DEBUG;
* slack_sdk Web API client: "Sending a request - url: ..., params/data/json: {...}" and "Received the
  following response - status: ..., body: {...}" at DEBUG (a posted answer, a fetched thread);
* slack_sdk webhook client (bolt's `respond`): "Sending a request - url: ..., body: ..." at DEBUG;
* slack_sdk Socket Mode client: "Received message (type: ..., data: '...')" and "Sending a message:
  {...}" at DEBUG (every envelope, with the user's text).

`NoPayloads` keeps each such line up to where the payload starts and drops the rest, at every level.
Logger filters apply only to records made on that very logger, so `install()` puts it on every bolt and
slack_sdk logger there is, and returns the logger to give bolt as its base logger: bolt copies a base
logger's filters onto each logger it makes (middleware, listeners, the Socket Mode handler's client).
"""

from __future__ import annotations

import logging
import re

LIBRARIES = ("slack_bolt", "slack_sdk")
ELIDED = "[payload not logged]"
# where a payload starts in those lines: "params:", "data:", "json:", "body:", "message:", "signature:",
# "payload:", "extra:", or the opening of a body printed whole
PAYLOAD = re.compile(
    r"\b(?:params|data|json|body|message|payload|signature|extra)\s*:"
    r"|for the request \(|Unhandled request \(|Skipped self event",
    re.IGNORECASE,
)


class NoPayloads(logging.Filter):
    """Cuts a library's log line where a request or response payload starts."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: keep nothing of its arguments
            message = str(record.msg)
        match = PAYLOAD.search(message)
        if match is not None:
            record.msg, record.args = f"{message[: match.end()].rstrip(' ({:')} {ELIDED}", None
        return True


_FILTER = NoPayloads()


def _guard(logger: logging.Logger) -> None:
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def install() -> logging.Logger:
    """Put `NoPayloads` on every bolt and slack_sdk logger made so far; the base logger for bolt."""
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in LIBRARIES:
            _guard(logging.getLogger(name))
    base = logging.getLogger("slack_bolt.AsyncApp")
    _guard(base)
    return base


__all__ = ["NoPayloads", "install"]
