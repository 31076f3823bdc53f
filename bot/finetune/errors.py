"""The error every finetune step raises for input it cannot use (the command exits 2)."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input: a file, a line in it, or a command-line value. Printed as `FILE:LINE: message`."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None) -> None:
        where = f"{path}:{line}: " if path is not None and line is not None else f"{path}: " if path else ""
        super().__init__(where + message)
