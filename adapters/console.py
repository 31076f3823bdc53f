"""The terminal adapter: `advisor chat`. One conversation per user, kept across runs.

On a terminal it prompts and streams; with piped input it reads one message a line.
Commands: /sources, /forget, /help, /quit.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, TextIO

from adapters.render import SHOWN_NOTICES
from bot.models import Citation, Citations, Final, IncomingMessage, Notice, TextDelta

HELP = "Commands: /sources (where the last answer came from), /forget (start over), /quit."


def format_sources(citations: tuple[Citation, ...]) -> str:
    lines = []
    for item in citations:
        where = f", {item.location}" if item.location else ""
        lines.append(f"  [{item.number}] {item.title}{where} ({item.source})")
    return "\n".join(lines)


class ConsoleChat:
    """Feeds lines to the engine and prints the streamed replies."""

    def __init__(self, engine: Any, out: TextIO | None = None, user: str | None = None, conversation: str = "default") -> None:
        self.engine = engine
        self.out = out or sys.stdout
        self.user = user or getpass.getuser()
        self.conversation = conversation
        self.last_sources: tuple[Citation, ...] = ()

    def _message(self, text: str) -> IncomingMessage:
        return IncomingMessage("console", "local", self.user, self.conversation, self.user, text, time.time())

    @property
    def key(self) -> str:
        return str(self._message("").conversation)

    def _print(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    async def handle(self, line: str) -> bool:
        """Answer one line; False when the user asked to quit."""
        text = line.strip()
        if not text:
            return True
        command = text.lower()
        if command in {"/quit", "/exit"}:
            return False
        if command == "/help":
            self._print(HELP)
        elif command == "/forget":
            removed = await self.engine.forget(self.key)
            self.last_sources = ()
            self._print(f"Forgotten: this conversation starts over ({removed} messages deleted).")
        elif command == "/sources":
            self._print(format_sources(self.last_sources) if self.last_sources else "The last answer cited no sources.")
        elif command.startswith("/"):
            self._print(f"Unknown command {text.split()[0]}. {HELP}")
        else:
            await self._answer(text)
        return True

    async def _answer(self, text: str) -> None:
        self._print("advisor> ", end="")
        streamed = False
        async for event in self.engine.answer(self._message(text)):
            if isinstance(event, TextDelta):
                self._print(event.text, end="")
                streamed = True
            elif isinstance(event, Notice) and event.kind in SHOWN_NOTICES:
                self._print(f"\n{event.text}\n", end="")
            elif isinstance(event, Citations):
                self.last_sources = event.items
            elif isinstance(event, Final):
                if not streamed:
                    self._print(event.text, end="")
                self._print()
                if event.citations:
                    self._print("Sources:\n" + format_sources(event.citations))
                self._print()

    async def run(self, lines: AsyncIterator[str] | None = None) -> None:
        interactive = lines is None and sys.stdin.isatty()
        if interactive:
            self._print(f"advisor ({self.engine.mode} mode). {HELP}")
        async for line in lines or _stdin_lines(interactive):
            if not await self.handle(line):
                break


async def _stdin_lines(interactive: bool) -> AsyncIterator[str]:
    while True:
        try:
            line = await asyncio.to_thread(input, "you> ") if interactive else await asyncio.to_thread(sys.stdin.readline)
        except EOFError:
            return
        if not interactive and line == "":
            return
        yield line
