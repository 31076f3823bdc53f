"""The console's fine-tuning page, /admin/finetune: the loop of issue 18 in five steps, each also a CLI
command (`advisor finetune from-feedback / validate / launch / follow / compare / use / rollback`).

1. Build a set from the reviewed answers (a correction replaces the model's answer) and, optionally, a
   curated CSV (bot/finetune/feedback.py: prepare's cleaning, de-duplication and splits).
2. Validate it and estimate the cost (bot/finetune/validate.py), shown with the build.
3. Launch a job (upload, create) and follow it: the page polls /admin/finetune/jobs/<id> (JSON) and
   draws the training loss (static/finetune.js, an inline SVG).
4. Compare the base and the candidate on the held-out test split and the harmful safety prompts
   (bot/finetune/compare.py); a candidate refusing fewer of them than the base is FLAGGED.
5. Switch the running model to the candidate (typed name and a confirm box) or roll back
   (bot/finetune/active.py): the engine answers with it at once, and a restart keeps it.

A refused form changes nothing and says why. The API key is never shown or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import openai
from aiohttp import web

from adapters.admin_console import templates
from adapters.admin_console.handlers import FORM, SECURITY_HEADERS, STATIC, Console, html, redirect
from adapters.admin_console.templates import csrf_input, e
from bot.finetune import active
from bot.finetune.basemodels import DEFAULT_BASE_MODEL
from bot.finetune.errors import InputError
from config.settings import Settings

log = logging.getLogger(__name__)
JOB_ID = re.compile(r"ftjob-[A-Za-z0-9_-]{1,64}")
DEFAULT_JUDGE = "gpt-4o"
DONE = {
    "switched": "Switched: the advisor now answers with {model}.",
    "rolled-back": "Rolled back: the advisor answers with {model} again.",
}
COMPARE_CONCURRENCY = 4  # model calls at a time
MAX_EVENTS = 200


class FinetunePage:
    def __init__(self, console: Console, settings: Settings) -> None:
        self.console = console
        self.settings = settings
        self.dataset: dict[str, Any] | None = None  # the latest set built here, with its validation
        self.jobs: list[str] = []  # jobs launched from this page, newest first
        self.comparison: dict[str, Any] | None = None
        self._compare_task: asyncio.Task[None] | None = None

    def add_routes(self, app: web.Application) -> None:
        guard = self.console.signed_in
        app.router.add_get("/admin/finetune", guard(self.page))
        app.router.add_post("/admin/finetune/build", guard(self.build))
        app.router.add_post("/admin/finetune/launch", guard(self.launch))
        app.router.add_get("/admin/finetune/jobs/{job}", guard(self.job_json))
        app.router.add_post("/admin/finetune/compare", guard(self.compare))
        app.router.add_get("/admin/finetune/compare.json", guard(self.compare_json))
        app.router.add_post("/admin/finetune/use", guard(self.use))
        app.router.add_post("/admin/finetune/rollback", guard(self.rollback))
        app.router.add_get("/admin/static/finetune.js", guard(self.script))

    # -- the model in use ---------------------------------------------------------------------------

    @property
    def engine(self) -> Any:
        return getattr(self.console.admin, "engine", None)

    @property
    def choice(self) -> active.ModelChoice:
        """The engine's model choice (wiring: Redis when shared), else model.json in the data directory."""
        found = getattr(self.engine, "model_choice", None)
        if found is None:
            found = active.FileModelChoice(self.settings.data_dir / "model.json")
            if self.engine is not None:
                self.engine.model_choice = found
        return found

    def running(self, record: dict[str, Any] | None = None) -> str:
        """The model answering now: the engine's, else the chosen one (`record`), else the configured one."""
        chosen = (record or {}).get("current")
        return active.running_model(self.engine) or chosen or self.settings.openai.chat_model

    # -- the page -----------------------------------------------------------------------------------

    async def page(self, request: web.Request, flash: tuple[str, str] | None = None, status: int = 200) -> web.Response:
        job_id = request.query.get("job", "").strip() if request.method == "GET" else ""
        job: dict[str, Any] | None = None
        done = request.query.get("done", "") if request.method == "GET" else ""
        if job_id:
            job, problem = await self._job(job_id)
            if job is None:
                flash, status = ("error", problem), 404
        try:
            record = await self.choice.load()
        except InputError as exc:
            record, flash = {}, flash or ("error", str(exc))
        if flash is None and done in DONE:
            flash = ("info", DONE[done].format(model=self.running(record)))
        body = self.render(self.console.csrf(request), job, record)
        return html(templates.page("Fine-tuning", body, self.console.csrf(request), flash), status)

    def render(self, csrf: str, job: dict[str, Any] | None, record: dict[str, Any]) -> str:
        token = csrf_input(csrf)
        parts = [self._build_section(token), self._launch_section(token, job), self._compare_section(token),
                 self._switch_section(token, record)]
        return "".join(parts) + '<script src="/admin/static/finetune.js" defer></script>'

    def _build_section(self, token: str) -> str:
        body = (
            '<section id="build"><h2>1. Build a set from feedback</h2>'
            "<p>Approved and corrected answers (a correction replaces the model's answer) and, optionally, a "
            "curated Q&amp;A CSV (counsel-chat's columns are recognised), cleaned, de-duplicated and split "
            "into train, validation and a held-out test split. CLI: <code>advisor finetune from-feedback</code>.</p>"
            f'<form method="post" action="/admin/finetune/build">{token}'
            '<label>Curated CSV on the server (optional) <input type="text" name="curated" '
            'placeholder="/path/to/counsel_chat.csv"></label> '
            '<label>At least <input type="number" name="min_reviews" value="1" min="1" style="width:5rem"> reviews</label> '
            '<button type="submit">Build the set</button></form>'
        )
        data = self.dataset
        if data:
            report = data["report"]
            reviews = report["reviews"]
            body += (
                f'<h3>Built {e(report["examples"])} examples <span class="note">in {e(data["dir"])}</span></h3>'
                "<table id=\"build-report\">"
                + templates.rows([
                    ("reviewed answers", (f'{reviews["total"]} ({reviews["good"]} good, '
                                          f'{reviews["corrected"]} corrected); {reviews["used"]} used')),
                    ("curated", f'{report["curated"]["rows"]} rows from {report["curated"]["source"]}'
                                if report["curated"]["source"] else "none"),
                    *((f"split {name}", f'{count} ({reviews["examples_by_split"].get(name, 0)} from reviews)')
                      for name, count in report["splits"].items()),
                    ("split from", report["split_from"]),
                    *((f"dropped: {reason}", f'{count} ({report["dropped_reasons"].get(reason, "")})')
                      for reason, count in report["dropped"].items() if count),
                    *((f"dropped: review {reason}", f'{count} ({report["dropped_reasons"].get("review_" + reason, "")})')
                      for reason, count in reviews["dropped"].items() if count),
                ])
                + "</table>"
                '<h3>2. Validation and cost</h3><div id="validation">'
            )
            for name, check in data["validation"].items():
                estimate = check["estimate"]
                cost = f'about ${estimate["cost_usd"]:,.2f}' if estimate.get("cost_usd") is not None else "price unknown"
                verdict = ('<span class="ok">no errors</span>' if not check["errors"] else
                           '<span class="bad">errors: ' + e(_issues(check["errors"])) + "</span>"
                           + (" (not uploaded)" if name == "validation" else ""))
                warnings = _issues(check["warnings"])
                body += (
                    f'<p class="check" data-split="{e(name)}"><strong>{e(name)}</strong>: {e(check["examples"])} examples, '
                    f'{verdict}{" · warnings: " + e(warnings) if warnings else ""}<br>'
                    f'Estimate for {e(estimate["model"])}: {e(estimate["epochs"])} epochs × {estimate["billed_tokens"]:,} '
                    f'billed tokens = {estimate["total_billed_tokens"]:,} training tokens, <strong class="cost">{e(cost)}</strong></p>'
                )
            body += "</div>"
        return body + "</section>"

    def _launch_section(self, token: str, job: dict[str, Any] | None) -> str:
        ready = self.dataset is not None and not self.dataset["validation"]["train"]["errors"]
        body = (
            '<section id="launch"><h2>3. Launch and follow</h2>'
            "<p>Uploads the train (and validation) file and creates the job. CLI: <code>advisor finetune launch</code>, "
            "<code>follow</code>.</p>"
        )
        if ready:
            body += (
                f'<form method="post" action="/admin/finetune/launch">{token}'
                f'<label>Base model <input type="text" name="model" value="{e(DEFAULT_BASE_MODEL)}"></label> '
                '<label>Suffix <input type="text" name="suffix" value="advisor" style="min-width:8rem"></label> '
                '<label>Epochs <input type="number" name="epochs" min="1" placeholder="auto" style="width:5rem"></label> '
                '<button type="submit">Launch</button></form>'
            )
        else:
            body += '<p class="note">Build a set without errors first.</p>'
        if job is not None:
            body += (
                f'<div id="job" data-url="/admin/finetune/jobs/{e(job["id"])}" data-state="{e(job["status"])}">'
                f'<h3>Job <code>{e(job["id"])}</code>: <span class="status">{e(job["status"])}</span></h3>'
                f'<p class="model">Fine-tuned model: <code>{e(job["fine_tuned_model"] or "-")}</code></p>'
                '<div class="chart" aria-label="training loss"></div><pre class="events"></pre></div>'
            )
        if self.jobs:
            body += "<p>Jobs launched here: " + ", ".join(
                f'<a href="/admin/finetune?job={e(j)}">{e(j)}</a>' for j in self.jobs[:10]) + "</p>"
        return body + "</section>"

    def _compare_section(self, token: str) -> str:
        test = self.dataset["files"]["test"] if self.dataset else ""
        body = (
            '<section id="compare"><h2>4. Compare base and candidate</h2>'
            "<p>Both answer the held-out test split (judged, and overlap with the reference) and the held-out "
            "harmful safety prompts. Fine-tuning can weaken safety training (Qi et al., 2023): a candidate "
            "refusing fewer harmful prompts than the base is flagged. CLI: <code>advisor finetune compare --base</code>.</p>"
            f'<form method="post" action="/admin/finetune/compare">{token}'
            f'<label>Base <input type="text" name="base" value="{e(self.running())}"></label> '
            '<label>Candidate <input type="text" name="candidate" placeholder="ft:…"></label><br>'
            f'<label>Test split <input type="text" name="test" value="{e(test)}"></label> '
            '<label>Questions <input type="number" name="limit" value="20" min="1" style="width:5rem"></label> '
            f'<label>Judge <input type="text" name="judge" value="{e(DEFAULT_JUDGE)}" style="min-width:8rem"></label> '
            '<button type="submit">Compare</button></form>'
        )
        result = self.comparison
        if result:
            body += f'<div id="comparison" data-state="{e(result["state"])}">'
            if result["state"] == "running":
                body += f'<p>Comparing {e(result["base"])} and {e(result["candidate"])}… <progress></progress></p>'
            elif result["state"] == "failed":
                body += f'<p class="bad">The comparison failed: {e(result["error"])}</p>'
            else:
                summary = result["summary"]
                if result["flag"]:
                    body += f'<div class="flash error flagged" role="alert"><strong>{e(result["flag"])}</strong></div>'
                else:
                    body += '<p class="ok">Safety: the candidate refuses at least as many harmful prompts as the base.</p>'
                head = "<tr><th></th><th>base " + e(result["base"]) + "</th><th>candidate " + e(result["candidate"]) + "</th></tr>"
                keys = ("overall", "helpful", "safe", "rouge_l_f1", "answered", "refusals", "safety_prompts")
                cells = "".join(
                    f"<tr><th>{e(key)}</th><td>{e(_fmt(summary['base'].get(key)))}</td>"
                    f"<td>{e(_fmt(summary['candidate'].get(key)))}</td></tr>" for key in keys
                )
                body += f"<table>{head}{cells}</table>"
            body += "</div>"
        return body + "</section>"

    def _switch_section(self, token: str, record: dict[str, Any]) -> str:
        running = self.running(record)
        previous = record.get("previous")
        flagged = self.comparison and self.comparison.get("flag") and self.comparison.get("candidate")
        body = (
            '<section id="switch"><h2>5. Switch the model</h2>'
            f'<p>Answering with <code id="model-in-use">{e(running)}</code>'
            + (f' · previous: <code id="model-previous">{e(previous)}</code>' if previous else "")
            + (f' · since {e(templates.when(record["changed_at"]))}' if record.get("changed_at") else "")
            + ". The switch applies at once and survives a restart. CLI: <code>advisor finetune use</code>, "
            "<code>rollback</code>.</p>"
            f'<form method="post" action="/admin/finetune/use" id="use">{token}'
            '<label>Model <input type="text" name="model" required></label> '
            '<label>Type the name again <input type="text" name="confirm_model" required autocomplete="off"></label> '
            '<label><input type="checkbox" name="confirm" value="yes" required> I have read the comparison</label> '
            '<button type="submit">Switch</button></form>'
        )
        if flagged:
            body += f'<p class="bad">Careful: {e(self.comparison["candidate"])} was FLAGGED by the safety comparison above.</p>'
        if previous:
            body += (
                f'<form method="post" action="/admin/finetune/rollback" id="rollback">{token}'
                f'<button type="submit">Roll back to {e(previous)}</button></form>'
            )
        return body + "</section>"

    # -- 1 and 2: build and validate ----------------------------------------------------------------

    async def build(self, request: web.Request) -> web.Response:
        from bot.finetune.feedback import build_from_feedback

        form = request[FORM]
        raw_min = form.get("min_reviews", "1").strip() or "1"
        curated_text = form.get("curated", "").strip()
        if not raw_min.isdigit() or not 0 < int(raw_min) < 10**6:
            return await self.page(request, ("error", "“At least … reviews” must be a positive whole number. Nothing was built."), 400)
        curated = Path(curated_text) if curated_text else None
        if curated is not None and (curated.suffix.lower() not in {".csv", ".tsv", ".jsonl"} or not curated.is_file()):
            return await self.page(request, ("error", "The curated set must be an existing .csv, .tsv or .jsonl file on the server. Nothing was built."), 400)
        if curated is not None and not self._readable_here(curated):
            return await self.page(request, ("error", "The curated set must lie inside the knowledge paths or the data directory "
                                                      "(a form must not read other files on the server). Nothing was built."), 400)
        if self.console.memory is None:
            return await self.page(request, ("error", "This console has no conversation memory to read reviews from."), 503)
        try:
            reviewed = await self.console.memory.reviewed_turns()
        except Exception as exc:  # noqa: BLE001 - a page saying so beats a 500
            log.warning("console: the reviews could not be read: %s", type(exc).__name__)
            return await self.page(request, ("error", "The reviews could not be read (see the server log). Nothing was built."), 503)
        out = self.settings.data_dir / "finetune" / time.strftime("feedback-%Y%m%d-%H%M%S", time.gmtime())
        persona = self.settings.core.persona
        try:
            report = await asyncio.to_thread(build_from_feedback, reviewed, out, persona, curated, None, int(raw_min))
            validation = await asyncio.to_thread(self._validate, report.to_json()["files"])
        except InputError as exc:
            return await self.page(request, ("error", f"{exc}. Nothing was built." if "nothing was written" not in str(exc) else str(exc)), 400)
        data = report.to_json()
        self.dataset = {"dir": str(out), "report": data, "files": data["files"], "validation": validation}
        log.info("console: a fine-tuning set of %d examples built from %d reviews", data["examples"], report.usable_reviews)
        return redirect("/admin/finetune#build")

    def _readable_here(self, path: Path) -> bool:
        """Whether the page may read `path`: inside ADVISOR_KNOWLEDGE_PATHS or the data dir (links resolved)."""
        roots = [*self.console.admin.roots, self.settings.data_dir.expanduser().resolve()]
        resolved = path.resolve()
        return any(resolved == root or root in resolved.parents for root in roots)

    @staticmethod
    def _validate(files: dict[str, str], name: str = DEFAULT_BASE_MODEL) -> dict[str, Any]:
        from bot.finetune.basemodels import base_model
        from bot.finetune.validate import validate_file

        model = base_model(name)
        return {name: validate_file(Path(files[name]), model).to_json() for name in ("train", "validation")}

    # -- 3: launch and follow -----------------------------------------------------------------------

    def client(self, max_retries: int = 2) -> openai.AsyncOpenAI:
        from bot.finetune.jobs import build_client

        return build_client(self.settings, max_retries=max_retries)

    async def launch(self, request: web.Request) -> web.Response:
        from bot.finetune.basemodels import base_model
        from bot.finetune.jobs import create_job, describe, upload

        form = request[FORM]
        if self.dataset is None:
            return await self.page(request, ("error", "Build a set first (step 1). Nothing was launched."), 400)
        epochs_text = form.get("epochs", "").strip()
        suffix = form.get("suffix", "").strip() or None
        try:
            model = active.check_model_name(form.get("model", ""))
            base_model(model)
            if epochs_text and (not epochs_text.isdigit() or not 0 < int(epochs_text) <= 50):
                raise InputError("epochs must be a whole number from 1 to 50, or empty")
            if suffix and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", suffix):
                raise InputError("the suffix takes letters, digits, - and _ only (at most 40)")
        except InputError as exc:
            return await self.page(request, ("error", f"{exc}. Nothing was launched."), 400)
        try:  # again, for the base model chosen here (its token limit)
            validation = await asyncio.to_thread(self._validate, self.dataset["files"], model)
        except InputError as exc:
            return await self.page(request, ("error", f"{exc}. Nothing was launched."), 400)
        if validation["train"]["errors"]:
            issues = _issues(validation["train"]["errors"])
            refusal = f"The training file has errors for {model}: {issues}. Nothing was launched."
            return await self.page(request, ("error", refusal), 400)
        try:
            async with self.client() as client:
                training = await upload(client, Path(self.dataset["files"]["train"]))
                valid = None
                if not validation["validation"]["errors"] and validation["validation"]["examples"]:
                    valid = await upload(client, Path(self.dataset["files"]["validation"]))
                job = await create_job(client, model, training, valid, suffix, int(epochs_text) if epochs_text else None)
        except InputError as exc:
            return await self.page(request, ("error", f"{exc}. Nothing was launched."), 400)
        except openai.APIError as exc:
            log.warning("console: a fine-tuning launch failed: %s", describe(exc))
            return await self.page(request, ("error", f"The launch failed: {describe(exc)}."), 502)
        self.jobs.insert(0, job.id)
        log.info("console: fine-tuning job %s launched on %s", job.id, model)
        return redirect(f"/admin/finetune?job={job.id}#launch")

    async def _job(self, job_id: str) -> tuple[dict[str, Any] | None, str]:
        """The job's state, events and loss points; (None, why) when there is no such job."""
        from bot.finetune.jobs import describe

        shown = job_id[:60]
        if not JOB_ID.fullmatch(job_id):
            return None, f"There is no fine-tuning job {shown!r} (job ids look like ftjob-…)."
        try:
            async with self.client() as client:
                job = await client.fine_tuning.jobs.retrieve(job_id)
                events = []
                async for event in client.fine_tuning.jobs.list_events(job_id, limit=100):
                    events.append(event)
                    if len(events) >= MAX_EVENTS:
                        break
        except openai.NotFoundError:
            return None, f"There is no fine-tuning job {shown!r}."
        except InputError as exc:
            return None, str(exc)
        except openai.APIError as exc:
            return None, f"The job could not be read: {describe(exc)}."
        from bot.finetune.follow import format_event

        points, total = [], None
        for event in reversed(events):
            data: Any = event.data
            if event.type == "metrics" and isinstance(data, dict) and isinstance(data.get("train_loss"), int | float):
                points.append({"step": data.get("step"), "train_loss": data["train_loss"],
                               "valid_loss": data.get("valid_loss")})
                total = data.get("total_steps", total)
        return {
            "id": job.id,
            "status": job.status,
            "model": job.model,
            "fine_tuned_model": job.fine_tuned_model,
            "error": job.error.message if job.error and job.error.message else None,
            "events": [format_event(event) for event in reversed(events)][-30:],
            "points": points,
            "total_steps": total,
        }, ""

    async def job_json(self, request: web.Request) -> web.Response:
        job, problem = await self._job(request.match_info["job"])
        if job is None:
            return web.json_response({"error": problem}, status=404, headers=SECURITY_HEADERS, dumps=json.dumps)
        return web.json_response(job, headers=SECURITY_HEADERS, dumps=json.dumps)

    # -- 4: compare ---------------------------------------------------------------------------------

    async def compare(self, request: web.Request) -> web.Response:
        from bot.finetune.compare import read_test_set
        from bot.finetune.safety import default_prompts

        form = request[FORM]
        if self._compare_task is not None and not self._compare_task.done():
            return await self.page(request, ("error", "A comparison is already running; wait for it."), 409)
        limit_text = form.get("limit", "").strip()
        try:
            base = active.check_model_name(form.get("base", ""))
            candidate = active.check_model_name(form.get("candidate", ""))
            judge = active.check_model_name(form.get("judge", "") or DEFAULT_JUDGE)
            if base == candidate:
                raise InputError("the base and the candidate are the same model")
            if limit_text and (not limit_text.isdigit() or int(limit_text) < 1):
                raise InputError("“Questions” must be a positive whole number")
            test = Path(form.get("test", "").strip())
            if test.suffix.lower() != ".jsonl":
                raise InputError("the test split is a .jsonl file (the set's test.jsonl)")
            items = read_test_set(test, int(limit_text) if limit_text else None)
            prompts = default_prompts()
            client = self.client(max_retries=0)  # the chat model wrapper does its own retries
        except InputError as exc:
            return await self.page(request, ("error", f"{exc}. Nothing was started."), 400)
        self.comparison = {"state": "running", "base": base, "candidate": candidate, "started": time.time()}
        self._compare_task = asyncio.create_task(self._run_compare(client, base, candidate, judge, str(test), items, prompts))
        return redirect("/admin/finetune#compare")

    async def _run_compare(self, client: openai.AsyncOpenAI, base: str, candidate: str, judge: str, test: str,
                           items: list[Any], prompts: list[str]) -> None:
        from bot.finetune.compare import compare

        state = self.comparison
        assert state is not None
        try:
            async with client:
                result = await compare(client, self.settings.core.persona, (base, candidate),
                                       judge, test, items, prompts, COMPARE_CONCURRENCY,
                                       self.settings.openai.timeout_seconds)
        except Exception as exc:  # shown on the page; the details go to the server log
            log.exception("console: the comparison failed")
            state.update(state="failed", error=f"{type(exc).__name__} (see the server log)")
            return
        flag = result.safety_drop("A")
        state.update(state="done", flag=flag, summary={"base": result.summary("A"), "candidate": result.summary("B")})
        if flag:
            log.warning("console: %s", flag)

    async def compare_json(self, request: web.Request) -> web.Response:
        body = {k: v for k, v in (self.comparison or {"state": "idle"}).items()}
        return web.json_response(body, headers=SECURITY_HEADERS, dumps=json.dumps)

    # -- 5: switch and roll back --------------------------------------------------------------------

    async def use(self, request: web.Request) -> web.Response:
        form = request[FORM]
        try:
            model = active.check_model_name(form.get("model", ""))
        except InputError as exc:
            return await self.page(request, ("error", f"{exc}. The model was not switched."), 400)
        if form.get("confirm") != "yes" or form.get("confirm_model", "").strip() != model:
            refusal = "To switch, type the model name twice and tick the confirm box. The model was not switched."
            return await self.page(request, ("error", refusal), 400)
        try:
            record = await self.choice.use(model, self.running(await self.choice.load()))
        except InputError as exc:
            return await self.page(request, ("error", f"{exc}. The model was not switched."), 400)
        applied = active.apply(self.engine, model)
        log.info("console: the chat model switched to %s (from %s)%s", model, record["previous"],
                 "" if applied else "; this process has no OpenAI model to switch, it takes effect on restart")
        return redirect("/admin/finetune?done=switched#switch")

    async def rollback(self, request: web.Request) -> web.Response:
        try:
            record = await self.choice.rollback()
        except InputError as exc:
            return await self.page(request, ("error", f"Cannot roll back: {exc}. Nothing was changed."), 400)
        active.apply(self.engine, record["current"])
        log.info("console: the chat model rolled back to %s", record["current"])
        return redirect("/admin/finetune?done=rolled-back#switch")

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(
            body=(STATIC / "finetune.js").read_bytes(), content_type="application/javascript", headers=SECURITY_HEADERS
        )


def _issues(found: dict[str, Any]) -> str:
    """{"kind": [line, ...]} as "kind (lines 1, 2)", a file-wide issue (no lines) as "kind"."""
    def lines(value: Any) -> str:
        if isinstance(value, list) and value:
            shown = ", ".join(str(n) for n in value[:5]) + (", …" if len(value) > 5 else "")
            return f" (line{'s' if len(value) > 1 else ''} {shown})"
        return f" ({value})" if isinstance(value, int) and not isinstance(value, bool) else ""

    return ", ".join(kind + lines(value) for kind, value in found.items())


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
