"""Per-channel settings: what the engine's look-up costs a message (bot/state/channel_settings.py).

    python bench/channel_settings.py [--messages 2000]

The engine reads a message's channel and workspace settings on every message through ChannelView
(each scope cached for 3 s). Prints the time per message when every message comes from a new
channel (two SQLite reads each) and when the scope is cached, beside a baseline measured in the
same run: an empty `await` of the same loop, so the figures are this machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.state.channel_settings import ChannelView  # noqa: E402
from bot.state.channel_settings_sqlite import SqliteChannelSettings  # noqa: E402


async def nothing() -> None:
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    n = parser.parse_args().messages
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteChannelSettings(Path(folder) / "channels.sqlite3")
        view = ChannelView(store)
        started = time.perf_counter()
        for _ in range(n):
            await nothing()
        baseline = (time.perf_counter() - started) / n * 1000
        started = time.perf_counter()
        for i in range(n):
            await view.for_message("slack", "T1", f"C{i}")
        uncached = (time.perf_counter() - started) / n * 1000
        started = time.perf_counter()
        for _ in range(n):
            await view.for_message("slack", "T1", "C1")
        cached = (time.perf_counter() - started) / n * 1000
        await store.close()
    print(f"per message, {n} messages: empty await {baseline:.4f} ms, settings of a new channel "
          f"{uncached:.3f} ms, cached {cached:.4f} ms ({cached / baseline:.0f}x the empty await)")


if __name__ == "__main__":
    asyncio.run(main())
