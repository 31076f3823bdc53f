"""The advice console in a real browser: Debian's chromium, headless, driven by selenium through
the system chromedriver (never Selenium Manager, which would download one). Sign in, the status
page, a reindex followed to done by the page's own script, a forged CSRF post refused, a 👎
answer corrected on the conversations page; and the fine-tuning page against the fake OpenAI server
(a set built from reviews, a job launched and followed to the end with its loss chart, the model
switched and rolled back).
Screenshots of each page go to the test's temporary folder, or to docs/console/ with
ADVISOR_CONSOLE_SCREENSHOTS=1 (so a test run leaves the tree as it was). Skipped without chromium,
except under CI."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.models import Final, IncomingMessage
from config.settings import load_settings
from tests.harness.console import TOKEN, ConsoleServer, GatedEmbedder
from tests.harness.openai_server import FakeOpenAI
from tests.test_finetune_loop import add_reviews, curated_csv

CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "console"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: docs/console/ when asked for, else a temporary folder."""
    return DOCS_SHOTS if os.environ.get("ADVISOR_CONSOLE_SCREENSHOTS") == "1" else tmp_path_factory.mktemp("shots")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if chromium() is None or not os.access(CHROMEDRIVER, os.X_OK):
        return "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; make test does it)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium()  # type: ignore[assignment]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1200,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
async def served(
    setenv: Callable[..., None], kb_dir: Path, stack: Any, retriever: Any
) -> AsyncIterator[tuple[ConsoleServer, GatedEmbedder, Any]]:
    setenv(ADVISOR_ADMIN_TOKEN=TOKEN, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir), ADVISOR_ADMIN_SHOW_MESSAGES="true")
    settings = load_settings(None)
    engine = stack.engine(settings)
    gated = GatedEmbedder(retriever.embedder)
    server = await ConsoleServer.serving(settings, engine, retriever, gated)
    yield server, gated, engine
    gated.gate.set()
    await server.stop()


async def until(check: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll a (blocking, selenium) check in a thread, so the server on this loop keeps serving."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the page never got there")
        await asyncio.sleep(0.1)


def send_token(browser: Any) -> None:
    """Fill in the sign-in form the browser shows and send it (blocking: run it in a thread)."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()


async def sign_in(browser: Any, server: Any) -> None:
    """Open the sign-in page, send the token and wait for the status page."""
    from selenium.webdriver.common.by import By

    await asyncio.to_thread(browser.get, server.url + "/admin/login")
    await asyncio.to_thread(send_token, browser)
    await until(lambda: browser.find_elements(By.ID, "summary"))


async def test_sign_in_status_reindex_and_forged_csrf_in_a_browser(browser: Any, served: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    server, gated, engine = served
    shots.mkdir(parents=True, exist_ok=True)
    run = asyncio.to_thread

    def text_of(css: str) -> str:
        return str(browser.find_element(By.CSS_SELECTOR, css).text)

    await run(browser.get, server.url + "/admin")  # no session: the sign-in page
    await until(lambda: browser.current_url.endswith("/admin/login"))
    await run(browser.save_screenshot, str(shots / "login.png"))

    await run(send_token, browser)
    await until(lambda: browser.current_url.rstrip("/").endswith("/admin") and browser.find_elements(By.ID, "summary"))
    summary = await run(text_of, "#summary")
    assert "none (offline mode)" in summary and "Index size" in summary
    assert "ok" in await run(text_of, "#readiness")
    await run(browser.save_screenshot, str(shots / "status.png"))

    await run(browser.get, server.url + "/admin/knowledge?q=emergency+fund")
    hits = await until(lambda: browser.find_elements(By.ID, "hits") and text_of("#hits"))
    assert "Emergency fund" in hits and "fund.md" in hits
    gated.gate.clear()  # the reindex waits at its first embedding until the page shows it running

    def start_reindex() -> None:
        browser.find_element(By.CSS_SELECTOR, "#reindex-form button").click()

    await run(start_reindex)
    await until(lambda: browser.find_elements(By.CSS_SELECTOR, '#reindex-progress[data-state="running"]'))
    assert "Reindexing" in await run(text_of, "#reindex-progress")
    await run(browser.save_screenshot, str(shots / "reindex-running.png"))
    gated.gate.set()
    # the page's script polls the status endpoint and shows the end without a reload
    await until(lambda: browser.find_elements(By.CSS_SELECTOR, '#reindex-progress[data-state="done"]'))
    done = await run(text_of, "#reindex-progress")
    assert done.startswith("Done: 3 files") and "chunks" in done
    await run(browser.save_screenshot, str(shots / "knowledge.png"))

    def forge_and_post() -> None:
        browser.execute_script(
            "document.querySelector('#reindex-form input[name=csrf_token]').value = 'forged';"
            "document.getElementById('reindex-form').submit();"
        )

    await run(forge_and_post)
    refused = await until(lambda: browser.find_elements(By.ID, "refused") and text_of("#refused"))
    assert "security token is missing or does not belong to your session" in refused and "nothing was changed" in refused
    await run(browser.save_screenshot, str(shots / "forged-csrf.png"))
    await run(browser.get, server.url + "/admin/knowledge")
    assert await until(lambda: browser.find_elements(By.CSS_SELECTOR, '#reindex-progress[data-state="done"]'))

    # a 👎 answer, found with the filter and corrected on the conversations page
    message = IncomingMessage("slack", "T1", "C1", "1.0", "U1", "How big should my emergency fund be?", time.time(), "m-1")
    [final] = [event async for event in engine.answer(message) if isinstance(event, Final)]
    assert await engine.record_feedback(final.turn_id, -1)
    await run(browser.get, server.url + "/admin/conversations?disliked=1")
    turn = f"#turn-{final.turn_id}"
    assert "👎" in await until(lambda: browser.find_elements(By.CSS_SELECTOR, turn) and text_of(turn))
    correction = "Aim for three to six months of essential costs, kept in an easy-access savings account."

    def correct() -> None:
        browser.find_element(By.CSS_SELECTOR, f"{turn} form.correct textarea").send_keys(correction)
        browser.find_element(By.CSS_SELECTOR, f"{turn} form.correct button").click()

    await run(correct)
    await until(lambda: browser.find_elements(By.CSS_SELECTOR, f'{turn}[data-review="corrected"]'))
    shown = await run(text_of, turn)
    assert correction in shown and "How big should my emergency fund be?" in shown
    assert f"Review of answer #{final.turn_id} saved." in await run(text_of, ".flash")
    await run(browser.execute_script, "window.scrollTo(0, 0)")  # the redirect's #turn-N scrolled past the message
    await run(browser.save_screenshot, str(shots / "conversations.png"))
    [reviewed] = await engine.memory.reviewed_turns()
    assert reviewed.review is not None and reviewed.review.status == "corrected" and reviewed.review.correction == correction


@pytest.fixture
async def served_finetune(
    setenv: Callable[..., None], kb_dir: Path, stack: Any, retriever: Any
) -> AsyncIterator[tuple[ConsoleServer, Any]]:
    """The console with an engine answering through the fake OpenAI server (gpt-4o-mini)."""
    async with FakeOpenAI() as fake:
        setenv(ADVISOR_ADMIN_TOKEN=TOKEN, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir), OPENAI_BASE_URL=fake.base_url,
               OPENAI_API_KEY="sk-test-key")
        settings = load_settings(None)
        engine = stack.engine(settings, stack.chat_model(fake))
        server = await ConsoleServer.serving(settings, engine, retriever)
        yield server, engine
        await server.stop()


async def test_finetune_build_launch_follow_switch_and_roll_back_in_a_browser(
    browser: Any, served_finetune: Any, shots: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    server, engine = served_finetune
    shots.mkdir(parents=True, exist_ok=True)
    run = asyncio.to_thread
    await add_reviews(engine.memory)
    data_dir = load_settings(None).data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    curated = curated_csv(data_dir / "curated.csv", extra=8)  # the page reads only the data dir and knowledge paths

    def text_of(css: str) -> str:
        return str(browser.find_element(By.CSS_SELECTOR, css).text)

    browser.delete_all_cookies()
    await sign_in(browser, server)
    await run(browser.get, server.url + "/admin/finetune")

    def build() -> None:
        browser.find_element(By.NAME, "curated").send_keys(str(curated))
        browser.find_element(By.CSS_SELECTOR, "#build button").click()

    await run(build)
    report = await until(lambda: browser.find_elements(By.ID, "build-report") and text_of("#build-report"))
    assert "2 good, 1 corrected" in report
    assert "no errors" in await run(text_of, "#validation") and "Estimate for" in await run(text_of, "#validation")

    def launch() -> None:
        browser.find_element(By.CSS_SELECTOR, "#launch button").click()

    await run(launch)
    # the page's script follows the job to the end and draws the loss
    await until(lambda: browser.find_elements(By.CSS_SELECTOR, '#job[data-state="succeeded"]'), timeout=60)
    assert await until(lambda: browser.find_elements(By.CSS_SELECTOR, "#job svg polyline.train-loss"))
    model = (await run(text_of, "#job .model code")).strip()
    assert model.startswith("ft:gpt-4o-mini-2024-07-18:advisor:")
    await run(browser.execute_script, "document.getElementById('launch').scrollIntoView()")
    await run(browser.save_screenshot, str(shots / "finetune.png"))

    def switch() -> None:
        form = browser.find_element(By.ID, "use")
        form.find_element(By.NAME, "model").send_keys(model)
        form.find_element(By.NAME, "confirm_model").send_keys(model)
        form.find_element(By.NAME, "confirm").click()
        form.find_element(By.CSS_SELECTOR, "button").click()

    await run(switch)
    await until(lambda: browser.find_elements(By.ID, "model-in-use") and text_of("#model-in-use") == model)
    assert engine.model.name == model
    await run(browser.execute_script, "document.getElementById('switch').scrollIntoView()")
    await run(browser.save_screenshot, str(shots / "model-switch.png"))

    def roll_back() -> None:
        browser.find_element(By.CSS_SELECTOR, "#rollback button").click()

    await run(roll_back)
    await until(lambda: browser.find_elements(By.ID, "model-in-use") and text_of("#model-in-use") == "gpt-4o-mini")
    assert engine.model.name == "gpt-4o-mini"


@pytest.fixture
async def served_channels(
    setenv: Callable[..., None], kb_dir: Path, stack: Any, retriever: Any, tmp_path: Path
) -> AsyncIterator[tuple[ConsoleServer, Any]]:
    """The console with a per-channel settings store (SQLite) behind the engine."""
    from bot.state.channel_settings_sqlite import SqliteChannelSettings

    setenv(ADVISOR_ADMIN_TOKEN=TOKEN, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir))
    settings = load_settings(None)
    channels = SqliteChannelSettings(tmp_path / "channels.sqlite3")
    engine = stack.engine(settings, channels=channels)
    server = await ConsoleServer.serving(settings, engine, retriever)
    yield server, engine
    await server.stop()
    await channels.close()


async def test_a_channel_gets_its_own_persona_in_a_browser(browser: Any, served_channels: Any, shots: Path) -> None:
    """Sign in, add a channel's persona on /admin/channels, see it listed, and the engine use it at once."""
    from selenium.webdriver.common.by import By

    server, engine = served_channels
    run = asyncio.to_thread
    persona = "You are the treasury desk's advisor: brief, formal, numbers first."

    await sign_in(browser, server)
    await run(browser.get, server.url + "/admin/channels")

    def add() -> None:
        browser.find_element(By.NAME, "scope").send_keys("slack:T1:C1")
        browser.find_element(By.NAME, "persona").send_keys(persona)
        browser.find_element(By.CSS_SELECTOR, "#channel-form button[type=submit]").click()

    await run(add)
    listed = await until(lambda: "slack:T1:C1" in (browser.find_element(By.ID, "scopes").text or "") and
                         browser.find_element(By.ID, "scopes").text)
    assert "treasury desk" in listed
    await run(browser.save_screenshot, str(shots / "channels.png"))
    message = IncomingMessage("slack", "T1", "C1", "1.0", "U1", "How big should my emergency fund be?", time.time(), "m-2")
    assert (await engine.channel_settings(message)).persona == persona
