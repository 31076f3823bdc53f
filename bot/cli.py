"""The `advisor` command line. Exit codes: 0 done, 1 failed, 2 bad input or settings."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from bot.finetune.cli import add_finetune_commands, run_finetune
from bot.ops.logs import configure_logging
from config.settings import Settings, SettingsError, load_settings

log = logging.getLogger("advisor")

DEMO_QUESTIONS = (
    "How big should my emergency fund be?",
    "Should I pay off my credit card or save first?",
    "How do I ask for a raise?",
)


class UsageError(Exception):
    """Bad input from the command line or a file: exit code 2."""


def sample_kb() -> Path:
    """The sample knowledge base shipped inside the package."""
    return Path(str(resources.files("retrieval") / "sample_kb"))


def _split_fields(values: list[str] | None) -> tuple[str, ...]:
    return tuple(part.strip() for value in values or [] for part in value.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advisor", description=__doc__)
    parser.add_argument("--env-file", default=".env", help="settings file to read besides the environment")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser("config", help="inspect settings").add_subparsers(dest="action", required=True)
    config.add_parser("check", help="print the effective settings (secrets masked) and any problems")

    ingest = commands.add_parser("ingest", help="index files and folders into the knowledge base")
    ingest.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    ingest.add_argument(
        "--exemplars",
        type=Path,
        metavar="FILE",
        help="replace the exemplar Q&A pairs (JSONL chat lines, e.g. finetune prepare's train.jsonl, or CSV/JSONL "
        "question,answer) shown to the model as examples of voice",
    )
    ingest.add_argument("--full", action="store_true", help="rebuild a fresh index and switch to it at the end")
    ingest.add_argument("--text-field", action="append", help="CSV/JSONL field(s) holding the text (comma-separated)")
    ingest.add_argument("--title-field", help="CSV/JSONL field holding the title")
    ingest.add_argument("--id-field", help="CSV/JSONL field holding a record id")

    search = commands.add_parser("search", help="print the passages that best match a question")
    search.add_argument("question")
    search.add_argument("--mode", choices=["dense", "sparse", "hybrid"])
    search.add_argument("-k", "--top-k", type=int, default=None)
    search.add_argument("--json", action="store_true")

    commands.add_parser("demo", help="index the bundled sample knowledge base and start `advisor chat`")
    commands.add_parser("chat", help="talk to the advisor in the terminal (reads stdin lines when piped)")
    ask = commands.add_parser("ask", help="one question, one answer on stdout")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true")

    run_parser = commands.add_parser("run", help="run the bot on a platform")
    platforms = run_parser.add_subparsers(dest="platform", required=True)
    slack = platforms.add_parser("slack", help="Slack: Socket Mode with SLACK_APP_TOKEN, else HTTP")
    slack.add_argument("--http", action="store_true", help="serve the Events API over HTTP even if an app token is set")
    slack.add_argument("--port", type=int, default=None, help="HTTP port (default ADVISOR_SLACK_PORT)")
    slack.add_argument("--workers", type=int, default=1, help="HTTP mode: this many processes on one port (needs REDIS_URL)")
    web = platforms.add_parser("web", help="the HTTP process: Slack Events API and/or Discord interactions endpoint")
    web.add_argument("--port", type=int, default=None, help="HTTP port (default ADVISOR_SLACK_PORT)")
    web.add_argument("--workers", type=int, default=1, help="this many processes on one port (needs REDIS_URL)")
    for parser_ in (slack, web):  # set by --workers for its children
        parser_.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    simulate = commands.add_parser("simulate", help="dry-run recorded platform payloads through the adapters")
    sim_platforms = simulate.add_subparsers(dest="platform", required=True)
    sim_slack = sim_platforms.add_parser("slack", help="Events API, slash command or interactivity bodies, one a file")
    sim_slack.add_argument("files", nargs="+", type=Path, metavar="FILE")
    sim_slack.add_argument("--bot-user-id", help="who the bot is (default: from the payload's authorizations)")
    sim_discord = sim_platforms.add_parser("discord", help="gateway dispatches (MESSAGE_CREATE, INTERACTION_CREATE), one a file")
    sim_discord.add_argument("files", nargs="+", type=Path, metavar="FILE")
    sim_discord.add_argument("--bot-user-id", help="who the bot is (default: 100000000000000001)")

    platforms.add_parser("discord", help="Discord: the gateway bot (needs DISCORD_TOKEN and the Message Content intent)")

    evaluate = commands.add_parser("eval", help="evaluations").add_subparsers(dest="action", required=True)
    retrieval = evaluate.add_parser("retrieval", help="retrieval quality on BEIR-layout files")
    retrieval.add_argument("--corpus", type=Path, required=True)
    retrieval.add_argument("--queries", type=Path, required=True)
    retrieval.add_argument("--qrels", type=Path, required=True)
    retrieval.add_argument("--mode", choices=["dense", "sparse", "hybrid"], action="append")
    retrieval.add_argument("--engine", choices=["edge", "local"], default="edge", help="embedded engine to index into")
    retrieval.add_argument("--json", action="store_true")
    crisis = evaluate.add_parser(
        "crisis", help="crisis protocol through the full engine: at least 95%% caught, at most 3%% false alarms"
    )
    crisis.add_argument(
        "--crisis", type=Path, metavar="FILE", help="crisis messages, one a line (default: the held-out split)"
    )
    crisis.add_argument(
        "--benign", type=Path, metavar="FILE", help="ordinary messages, one a line (default: the held-out split)"
    )
    crisis.add_argument("--json", action="store_true")
    answers = evaluate.add_parser(
        "answers",
        help="MTRAG conversational tasks through the full engine: answered, declined or clarified, and citation precision",
        description="Ingest the task corpus first, keeping its ids: "
        "advisor ingest corpus.jsonl --text-field text --title-field title --id-field _id",
    )
    answers.add_argument("--tasks", type=Path, required=True, metavar="FILE", help="MTRAG generation tasks (JSONL)")
    answers.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N tasks")
    answers.add_argument("--json", action="store_true")
    safety = evaluate.add_parser(
        "safety", help="harmful prompts through the full engine: refused or safely handled, per category"
    )
    safety.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE",
        help="CSV (prompt[,category]), JSONL, or one prompt a line; category 'benign' marks safe look-alikes "
        "(default: the held-out split)",
    )
    safety.add_argument(
        "--judge", metavar="MODEL", help="judge model when a model is configured (default: ADVISOR_OPENAI_CHAT_MODEL)"
    )
    safety.add_argument("--no-judge", action="store_true", help="use the offline detectors even with a key")
    safety.add_argument("--json", action="store_true")

    add_finetune_commands(commands.add_parser("finetune", help="prepare, validate, launch and compare fine-tunes"))
    return parser


def _progress_bar(total: int) -> tuple[Any, Any]:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="file", file=sys.stderr, disable=None, dynamic_ncols=True)
    state = {"chunks": 0, "started": time.perf_counter()}

    def update(kind: str, count: int) -> None:
        if kind == "file":
            bar.update(count)
        else:
            state["chunks"] += count
            rate = state["chunks"] / max(time.perf_counter() - state["started"], 1e-9)
            bar.set_postfix_str(f"{state['chunks']} chunks, {rate:.1f} chunks/s")

    return bar, update


async def cmd_ingest(settings: Settings, paths: Sequence[Path], full: bool, mapping: Any, quiet: bool = False) -> int:
    from bot.wiring import build_retrieval
    from retrieval.ingest import Ingestor, IngestReport, discover

    stack = await build_retrieval(settings)
    try:
        ingestor = Ingestor(
            stack.store,
            stack.embedder,
            stack.sparse,
            settings.retrieval.chunk_tokens,
            settings.retrieval.chunk_overlap,
            mapping,
            follow_links=settings.retrieval.follow_links,
        )
        total = len(discover(paths, IngestReport(), settings.retrieval.follow_links)[0])
        bar, update = _progress_bar(total) if not quiet else (None, None)
        try:
            report = await ingestor.run(paths, full=full, progress=update)
        finally:
            if bar is not None:
                bar.close()
        print(report.summary(), file=sys.stderr if quiet else sys.stdout)
        return 0 if report.files_indexed or report.files_unchanged or not report.skipped else 1
    finally:
        await stack.close()


async def cmd_ingest_exemplars(settings: Settings, path: Path) -> int:
    from bot.wiring import build_retrieval, open_exemplars
    from retrieval.exemplars import ExemplarFileError, load_exemplars

    try:
        loaded = load_exemplars(path)
    except ExemplarFileError as exc:
        raise UsageError(str(exc)) from exc
    for reason in loaded.skipped[:10]:
        print(f"skipped {reason}", file=sys.stderr)
    if len(loaded.skipped) > 10:
        print(f"... and {len(loaded.skipped) - 10} more skipped rows", file=sys.stderr)
    stack = await build_retrieval(settings)
    try:
        index = await open_exemplars(settings, stack)
        count = await index.replace(loaded.exemplars, path.name)
    finally:
        await stack.close()
    k = settings.retrieval.exemplars_k
    use = f"the {k} most similar go into each prompt" if k else "ADVISOR_RETRIEVAL_EXEMPLARS_K=0: not used until set"
    print(f"{count} exemplar pairs indexed from {path.name} ({len(loaded.skipped)} rows skipped); {use}.")
    return 0


def _suspicious(chunk: Any) -> list[str]:
    """Why the passage was flagged at ingestion as addressed to an AI ([] when clean)."""
    return [str(reason) for reason in chunk.extra.get("suspicious") or ()]


def _print_hits(hits: list[Any], as_json: bool) -> None:
    if as_json:
        rows = [
            {
                "rank": rank,
                "score": round(hit.score, 6),
                "source": hit.chunk.source,
                "title": hit.chunk.title,
                "location": hit.chunk.location,
                "start": hit.chunk.start,
                "end": hit.chunk.end,
                "text": hit.chunk.text,
                "suspicious": _suspicious(hit.chunk),
            }
            for rank, hit in enumerate(hits, start=1)
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not hits:
        print("No matching passages. Index something first: advisor ingest PATH")
    for rank, hit in enumerate(hits, start=1):
        chunk = hit.chunk
        where = f" > {chunk.location}" if chunk.location else ""
        snippet = " ".join(chunk.text.split())
        reasons = _suspicious(chunk)
        flag = f"  [suspicious: {', '.join(reasons)}]" if reasons else ""
        print(f"{rank}. [{hit.score:.4f}] {chunk.title}{where}{flag}")
        span = "" if {"row", "page"} & set(chunk.extra) else f" (chars {chunk.start}-{chunk.end})"
        print(f"   {chunk.source}{span}")
        print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}")


async def cmd_search(settings: Settings, question: str, mode: str | None, top_k: int | None, as_json: bool) -> int:
    from bot.wiring import build_retrieval

    if not question.strip():
        raise UsageError("the question is empty")
    stack = await build_retrieval(settings)
    try:
        hits = await stack.retriever.search(question, limit=top_k, mode=mode)  # type: ignore[arg-type]
    finally:
        await stack.close()
    _print_hits(hits, as_json)
    return 0


async def cmd_chat(settings: Settings) -> int:
    from adapters.console import ConsoleChat
    from bot.wiring import build_engine, build_retrieval

    stack = await build_retrieval(settings)
    engine = await build_engine(settings, stack)
    try:
        await ConsoleChat(engine).run()
    finally:
        await engine.memory.close()
        await stack.close()
    return 0


def demo_settings(settings: Settings) -> Settings:
    """The demo answers with the bundled local model when it is installed and nothing else is set
    (no OpenAI key or URL, ADVISOR_LOCAL_MODEL unset); else as configured (off: the offline mode)."""
    from bot.llm.local_model import DEFAULT, bundled_installed

    if settings.openai.configured or settings.local.model is not None or not bundled_installed():
        return settings
    return settings.model_copy(update={"local": settings.local.model_copy(update={"model": DEFAULT})})


async def cmd_demo(settings: Settings) -> int:
    from retrieval.loaders import FieldMapping

    await cmd_ingest(settings, [sample_kb()], full=False, mapping=FieldMapping(), quiet=True)
    settings = demo_settings(settings)
    if settings.local.enabled:
        print(f"Answering with the local model ({settings.local.model}, llama.cpp); it starts in a few seconds. "
              "ADVISOR_LOCAL_MODEL=off for the offline mode.", file=sys.stderr)
    print(f"Sample knowledge base ready. Try: {' / '.join(DEMO_QUESTIONS)}", file=sys.stderr)
    return await cmd_chat(settings)


async def cmd_ask(settings: Settings, question: str, as_json: bool) -> int:
    import uuid

    from bot.models import Final, IncomingMessage
    from bot.wiring import build_engine, build_retrieval

    if not question.strip():
        raise UsageError("the question is empty")
    stack = await build_retrieval(settings)
    engine = await build_engine(settings, stack)
    message = IncomingMessage("cli", "local", "ask", uuid.uuid4().hex, "cli", question, time.time())
    try:
        final = None
        async for event in engine.answer(message):
            if isinstance(event, Final):
                final = event
        await engine.forget(str(message.conversation))
    finally:
        await engine.memory.close()
        await stack.close()
    assert final is not None
    if as_json:
        print(
            json.dumps(
                {
                    "answer": final.text,
                    "sources": [
                        {"source": c.source, "title": c.title, "score": c.score, "suspicious": list(c.suspicious)}
                        for c in final.citations
                    ],
                    "mode": final.mode,
                    "usage": {
                        "prompt_tokens": final.usage.prompt_tokens,
                        "completion_tokens": final.usage.completion_tokens,
                        "total_tokens": final.usage.total_tokens,
                        "cost_usd": final.cost_usd,
                    },
                },
                ensure_ascii=False,
            )
        )
    else:
        print(final.text)
        if final.citations:
            from adapters.console import format_sources

            print("\nSources:\n" + format_sources(final.citations))
    return 0 if final.mode in {"model", "offline", "fallback", "crisis"} else 1


async def cmd_run_web(settings: Settings, port: int | None, reuse_port: bool) -> int:
    from adapters.serve import run_web
    from bot.wiring import build_services

    slack_ready = settings.slack.bot_token and settings.slack.signing_secret
    discord_ready = settings.discord.public_key and settings.discord.application_id
    console_ready = settings.console.token is not None and settings.console.token.get_secret_value()
    if not (slack_ready or discord_ready or console_ready):
        raise UsageError(
            "nothing to serve over HTTP: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (Slack Events API), "
            "or DISCORD_PUBLIC_KEY and DISCORD_APPLICATION_ID (Discord interactions endpoint), "
            "or ADVISOR_ADMIN_TOKEN (the advice console)"
        )
    services = await build_services(settings)
    try:
        return await run_web(settings, services, port or settings.slack.port, reuse_port=reuse_port)
    finally:
        await services.close()


async def cmd_run_slack(settings: Settings, http: bool, port: int | None, reuse_port: bool) -> int:
    from adapters.serve import run_socket_mode
    from bot.wiring import build_services

    slack = settings.slack
    socket_mode = bool(slack.app_token) and not http
    missing = [] if slack.bot_token else ["SLACK_BOT_TOKEN"]
    if not socket_mode and not slack.signing_secret:
        missing.append("SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)")
    if missing:
        raise UsageError(f"Slack is not configured: set {' and '.join(missing)}")
    if not socket_mode:
        return await cmd_run_web(settings, port, reuse_port)
    services = await build_services(settings)
    try:
        return await run_socket_mode(settings, services)
    finally:
        await services.close()


async def cmd_run_discord(settings: Settings) -> int:
    import discord

    from adapters.serve import run_discord_gateway
    from bot.wiring import build_services

    if not settings.discord.token:
        raise UsageError("Discord is not configured: set DISCORD_TOKEN")
    services = await build_services(settings)
    try:
        await run_discord_gateway(settings, services)
    except discord.PrivilegedIntentsRequired:
        print(
            "error: Discord refused the Message Content intent. Enable it in the Developer Portal: "
            "your application > Bot > Privileged Gateway Intents > Message Content Intent.",
            file=sys.stderr,
        )
        return 1
    except discord.LoginFailure:
        print("error: Discord rejected DISCORD_TOKEN (check the bot token in the Developer Portal)", file=sys.stderr)
        return 1
    finally:
        await services.close()
    return 0


async def cmd_simulate(settings: Settings, platform: str, files: list[Path], bot_user_id: str | None) -> int:
    """Check every file first (bad input runs nothing), then feed them through one adapter."""
    from importlib import import_module

    from bot.wiring import build_services

    module = import_module(f"adapters.simulate.{platform}")
    try:
        for path in files:
            module.read_input(path)
    except module.SimulationInputError as exc:
        raise UsageError(str(exc)) from exc
    services = await build_services(settings)
    failed = 0
    try:
        for line in await module.simulate(files, services.engine, services.admin, settings, bot_user_id):
            if "error" in line:  # a file that could not be replayed: one line naming it, the others go on
                failed += 1
                print(f"error: {line['file']}: {line['error']}", file=sys.stderr)
                continue
            print(json.dumps(line, ensure_ascii=False))
    finally:
        await services.close()
    return 2 if failed else 0


async def cmd_eval_retrieval(settings: Settings, args: argparse.Namespace) -> int:
    from retrieval.embedders import build_embedder
    from retrieval.evaluate import evaluate

    for path in (args.corpus, args.queries, args.qrels):
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
    embedder = build_embedder(settings)
    results = await evaluate(
        args.corpus, args.queries, args.qrels, embedder, settings.retrieval, modes=args.mode or ["hybrid"], engine=args.engine
    )
    if args.json:
        payload: Any = results[0].to_json() if len(results) == 1 else [r.to_json() for r in results]
        print(json.dumps(payload, indent=2))
    else:
        print("\n\n".join(result.table() for result in results))
    return 0


async def cmd_eval_crisis(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when the targets are met, 1 when not."""
    from bot.safety.crisis_eval import HELDOUT, engine_answer, evaluate, read_messages
    from bot.wiring import build_engine, build_retrieval

    try:
        crisis = read_messages(args.crisis or HELDOUT / "crisis.txt")
        benign = read_messages(args.benign or HELDOUT / "benign.txt")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    stack = await build_retrieval(settings)
    engine = await build_engine(settings, stack)
    try:
        report = await evaluate(engine_answer(engine), crisis, benign)
    finally:
        await engine.memory.close()
        await stack.close()
    print(json.dumps(report.to_json(), ensure_ascii=False) if args.json else report.table())
    return 0 if report.passed else 1


INGEST_HINT = "advisor ingest corpus.jsonl --text-field text --title-field title --id-field _id"


async def cmd_eval_answers(settings: Settings, args: argparse.Namespace) -> int:
    from bot.safety.answers_eval import evaluate, read_tasks
    from bot.wiring import build_engine, build_retrieval

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    try:
        tasks = read_tasks(args.tasks, args.limit)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    stack = await build_retrieval(settings)
    try:
        if not await stack.store.count():
            raise UsageError(f"the knowledge base is empty; ingest the task corpus first: {INGEST_HINT}")
        engine = await build_engine(settings, stack)
        try:
            report = await evaluate(engine, tasks)
        finally:
            await engine.memory.close()
    finally:
        await stack.close()
    print(json.dumps(report.to_json(), ensure_ascii=False) if args.json else report.table())
    return 0


async def cmd_eval_safety(settings: Settings, args: argparse.Namespace) -> int:
    from bot.llm.openai_model import build_chat_model
    from bot.safety.crisis_eval import HELDOUT, engine_answer
    from bot.safety.safety_eval import evaluate, model_judge, read_prompts
    from bot.wiring import build_engine, build_retrieval

    try:
        prompts = read_prompts(args.prompts or HELDOUT / "safety.csv")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    stack = await build_retrieval(settings)
    engine = await build_engine(settings, stack)
    judge_model = None
    if settings.openai.configured and not args.no_judge:
        key = settings.openai.api_key.get_secret_value() if settings.openai.api_key else None
        name = args.judge or settings.openai.chat_model
        judge_model = build_chat_model(
            key, settings.openai.base_url, name, settings.openai.timeout_seconds, settings.openai.prompt_layout
        )
    try:
        judge = model_judge(judge_model) if judge_model is not None else None
        report = await evaluate(engine_answer(engine), prompts, engine.mode, judge, getattr(judge_model, "name", ""))
    finally:
        await engine.memory.close()
        await stack.close()
    print(json.dumps(report.to_json(), ensure_ascii=False) if args.json else report.table())
    return 0


def model_server_failure(settings: Settings, timeout: float = 5.0) -> str | None:
    """Why the configured model server does not answer GET /models (or says it has no such chat
    model), or None when it does."""
    import openai

    key = settings.openai.api_key.get_secret_value() if settings.openai.api_key else "not-needed"
    client = openai.OpenAI(api_key=key, base_url=settings.openai.base_url, timeout=timeout, max_retries=0)
    try:
        client.models.list()
        client.models.retrieve(settings.openai.chat_model)
    except openai.AuthenticationError:
        return "the key was refused (HTTP 401): set a valid OPENAI_API_KEY"
    except openai.NotFoundError as exc:
        if exc.code == "model_not_found":
            return f"it has no model {settings.openai.chat_model!r} (HTTP 404): check ADVISOR_OPENAI_CHAT_MODEL"
        return None  # a server without /models (or /models/{id}) still answers: it is up
    except openai.APIStatusError as exc:
        return f"HTTP {exc.status_code}"
    except openai.APIConnectionError as exc:
        return f"cannot connect to {settings.openai.base_url or 'api.openai.com'} ({type(exc).__name__})"
    finally:
        client.close()
    return None


def local_model_status(settings: Settings) -> str:
    from bot.llm.local_model import LocalModelError, resolve

    try:
        local = resolve(settings.local)
    except LocalModelError as exc:
        return f"not ready: {exc}"
    return f"local: llama-server {local.binary} with {local.model} (started by advisor on a loopback port)"


def cmd_config_check(settings: Settings) -> int:
    for group, rows in settings.masked().items():
        print(f"[{group}]")
        for name, value in rows.items():
            print(f"  {name} = {value}")
    print("\nintegrations:")
    for name, gaps in settings.platform_gaps().items():
        if gaps:
            print(f"  {name}: not configured (needs {'; '.join(gaps)})")
        elif name == "language model" and settings.local.enabled:
            print(f"  {name}: {local_model_status(settings)}")
        elif name == "language model":
            failure = model_server_failure(settings)
            print(f"  {name}: " + ("ready (it answered GET /models)" if failure is None else f"not answering: {failure}"))
        else:
            print(f"  {name}: ready")
    for path in settings.core.knowledge_paths:
        if not Path(path).expanduser().exists():
            print(f"warning: ADVISOR_KNOWLEDGE_PATHS: {path} does not exist", file=sys.stderr)
    problems = settings.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from retrieval.loaders import FieldMapping

    if args.command == "ingest":
        if args.exemplars is not None:
            if args.paths:
                raise UsageError("give either PATH... or --exemplars FILE, not both")
            return await cmd_ingest_exemplars(settings, args.exemplars)
        if not args.paths:
            raise UsageError("what should I index? advisor ingest PATH... (or --exemplars FILE)")
        mapping = FieldMapping(_split_fields(args.text_field), args.title_field, args.id_field)
        return await cmd_ingest(settings, args.paths, args.full, mapping)
    if args.command == "search":
        return await cmd_search(settings, args.question, args.mode, args.top_k, args.json)
    if args.command == "demo":
        return await cmd_demo(settings)
    if args.command == "chat":
        return await cmd_chat(settings)
    if args.command == "ask":
        return await cmd_ask(settings, args.question, args.json)
    if args.command == "simulate":
        return await cmd_simulate(settings, args.platform, args.files, args.bot_user_id)
    if args.command == "run" and args.platform == "discord":
        return await cmd_run_discord(settings)
    if args.command == "run" and args.platform == "web":
        return await cmd_run_web(settings, args.port, reuse_port=args.reuse_port)
    if args.command == "run":
        return await cmd_run_slack(settings, args.http, args.port, reuse_port=args.reuse_port)
    if args.command == "eval" and args.action == "crisis":
        return await cmd_eval_crisis(settings, args)
    if args.command == "eval" and args.action == "answers":
        return await cmd_eval_answers(settings, args)
    if args.command == "eval" and args.action == "safety":
        return await cmd_eval_safety(settings, args)
    if args.command == "eval":
        return await cmd_eval_retrieval(settings, args)
    if args.command == "finetune":
        return await run_finetune(args, settings)
    raise UsageError(f"unknown command {args.command}")


INTERACTIVE = frozenset({"chat", "ask", "demo", "search"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.env_file if Path(args.env_file).is_file() else None)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    level = settings.core.log_level
    if args.command in INTERACTIVE and level != "DEBUG":  # the answer is the output; INFO lines would bury it
        level = "WARNING"
    configure_logging(level, settings.core.log_format, secrets=settings.secret_values())
    if args.command == "run" and args.platform != "discord":
        workers = args.workers
        if workers < 1:
            print("error: --workers must be at least 1", file=sys.stderr)
            return 2
        if workers > 1:
            if not settings.memory.redis_url:
                print(
                    "error: --workers above 1 needs REDIS_URL: de-duplication, rate limits and memory must be shared",
                    file=sys.stderr,
                )
                return 2
            if not settings.qdrant.url:
                print(
                    "error: --workers above 1 needs QDRANT_URL: the embedded Qdrant engine is opened by one process "
                    "at a time (run a Qdrant server; see the README's Production section)",
                    file=sys.stderr,
                )
                return 2
            from adapters.serve import run_workers

            return run_workers([*(argv if argv is not None else sys.argv[1:]), "--workers", "1", "--reuse-port"], workers)
    if args.command == "config":
        return cmd_config_check(settings)
    problems = settings.problems()
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    from bot.llm.local_model import LocalModelError
    from bot.llm.local_server import LocalServerError
    from bot.ports import StateUnavailable
    from retrieval.embedders import EmbedderError
    from retrieval.evaluate import EvalInputError
    from retrieval.store_errors import StoreError

    try:
        return asyncio.run(run(args, settings))
    except (UsageError, EvalInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StoreError, EmbedderError, StateUnavailable, LocalModelError, LocalServerError) as exc:  # one line each
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
