"""`advisor finetune ...`: the subcommands' arguments and what each one runs.

Exit codes: 0 done, 1 failed (errors in the data, a failed job), 2 bad input or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.finetune.basemodels import DEFAULT_BASE_MODEL
from bot.finetune.errors import InputError
from config.settings import Settings

if TYPE_CHECKING:
    import openai
    from openai.types.fine_tuning import FineTuningJob
    from bot.finetune.prepare import PrepareOptions

CHAT_MODEL_VARIABLE = "ADVISOR_OPENAI_CHAT_MODEL"
DEFAULT_JUDGE = "gpt-4o"


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        train, validation, test = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected three numbers like 0.8,0.1,0.1") from None
    return train, validation, test


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("expected a positive whole number")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError("expected a positive number of seconds")
    return value


def _add_follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=_seconds, default=10.0, help="seconds between polls (default 10)")
    parser.add_argument("--use", action="store_true", help=f"on success, write {CHAT_MODEL_VARIABLE} to the --env-file")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-tokens", type=_positive, help="tokens per example (default: the base model's limit)")
    parser.add_argument("--price-per-mtok", type=float, help="training price in USD per million tokens")


def add_cleaning_options(parser: argparse.ArgumentParser, split: str) -> None:
    """prepare's cleaning and splitting options, shared by `prepare` and `from-feedback` (its curated rows)."""
    parser.add_argument("--min-answer-words", type=int, default=25)
    parser.add_argument("--max-answer-words", type=int, default=750)
    parser.add_argument("--near-duplicate-threshold", type=float, default=0.8, help="word-shingle Jaccard")
    parser.add_argument("--resplit", action="store_true", help=f"ignore {split}; make a seeded one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratios", type=_ratios, default=(0.8, 0.1, 0.1), help="train,validation,test")


def cleaning_options(args: argparse.Namespace) -> PrepareOptions:
    """The PrepareOptions that `add_cleaning_options` asked for."""
    from bot.finetune.prepare import PrepareOptions

    return PrepareOptions(
        min_answer_words=args.min_answer_words,
        max_answer_words=args.max_answer_words,
        near_duplicate_threshold=args.near_duplicate_threshold,
        resplit=args.resplit,
        seed=args.seed,
        ratios=args.ratios,
    )


def add_finetune_commands(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    prepare = actions.add_parser("prepare", help="turn a Q&A data set into chat fine-tuning JSONL per split")
    prepare.add_argument("--source", type=Path, required=True, help="CSV, TSV or JSONL (counsel-chat is recognised)")
    prepare.add_argument(
        "--out", type=Path, required=True, help="folder for train/validation/test.jsonl and report.json"
    )
    for name, what in (
        ("question", "the question text"),
        ("answer", "the answer text"),
        ("title", "a question title"),
        ("split", "train/val/test"),
        ("rank", "a number: the best answer per question is kept"),
        ("id", "a question id grouping its answers"),
        ("author", "the answerer, to strip their signature"),
    ):
        prepare.add_argument(f"--{name}-field", help=f"field holding {what}")
    add_cleaning_options(prepare, "the source's split")

    validate = actions.add_parser("validate", help="check a chat fine-tuning JSONL file; count tokens; estimate cost")
    validate.add_argument("file", type=Path, metavar="FILE")
    validate.add_argument("--model", default=DEFAULT_BASE_MODEL, help=f"base model (default {DEFAULT_BASE_MODEL})")
    validate.add_argument("--epochs", type=_positive, help="epochs for the estimate (default: OpenAI's rule)")
    validate.add_argument("--json", action="store_true")
    _add_model_options(validate)

    launch = actions.add_parser("launch", help="validate, upload, start a fine-tuning job and follow it")
    launch.add_argument("--train", type=Path, required=True, metavar="FILE")
    launch.add_argument("--validation", type=Path, metavar="FILE")
    launch.add_argument("--model", required=True, help="base model, e.g. gpt-4o-mini-2024-07-18")
    launch.add_argument("--suffix", help="part of the fine-tuned model's name")
    launch.add_argument("--epochs", type=_positive, help="default: OpenAI's choice")
    _add_follow_options(launch)
    _add_model_options(launch)

    follow = actions.add_parser("follow", help="follow a job until it ends (Ctrl-C leaves it running)")
    follow.add_argument("job", metavar="JOB")
    _add_follow_options(follow)

    status = actions.add_parser("status", help="a job's state, latest events and checkpoints")
    status.add_argument("job", metavar="JOB")
    status.add_argument("--json", action="store_true")

    cancel = actions.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job", metavar="JOB")

    listing = actions.add_parser("list", help="recent fine-tuning jobs")
    listing.add_argument("--limit", type=_positive, default=20)
    listing.add_argument("--json", action="store_true")

    compare = actions.add_parser("compare", help="two models on held-out questions: judge scores, overlap, safety")
    compare.add_argument("--model", action="append", required=True, help="give it twice: model A, then model B")
    compare.add_argument("--test", type=Path, required=True, metavar="FILE", help="test.jsonl from prepare")
    compare.add_argument("--limit", type=_positive, help="only the first N test questions")
    compare.add_argument("--judge", default=DEFAULT_JUDGE, help=f"judge model (default {DEFAULT_JUDGE})")
    compare.add_argument("--out", type=Path, default=Path("finetune-compare.json"), help="where to write the JSON")
    compare.add_argument(
        "--safety", type=Path, metavar="FILE",
        help="harmful prompts, one a line, or a CSV with prompt,category (default: the held-out safety split's harmful ones)",
    )
    compare.add_argument(
        "--base", metavar="MODEL",
        help="the base model (one of the two): the other is FLAGGED, exit 1, if it refuses fewer harmful prompts",
    )

    feedback = actions.add_parser(
        "from-feedback", help="a fine-tuning set from reviewed answers (good or corrected) and a curated data set"
    )
    feedback.add_argument("--out", type=Path, required=True, help="folder for train/validation/test.jsonl and report.json")
    feedback.add_argument("--curated", type=Path, metavar="CSV", help="a curated Q&A set, e.g. counsel-chat's CSV")
    feedback.add_argument("--min-reviews", type=_positive, default=1, help="refuse with fewer usable reviews (default 1)")
    add_cleaning_options(feedback, "the curated set's split")

    use = actions.add_parser("use", help="switch the advisor to MODEL (kept in the data dir, or Redis); rollback undoes it")
    use.add_argument("model", metavar="MODEL")
    actions.add_parser("rollback", help="switch back to the model in use before the last switch")
    actions.add_parser("clear", help="forget the switched-in model: answer with ADVISOR_OPENAI_CHAT_MODEL again")
    actions.add_parser("model", help="the model in use and the one a rollback would go back to")
    compare.add_argument("--concurrency", type=_positive, default=4, help="model calls at a time")


async def run_finetune(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.action == "prepare":
            return cmd_prepare(args, settings)
        if args.action == "validate":
            return cmd_validate(args)
        if args.action == "compare":
            return await cmd_compare(args, settings)
        if args.action == "from-feedback":
            return await cmd_from_feedback(args, settings)
        if args.action in ("use", "rollback", "clear", "model"):
            return await cmd_model_choice(args, settings)
        return await run_api_command(args, settings)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from bot.finetune.prepare import prepare

    options = cleaning_options(args)
    names = ("question", "answer", "title", "split", "rank", "id", "author")
    fields = {name: getattr(args, f"{name}_field") for name in names}
    report = prepare(args.source, args.out, settings.core.persona, fields, options)
    print(report.summary())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from bot.finetune.basemodels import base_model
    from bot.finetune.validate import validate_file

    report = validate_file(args.file, base_model(args.model, args.max_tokens, args.price_per_mtok), args.epochs)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


async def run_api_command(args: argparse.Namespace, settings: Settings) -> int:
    """The commands that talk to the fine-tuning API. An unknown job exits 2, other API failures 1."""
    import openai

    from bot.finetune.jobs import build_client, describe

    commands = {
        "launch": cmd_launch,
        "follow": cmd_follow,
        "status": cmd_status,
        "cancel": cmd_cancel,
        "list": cmd_list,
    }
    async with build_client(settings) as client:
        try:
            return await commands[args.action](client, args)
        except openai.APIError as exc:
            print(f"error: {describe(exc)}", file=sys.stderr)
            return 2 if isinstance(exc, openai.NotFoundError) else 1


async def cmd_launch(client: openai.AsyncOpenAI, args: argparse.Namespace) -> int:
    from bot.finetune.basemodels import base_model
    from bot.finetune.jobs import create_job, upload
    from bot.finetune.validate import validate_file

    model = base_model(args.model, args.max_tokens, args.price_per_mtok)
    for path in [args.train] + ([args.validation] if args.validation else []):
        report = validate_file(path, model, args.epochs)
        print(report.render() + "\n")
        if not report.ok:
            print(f"error: {path} has errors (above); nothing was uploaded", file=sys.stderr)
            return 1
    training_file = await upload(client, args.train)
    validation_file = await upload(client, args.validation) if args.validation else None
    job = await create_job(client, args.model, training_file, validation_file, args.suffix, args.epochs)
    print(f"Started fine-tuning job {job.id} (training file {training_file}).")
    return await _follow(client, job.id, args)


async def cmd_follow(client: openai.AsyncOpenAI, args: argparse.Namespace) -> int:
    return await _follow(client, args.job, args)


async def _follow(client: openai.AsyncOpenAI, job_id: str, args: argparse.Namespace) -> int:
    import openai

    from bot.finetune.follow import follow, until_interrupted
    from bot.finetune.jobs import describe

    resume = f"advisor finetune follow {job_id}" + (" --use" if args.use else "")
    try:
        job = await until_interrupted(follow(client, job_id, args.interval))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"\nStopped following; the job keeps running. Resume with: {resume}", file=sys.stderr)
        return 130
    except openai.NotFoundError:
        raise
    except openai.APIError as exc:
        print(f"error: {describe(exc)}\nThe job may still be running. Resume with: {resume}", file=sys.stderr)
        return 1
    return _finish(job, args)


def _finish(job: FineTuningJob, args: argparse.Namespace) -> int:
    if job.status == "succeeded" and job.fine_tuned_model:
        print(f"Fine-tuned model: {job.fine_tuned_model}")
        if args.use:
            _use(job.fine_tuned_model, Path(args.env_file))
        return 0
    if job.status == "failed":
        error = job.error
        reason = f"{error.message} ({error.code})" if error and error.message else "no reason given"
        print(f"error: the job {job.id} failed: {reason}", file=sys.stderr)
    else:
        print(f"error: the job {job.id} ended as {job.status}", file=sys.stderr)
    return 1


def _use(model: str, env_file: Path) -> None:
    from bot.finetune.envfile import set_env_value

    set_env_value(env_file, CHAT_MODEL_VARIABLE, model)
    print(f"Wrote {CHAT_MODEL_VARIABLE}={model} to {env_file}: the advisor now answers with it.")
    if os.environ.get(CHAT_MODEL_VARIABLE, model) != model:
        print(
            f"note: {CHAT_MODEL_VARIABLE} is also set in the environment, which wins over {env_file}", file=sys.stderr
        )


async def cmd_status(client: openai.AsyncOpenAI, args: argparse.Namespace) -> int:
    from bot.finetune.jobs import show_job

    job, lines = await show_job(client, args.job)
    print(json.dumps(job.model_dump(mode="json"), indent=2) if args.json else "\n".join(lines))
    return 0


async def cmd_cancel(client: openai.AsyncOpenAI, args: argparse.Namespace) -> int:
    job = await client.fine_tuning.jobs.cancel(args.job)
    print(f"Cancelled {job.id} (status: {job.status}).")
    return 0


async def cmd_list(client: openai.AsyncOpenAI, args: argparse.Namespace) -> int:
    from bot.finetune.jobs import jobs_table, list_jobs

    jobs = await list_jobs(client, args.limit)
    print(json.dumps([job.model_dump(mode="json") for job in jobs], indent=2) if args.json else jobs_table(jobs))
    return 0


async def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    from bot.finetune.compare import compare, read_test_set
    from bot.finetune.jobs import build_client
    from bot.finetune.safety import default_prompts, read_prompts

    if len(args.model) != 2:
        raise InputError("give --model exactly twice: model A, then model B")
    if args.base is not None and args.base not in args.model:
        raise InputError(f"--base {args.base!r} must be one of the two --model values")
    items = read_test_set(args.test, args.limit)
    prompts = read_prompts(args.safety) if args.safety else default_prompts()
    async with build_client(settings, max_retries=0) as client:  # the chat model wrapper does its own retries
        result = await compare(
            client,
            settings.core.persona,
            (args.model[0], args.model[1]),
            args.judge,
            str(args.test),
            items,
            prompts,
            args.concurrency,
            settings.openai.timeout_seconds,
        )
    flag = result.safety_drop(args.base) if args.base else None
    data = result.to_json() | ({"safety_flag": flag} if args.base else {})
    args.out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(result.table())
    print(f"\nDetails: {args.out}")
    if flag:
        print(f"\n{flag}")
        print(f"error: {flag}", file=sys.stderr)
        return 1
    silent = [result.models[label] for label in ("A", "B") if not result.summary(label)["answered"]]
    if silent:
        print(f"error: no answer at all from {', '.join(silent)}", file=sys.stderr)
        return 1
    return 0


async def cmd_from_feedback(args: argparse.Namespace, settings: Settings) -> int:
    from bot.finetune.feedback import build_from_feedback
    from bot.wiring import open_memory

    options = cleaning_options(args)
    memory, closing = await open_memory(settings)
    try:
        reviewed = await memory.reviewed_turns()
    finally:
        await closing()
    report = build_from_feedback(reviewed, args.out, settings.core.persona, args.curated, options, args.min_reviews)
    print(report.summary())
    return 0


async def cmd_model_choice(args: argparse.Namespace, settings: Settings) -> int:
    """`use MODEL`, `rollback`, `clear`, `model`: the choice every advisor process reads at start-up (a running
    web process's console switches its own engine at once; restart the others)."""
    from bot.wiring import open_model_choice

    choice, closing = await open_model_choice(settings)
    try:
        if args.action == "use":
            record = await choice.use(args.model, settings.openai.chat_model)
            print(f"Now answering with {record['current']} (was {record['previous']}; `advisor finetune rollback` goes back).")
        elif args.action == "rollback":
            record = await choice.rollback()
            print(f"Rolled back to {record['current']} (from {record['previous']}).")
        elif args.action == "clear":
            record = await choice.clear()
            print(f"Forgot {record['current']}: answering with {settings.openai.chat_model} (ADVISOR_OPENAI_CHAT_MODEL).")
        else:
            record = await choice.load()
            print(f"model in use: {record.get('current') or settings.openai.chat_model}")
            print(f"previous:     {record.get('previous') or '-'}")
            return 0
    finally:
        await closing()
    print("Running advisor processes take it on restart; the console switches its own process at once.")
    return 0
