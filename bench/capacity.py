"""Capacity benchmark: Slack HTTP throughput on 1, 2 and 4 processes, time to first token, the
Discord gateway path on one process, and memory per conversation in flight.

    python bench/capacity.py [--quick] [--json]

Everything runs on loopback with the fake model. The fakes (tests/harness: FakeSlack, FakeOpenAI,
FakeDiscord) and the load generator run in their own process (bench/capacity_helpers.py); the
Slack path is N real `python -m bot.cli run web --port P --reuse-port` processes sharing one
port and one real redis-server; the Discord path is the real discord.py client with the real
DiscordAdapter in this process. Figures are compared with baselines measured in the same run:
the fake model streamed directly with the openai client, and one Slack process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
import openai

from bench.capacity_helpers import ANSWER_MARK, cpu_seconds, listens_on, machine_busy, rss_kib
from retrieval.evaluate import percentile
from tests.harness.loopback import free_port
from tests.harness.processes import env_without_settings, terminate
from tests.harness.redis_server import RedisServer

PYTHON = sys.executable
ANSWER = (
    "An emergency fund should cover three to six months of essential expenses [1]. Keep it in an "
    "easy-access savings account, apart from everyday spending, and top it up first after you use it. "
    "Start small: one month of costs is a good first goal, then build towards the full amount [1]."
)
assert ANSWER_MARK in ANSWER
FAST = {"answer": ANSWER, "chunk_chars": 12, "chunk_delay": 0.004}  # throughput runs
TTFT = {"answer": ANSWER, "chunk_chars": 10, "chunk_delay": 0.04}  # streams for longer than Slack's edit interval
SLOW = {"answer": ANSWER, "chunk_chars": 8, "chunk_delay": 0.5}  # memory: conversations overlap for ~20 s


def chunks(config: dict[str, Any]) -> int:
    return -(-len(config["answer"]) // config["chunk_chars"])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    return percentile(values, p) if values else float("nan")


class Control:
    """The fakes process's control API."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def post(self, path: str, **body: Any) -> dict[str, Any]:
        async with self.session.post(self.base + path, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def get(self, path: str, **query: str) -> dict[str, Any]:
        async with self.session.get(self.base + path, params=query) as response:
            response.raise_for_status()
            return await response.json()


class CpuMeter:
    """CPU seconds used by groups of processes, and by the whole machine, between start and stop."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.before = {pid: cpu_seconds(pid) for pids in groups.values() for pid in pids}
        self.machine = machine_busy()

    def stop(self, messages: int) -> dict[str, Any]:
        busy, total = machine_busy()
        used = {name: sum(cpu_seconds(pid) - self.before[pid] for pid in pids) for name, pids in self.groups.items()}
        span = max(1e-9, total - self.machine[1])
        return {
            "machine_busy_pct": round(100 * (busy - self.machine[0]) / span, 1),
            "other_work_pct": round(100 * max(0.0, busy - self.machine[0] - sum(used.values())) / span, 1),
            "cpu_ms_per_msg": {name: round(1000 * seconds / max(1, messages), 1) for name, seconds in used.items()},
        }


# ----- the model alone -------------------------------------------------------------------------------


async def model_alone(client: openai.AsyncOpenAI) -> tuple[float, float]:
    """(time to the first content token, time to the end) of one streamed answer, read directly."""
    started = time.perf_counter()
    first = None
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


# ----- Slack: the web processes --------------------------------------------------------------------


class WebProcesses:
    """N `advisor run web --reuse-port` processes on one port, each with its own copy of the index."""

    def __init__(self, count: int, port: int, template: Path, workdir: Path, env: dict[str, str]) -> None:
        self.port = port
        self.logs: list[Path] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        for index in range(count):
            data = workdir / f"web{count}-{index}"
            shutil.copytree(template, data)
            self.logs.append(data / "advisor.log")
            with open(self.logs[-1], "wb") as out:
                self.processes.append(subprocess.Popen(
                    [PYTHON, "-m", "bot.cli", "run", "web", "--port", str(port), "--reuse-port"],
                    cwd=data, stdout=out, stderr=subprocess.STDOUT,
                    env={**env, "ADVISOR_DATA_DIR": str(data), "SLACK_BOT_TOKEN": f"xoxb-bench-{index}"},
                ))

    def wait_listening(self, timeout: float = 180) -> float:
        started = time.monotonic()
        while not all(listens_on(p.pid, self.port) for p in self.processes):
            for process, path in zip(self.processes, self.logs, strict=True):
                if process.poll() is not None:
                    raise RuntimeError(f"advisor process exited {process.returncode}: {path.read_text()[-3000:]}")
            if time.monotonic() - started > timeout:
                raise RuntimeError("the advisor processes did not start listening in time")
            time.sleep(0.1)
        return time.monotonic() - started

    def rss(self) -> list[int]:
        return [rss_kib(p.pid) for p in self.processes]

    def stop(self) -> list[str]:
        """SIGTERM (graceful drain), then the log lines that report a problem."""
        for process in self.processes:
            terminate(process)
        problems = []
        for index, (process, path) in enumerate(zip(self.processes, self.logs, strict=True)):
            if process.returncode not in (0, -15):
                problems.append(f"process {index} exited with {process.returncode}")
            for line in path.read_text(errors="replace").splitlines():
                if any(word in line for word in ("ERROR", "CRITICAL", "Traceback", "Exception")):
                    problems.append(f"process {index}: {line.strip()[:300]}")
        return problems


def summarise(result: dict[str, Any], before: dict[str, int], answered_by: bool = True) -> dict[str, Any]:
    """Throughput, latency, errors and duplicates from the fakes' per-message records."""
    records = result["records"]
    finals = [r for r in records if r["final"]]
    first_post = min(r["post"] for r in records)
    last_final = max((r["final"] for r in finals), default=first_post)
    latency = [r["final"] - r["post"] for r in finals]
    first_reply = [r["first_post"] - r["post"] for r in records if r["first_post"]]
    errors = {
        "not acknowledged with 200": sum(1 for r in records if r.get("ack_status") not in (None, 200)),
        "no final answer": sum(1 for r in records if not r["final"]),
        "'something went wrong' replies": sum(r["sorry"] for r in records),
        "final without the model's answer": sum(1 for r in finals if not r["final_ok"]),
    }
    api = {k: v - before.get(k, 0) for k, v in result["api_errors"].items() if v - before.get(k, 0)}
    summary = {
        "messages": len(records),
        "answered": len(finals),
        "seconds": round(last_final - first_post, 3),
        "msgs_per_s": round(len(finals) / (last_final - first_post), 2) if last_final > first_post else 0.0,
        "latency_p50_s": round(pct(latency, 50), 4),
        "latency_p95_s": round(pct(latency, 95), 4),
        "first_reply_p50_s": round(pct(first_reply, 50), 4),
        "first_reply_p95_s": round(pct(first_reply, 95), 4),
        "errors": sum(errors.values()) + sum(api.values()),
        "error_detail": {**{k: v for k, v in errors.items() if v}, **api},
        "duplicate_first_posts": sum(max(0, r["posts"] - 1) for r in records),
        "duplicate_finals": sum(max(0, r["finals"] - 1) for r in records),
        "redelivered": sum(1 for r in records if r.get("redelivered")),
    }
    if answered_by:
        summary["answered_by_process"] = dict(sorted(Counter(r["process"] for r in finals).items()))
    return summary


async def slack_section(args: argparse.Namespace, control: Control, urls: dict[str, str], redis: RedisServer,
                        template: Path, workdir: Path, client: openai.AsyncOpenAI) -> dict[str, Any]:
    secret = "bench-signing-secret-" + os.urandom(6).hex()
    env = env_without_settings(
        REDIS_URL=redis.url, SLACK_SIGNING_SECRET=secret, ADVISOR_SLACK_API_URL=urls["slack"],
        OPENAI_BASE_URL=urls["openai"], OPENAI_API_KEY="sk-bench",
        ADVISOR_LIMITS_USER_PER_MINUTE="1000000", ADVISOR_LIMITS_CONVERSATION_PER_MINUTE="1000000",
        ADVISOR_LOG_LEVEL="WARNING",
    )
    out: dict[str, Any] = {"throughput": {}, "ttft": None, "memory": None}
    api_before: dict[str, int] = {}
    for count in args.processes:
        port = free_port()
        url = f"http://127.0.0.1:{port}/slack/events"
        log(f"slack: starting {count} web process(es) on port {port}")
        web = WebProcesses(count, port, template, workdir, env)
        try:
            startup = web.wait_listening()
            log(f"slack: {count} process(es) listening after {startup:.1f} s; warming up")
            await control.post("/config", **FAST)
            warm = await control.post("/slack/run", url=url, secret=secret, count=8 * count, concurrency=2 * count,
                                      tag=f"W{count}", timeout=60)
            api_before = warm["api_errors"]
            if count == 1:
                out["ttft"] = await ttft_section(args, control, url, secret, client)
                api_before = (await control.post("/slack/run", url=url, secret=secret, count=1, concurrency=1,
                                                 tag="WT", timeout=60))["api_errors"]
                out["memory"] = await memory_section(args, control, url, secret, web, redis)
                await control.post("/config", **FAST)
                api_before = (await control.post("/slack/run", url=url, secret=secret, count=1, concurrency=1,
                                                 tag="WM", timeout=60))["api_errors"]
            log(f"slack: {args.events} events, {args.concurrency} in flight, on {count} process(es)")
            meter = CpuMeter({"advisor": [p.pid for p in web.processes], "fakes+load": [args.fakes_pid],
                              "redis": [redis.process.pid], "bench": [os.getpid()]})
            result = await control.post("/slack/run", url=url, secret=secret, count=args.events,
                                        concurrency=args.concurrency, tag=f"N{count}", redeliver_every=10, timeout=120)
            summary = summarise(result, api_before)
            summary.update(meter.stop(len(result["records"])))
            summary["startup_s"] = round(startup, 1)
            summary["rss_after_mib"] = [round(kib / 1024) for kib in web.rss()]
            log(f"slack: {summary['msgs_per_s']} msgs/s on {count} process(es)")
        finally:
            problems = web.stop()
        summary["log_problems"] = problems
        out["throughput"][count] = summary
    return out


async def ttft_section(args: argparse.Namespace, control: Control, url: str, secret: str,
                       client: openai.AsyncOpenAI) -> dict[str, Any]:
    """One message at a time: the model's own first token vs the first answer text Slack shows."""
    log(f"ttft: {args.ttft_samples} samples at concurrency 1, interleaved with the model alone")
    await control.post("/config", **TTFT)
    await model_alone(client)
    alone_first, alone_total, rows = [], [], []
    for n in range(args.ttft_samples):
        first, total = await model_alone(client)
        alone_first.append(first)
        alone_total.append(total)
        result = await control.post("/slack/run", url=url, secret=secret, count=1, concurrency=1, tag=f"T{n:02d}",
                                    timeout=60)
        rows.extend(result["records"])

    def series(field: str, start: str = "post") -> list[float]:
        return [r[field] - r[start] for r in rows if r[field] and r[start]]

    def row(values: list[float]) -> list[float]:
        return [round(pct(values, 50) * 1000, 1), round(pct(values, 95) * 1000, 1)]

    advisor = series("streamed")
    from adapters.slack.app import UPDATE_INTERVAL

    return {
        "samples": len(rows),
        "streamed_updates_seen": len(advisor),
        "update_interval_s": UPDATE_INTERVAL,
        "model_ttft_ms": row(alone_first),
        "model_total_ms": row(alone_total),
        "post_to_ack_ms": row(series("ack")),
        "post_to_placeholder_ms": row(series("first_post")),
        "post_to_model_request_ms": row(series("model")),
        "post_to_first_streamed_text_ms": row(advisor),
        "post_to_final_ms": row(series("final")),
        "added_by_advisor_ms": [round((pct(advisor, p) - pct(alone_first, p)) * 1000, 1) for p in (50, 95)],
    }


async def memory_section(args: argparse.Namespace, control: Control, url: str, secret: str, web: WebProcesses,
                         redis: RedisServer) -> dict[str, Any]:
    """RSS of the one web process idle and with K conversations streaming at once; Redis after."""
    pid = web.processes[0].pid
    k = args.memory_conversations
    slow = {**SLOW, "chunk_delay": args.slow_delay}
    log(f"memory: {k} conversations at once on one process (the model streams each for ~{chunks(slow) * args.slow_delay:.0f} s)")
    await control.post("/config", **slow)
    await asyncio.sleep(1.0)
    idle = []
    for _ in range(6):
        idle.append(rss_kib(pid))
        await asyncio.sleep(0.2)
    redis_before, keys_before = redis.used_memory(), redis.key_bytes()
    burst = await control.post("/slack/burst", url=url, secret=secret, count=k, tag="M", timeout=60)
    busy, in_flight = [], []
    for _ in range(6):
        busy.append(rss_kib(pid))
        state = await control.get("/slack/in_flight", tag="M")
        in_flight.append(state["at_model"] - state["finished"])
        await asyncio.sleep(0.2)
    result = await control.post("/slack/burst/wait", tag="M", timeout=120)
    await asyncio.sleep(1.5)  # appendfsync everysec; and let the last writes land
    redis_after, keys_after = redis.used_memory(), redis.key_bytes()
    kinds: Counter[str] = Counter()
    kind_bytes: Counter[str] = Counter()
    for name, size in keys_after.items():
        if name not in keys_before:
            kind = ":".join(part for part in name.split(":")[1:3] if not part.startswith("CB"))
            kinds[kind] += 1
            kind_bytes[kind] += size
    summary = summarise(result, {}, answered_by=False)
    idle_kib, busy_kib = statistics.median(idle), statistics.median(busy)
    return {
        "conversations": k,
        "model_stream_s": round(chunks(slow) * args.slow_delay, 1),
        "reached_model_together": burst["at_model"],
        "finished_before_sampling": burst["finished"],
        "in_flight_while_sampling": min(in_flight),
        "rss_idle_mib": round(idle_kib / 1024, 1),
        "rss_busy_mib": round(busy_kib / 1024, 1),
        "kib_per_conversation": round((busy_kib - idle_kib) / max(1, min(in_flight)), 1),
        "redis_bytes_per_conversation": round((redis_after - redis_before) / k),
        "redis_keys_per_conversation": round(sum(kinds.values()) / k, 2),
        "redis_key_bytes_per_conversation": round(sum(kind_bytes.values()) / k),
        "redis_new_keys": {kind: [kinds[kind], round(kind_bytes[kind] / max(1, kinds[kind]))] for kind in sorted(kinds)},
        "answered": summary["answered"],
        "errors": summary["errors"],
        "error_detail": summary["error_detail"],
        "duplicates": summary["duplicate_first_posts"] + summary["duplicate_finals"],
    }


# ----- Discord --------------------------------------------------------------------------------------


async def discord_section(args: argparse.Namespace, control: Control, urls: dict[str, str], template: Path,
                          workdir: Path) -> dict[str, Any]:
    import discord
    import discord.gateway
    import discord.http
    import pytest
    import yarl

    from adapters.discord.gateway import EDIT_INTERVAL, DiscordAdapter, intents
    from bot.ops.logs import configure_logging
    from bot.wiring import build_services
    from config.settings import load_settings
    from tests.harness import discord_payloads as dp

    data = workdir / "discord"
    shutil.copytree(template, data)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env_without_settings(
        ADVISOR_DATA_DIR=str(data), DISCORD_TOKEN=dp.BOT_TOKEN, OPENAI_BASE_URL=urls["openai"],
        OPENAI_API_KEY="sk-bench", ADVISOR_LIMITS_USER_PER_MINUTE="1000000",
        ADVISOR_LIMITS_CONVERSATION_PER_MINUTE="1000000", ADVISOR_LOG_LEVEL="WARNING",
    ))
    settings = load_settings(None)
    configure_logging(settings.core.log_level, settings.core.log_format, secrets=settings.secret_values())
    services = await build_services(settings)
    log_path = data / "advisor.log"
    import logging

    handler = logging.FileHandler(log_path)
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(discord.http.Route, "BASE", urls["discord_api"])
            patch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(urls["discord_gateway"]))
            client = discord.Client(intents=intents(), guild_ready_timeout=0.05)
            adapter = DiscordAdapter(services.engine, services.admin, settings, client=client)
            task = asyncio.create_task(client.start(dp.BOT_TOKEN))
            try:
                await asyncio.wait_for(client.wait_until_ready(), 30)
                await control.post("/discord/wait_ready")
                await control.post("/config", **FAST)
                log("discord: warming up")
                warm = await control.post("/discord/run", count=10, concurrency=2, tag="DW", base=7_100_000_000)
                log(f"discord: {args.ttft_samples} DMs one at a time")
                alone = await control.post("/discord/run", count=args.ttft_samples, concurrency=1, tag="D1",
                                           base=7_150_000_000)
                log(f"discord: {args.discord_events} DMs, {args.concurrency} in flight, one process")
                meter = CpuMeter({"advisor (bench process)": [os.getpid()], "fakes+load": [args.fakes_pid]})
                result = await control.post("/discord/run", count=args.discord_events, concurrency=args.concurrency,
                                            tag="DR", base=7_200_000_000, timeout=120)
                cpu = meter.stop(len(result["records"]))
                rss = rss_kib(os.getpid())
            finally:
                await client.close()
                with contextlib.suppress(Exception):  # closing: the client's own end is not measured
                    await asyncio.wait_for(task, 10)
    finally:
        await services.close()
        logging.getLogger().removeHandler(handler)
        handler.close()
        os.environ.clear()
        os.environ.update(saved)
    summary = summarise(result, alone["api_errors"], answered_by=False)
    summary.update(cpu)
    one = summarise(alone, warm["api_errors"], answered_by=False)
    summary["one_at_a_time"] = {k: one[k] for k in ("messages", "answered", "errors", "first_reply_p50_s",
                                                    "first_reply_p95_s", "latency_p50_s", "latency_p95_s")}
    summary["edit_interval_s"] = EDIT_INTERVAL
    summary["bench_process_rss_mib"] = round(rss / 1024)
    summary["log_problems"] = [line.strip()[:300] for line in log_path.read_text(errors="replace").splitlines()
                               if any(w in line for w in ("ERROR", "CRITICAL", "Traceback", "Exception"))]
    summary["ignored_reasons"] = dict(Counter(adapter.ignored))
    return summary


# ----- report ---------------------------------------------------------------------------------------


def report(figures: dict[str, Any]) -> None:
    slack = figures["slack"]
    print(f"== advisor capacity on loopback: os.cpu_count() = {figures['cpu_count']}")
    print(f"fake model (throughput runs): a {len(ANSWER)}-char answer in {FAST['chunk_chars']}-char chunks "
          f"({chunks(FAST)} chunks) every {FAST['chunk_delay'] * 1000:.0f} ms; read directly: "
          f"first token p50 {figures['model_fast']['ttft_ms'][0]:.1f} ms, whole answer p50 "
          f"{figures['model_fast']['total_ms'][0]:.1f} ms")
    print("moderation: ON (the engine calls the fake's /v1/moderations for each message and answer); "
          "embeddings: the local int8 ONNX MiniLM in each process; rate limits raised to 1,000,000/min")

    print("\n== Slack HTTP path: N `advisor run web --reuse-port` processes on one port, state in one redis-server")
    print(f"{figures['events']} distinct app_mention events per N (own user, channel and thread each), "
          f"{figures['concurrency']} in flight (closed loop: the next event is POSTed when an answer is final), "
          "one new TCP connection per POST so the kernel spreads them; every 10th event is delivered twice "
          "(a Slack retry)")
    print("each process reads its own copy of the index (the embedded Qdrant Edge index opens in one process "
          "at a time), standing in for a shared Qdrant server")
    print(f"{'processes':<11}{'msgs/s':>8}{'vs N=1':>8}{'p50 s':>8}{'p95 s':>8}{'errors':>8}{'dupes':>7}"
          f"{'CPU busy':>10}{'(others)':>10}  {'answers per process':<22}{'RSS MiB each'}")
    base = slack["throughput"][min(slack["throughput"])]["msgs_per_s"] or 1
    for count, row in slack["throughput"].items():
        dupes = row["duplicate_first_posts"] + row["duplicate_finals"]
        share = "/".join(str(v) for v in row["answered_by_process"].values())
        print(f"{count:<11}{row['msgs_per_s']:>8.1f}{row['msgs_per_s'] / base:>7.2f}x{row['latency_p50_s']:>8.2f}"
              f"{row['latency_p95_s']:>8.2f}{row['errors']:>8}{dupes:>7}{row['machine_busy_pct']:>9.0f}%{row['other_work_pct']:>9.0f}%  {share:<22}"
              f"{'/'.join(str(v) for v in row['rss_after_mib'])}")
    one = slack["throughput"][min(slack["throughput"])]
    cores = one["cpu_ms_per_msg"]["advisor"] * one["msgs_per_s"] / 1000
    print(f"({figures['cpu_count']} cores, shared by the advisor processes, the fakes, the load generator and Redis: "
          f"4 processes on {figures['cpu_count']} cores cannot scale linearly. One process already used {cores:.2f} cores "
          f"(the event loop plus native threads for embedding and search) and the machine was "
          f"{one['machine_busy_pct']:.0f}% busy. CPU busy: the whole machine during the run; (others): the part used by "
          "processes outside this benchmark. "
          "An answer takes at least one Slack edit interval "
          f"({slack['ttft']['update_interval_s']:g} s) from placeholder to final, so latency here is that plus queueing.)")
    for count, row in slack["throughput"].items():
        answered = f"{row['answered']}/{row['messages']} answered, {row['redelivered']} redelivered"
        detail = f"; errors: {row['error_detail']}" if row["error_detail"] else ""
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in row["cpu_ms_per_msg"].items())
        print(f"  N={count}: {answered}, {row['duplicate_first_posts']} duplicate placeholders, "
              f"{row['duplicate_finals']} duplicate finals{detail}; CPU ms per message: {cpu}; "
              f"started in {row['startup_s']} s")
        for problem in row["log_problems"][:5]:
            print(f"    log: {problem}")
        if len(row["log_problems"]) > 5:
            print(f"    log: ... {len(row['log_problems']) - 5} more")

    t = slack["ttft"]
    print(f"\n== time to first token, Slack path, one process, one message at a time ({t['samples']} samples)")
    print(f"the fake model streams {chunks(TTFT)} chunks every {TTFT['chunk_delay'] * 1000:.0f} ms "
          f"(~{chunks(TTFT) * TTFT['chunk_delay']:.1f} s, longer than the adapter's UPDATE_INTERVAL of "
          f"{t['update_interval_s']:g} s, so the answer text shows in a streamed edit before the final one)")
    print(f"{'':<52}{'p50 ms':>10}{'p95 ms':>10}")
    rows = [
        ("model alone: request -> first token", t["model_ttft_ms"]),
        ("model alone: request -> last token", t["model_total_ms"]),
        ("advisor: POST -> HTTP 200 ack", t["post_to_ack_ms"]),
        ("advisor: POST -> 'Thinking…' placeholder posted", t["post_to_placeholder_ms"]),
        ("advisor: POST -> model request arrives", t["post_to_model_request_ms"]),
        ("advisor: POST -> first chat.update with answer text", t["post_to_first_streamed_text_ms"]),
        ("advisor: POST -> final answer (blocks)", t["post_to_final_ms"]),
        ("added by advisor to the first token", t["added_by_advisor_ms"]),
    ]
    for label, (p50, p95) in rows:
        print(f"{label:<52}{p50:>10.1f}{p95:>10.1f}")
    print(f"(added = advisor's first text on screen minus the model's own first token: moderation, embedding, search "
          f"and the first chat.update; later edits come at most every {t['update_interval_s']:g} s per channel)")

    m = slack["memory"]
    print("\n== memory per conversation in flight, Slack path, one process")
    print(f"{m['conversations']} conversations posted at once, the fake model streaming each answer for "
          f"{m['model_stream_s']:g} s; {m['reached_model_together']} were streaming together "
          f"(at least {m['in_flight_while_sampling']} while RSS was sampled)")
    print(f"RSS idle {m['rss_idle_mib']} MiB -> busy {m['rss_busy_mib']} MiB: {m['kib_per_conversation']} KiB "
          f"per conversation in flight")
    print(f"Redis afterwards, per finished conversation: {m['redis_keys_per_conversation']} new keys, "
          f"{m['redis_key_bytes_per_conversation'] / 1024:.1f} KiB by MEMORY USAGE "
          f"({m['redis_bytes_per_conversation'] / 1024:.1f} KiB by the used_memory delta)")
    print("  new keys (count, bytes each): " + ", ".join(f"{kind} {count} x {size} B"
                                                        for kind, (count, size) in m["redis_new_keys"].items()))
    print(f"answered {m['answered']}/{m['conversations']}, errors {m['errors']}, duplicates {m['duplicates']}"
          + (f"; {m['error_detail']}" if m["error_detail"] else ""))

    d = figures["discord"]
    print("\n== Discord gateway path, one process (the real discord.py client and DiscordAdapter, SQLite memory)")
    print(f"{d['messages']} MESSAGE_CREATE DMs (own user and channel each), {figures['concurrency']} in flight; "
          "1 -> 4 on Discord means shards, and the fake gateway serves one session, so Discord is measured on one process")
    print(f"msgs/s (dispatch -> final with buttons): {d['msgs_per_s']:.1f}, {d['msgs_per_s'] / base:.2f}x Slack "
          f"on one process (the fakes and the load generator run in their own process)")
    one = d["one_at_a_time"]
    print(f"{'':<44}{'p50 ms':>10}{'p95 ms':>10}")
    for label, source in ((f"one at a time ({one['messages']} DMs)", one),
                          (f"{figures['concurrency']} in flight ({d['messages']} DMs)", d)):
        print(f"{label}")
        print(f"{'  dispatch -> first message sent':<44}{source['first_reply_p50_s'] * 1000:>10.1f}"
              f"{source['first_reply_p95_s'] * 1000:>10.1f}")
        print(f"{'  dispatch -> final (with buttons)':<44}{source['latency_p50_s'] * 1000:>10.1f}"
              f"{source['latency_p95_s'] * 1000:>10.1f}")
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in d["cpu_ms_per_msg"].items())
    print(f"machine CPU busy {d['machine_busy_pct']:.0f}% during the loaded run ({d['other_work_pct']:.0f}% by other "
          f"processes); CPU ms per message: {cpu}")
    print(f"answered {d['answered']}/{d['messages']}, errors {d['errors']}, duplicate replies "
          f"{d['duplicate_first_posts']}, duplicate finals {d['duplicate_finals']}"
          + (f"; {d['error_detail']}" if d["error_detail"] else ""))
    for problem in d["log_problems"][:5]:
        print(f"    log: {problem}")
    print(f"\n(total run time {figures['runtime_s']:.0f} s)")


def start_fakes() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """The fakes process (bench/capacity_helpers.py) and the URLs it serves; it stops when its stdin closes."""
    fakes = subprocess.Popen([PYTHON, str(ROOT / "bench" / "capacity_helpers.py")], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env_without_settings())
    assert fakes.stdout is not None
    return fakes, json.loads(fakes.stdout.readline())


def ingest(template: Path, workdir: Path) -> None:
    """`advisor ingest` of the sample knowledge base into `template` (each process gets a copy)."""
    subprocess.run([PYTHON, "-m", "bot.cli", "ingest", str(ROOT / "retrieval" / "sample_kb")], cwd=workdir,
                   env=env_without_settings(ADVISOR_DATA_DIR=str(template), ADVISOR_LOG_LEVEL="WARNING"), check=True,
                   stdout=subprocess.DEVNULL)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller run (about a minute)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    parser.add_argument("--events", type=int, help="Slack events per process count (default 600, quick 100)")
    parser.add_argument("--concurrency", type=int, default=96, help="messages in flight (closed loop)")
    parser.add_argument("--memory-conversations", type=int, help="conversations at once for memory (200, quick 60)")
    parser.add_argument("--ttft-samples", type=int, help="one-at-a-time samples (15, quick 3)")
    parser.add_argument("--discord-events", type=int, help="Discord DMs (600, quick 100)")
    args = parser.parse_args()
    args.processes = (1, 2, 4)
    args.events = args.events or (100 if args.quick else 600)
    args.memory_conversations = args.memory_conversations or (60 if args.quick else 200)
    args.ttft_samples = args.ttft_samples or (3 if args.quick else 15)
    args.discord_events = args.discord_events or (100 if args.quick else 600)
    args.slow_delay = 0.2 if args.quick else 0.5  # memory run: seconds between chunks (the answers overlap)
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="advisor-capacity-") as tmp:
        workdir = Path(tmp)
        fakes, urls = start_fakes()
        redis = None
        control = None
        try:
            args.fakes_pid = fakes.pid
            control = Control(urls["control"])
            redis = RedisServer(workdir / "redis", appendfsync="everysec").start()  # AOF, fsync every second
            template = workdir / "template"
            log("ingesting the sample knowledge base once (copied per process)")
            ingest(template, workdir)
            client = openai.AsyncOpenAI(base_url=urls["openai"], api_key="sk-bench", max_retries=0)
            await control.post("/config", **FAST)
            await model_alone(client)
            fast = [await model_alone(client) for _ in range(30)]
            figures: dict[str, Any] = {
                "cpu_count": os.cpu_count(),
                "events": args.events,
                "concurrency": args.concurrency,
                "model_fast": {
                    "config": {k: v for k, v in FAST.items() if k != "answer"} | {"answer_chars": len(ANSWER)},
                    "ttft_ms": [round(pct([f for f, _ in fast], p) * 1000, 1) for p in (50, 95)],
                    "total_ms": [round(pct([t for _, t in fast], p) * 1000, 1) for p in (50, 95)],
                },
                "moderation": True,
            }
            figures["slack"] = await slack_section(args, control, urls, redis, template, workdir, client)
            figures["discord"] = await discord_section(args, control, urls, template, workdir)
            await client.close()
        finally:
            if control is not None:
                await control.session.close()
            if redis is not None:
                redis.stop()
            if fakes.stdin is not None:
                fakes.stdin.close()
            try:
                fakes.wait(10)
            except subprocess.TimeoutExpired:
                fakes.kill()
    figures["runtime_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(figures, indent=2, ensure_ascii=False))
    else:
        report(figures)


if __name__ == "__main__":
    asyncio.run(main())
