"""Setting one variable in a `.env` file without touching its other lines."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


def set_env_value(path: Path, name: str, value: str) -> None:
    """Write `NAME=value`: replace every line that sets NAME (in place), or append one; keep the rest.

    The file is replaced atomically, so a crash never leaves half a settings file.
    """
    sets_name = re.compile(rf"\s*(?:export\s+)?{re.escape(name)}\s*=", re.IGNORECASE)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    new = f"{name}={value}"
    updated = [new if sets_name.match(line) else line for line in lines]
    if new not in updated:
        updated.append(new)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write("\n".join(updated) + "\n")
    if path.exists():
        os.chmod(temporary, path.stat().st_mode & 0o777)
    os.replace(temporary, path)
