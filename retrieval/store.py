"""Open the store the settings ask for: a Qdrant server, or an embedded engine on disk."""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from retrieval.store_edge import EdgeStore
from retrieval.store_qdrant import QdrantClientStore


async def open_store(settings: Settings, dim: int, suffix: str = "") -> Any:
    """`QDRANT_URL` set: that server. Otherwise the embedded engine under the data directory.

    `suffix` names a second collection beside the knowledge base (``-exemplars``)."""
    qdrant = settings.qdrant
    collection = qdrant.collection + suffix
    if qdrant.url:
        key = qdrant.api_key.get_secret_value() if qdrant.api_key else None
        layout = {
            name: value
            for name, value in (("shard_number", qdrant.shard_number), ("replication_factor", qdrant.replication_factor))
            if value is not None
        }
        return await QdrantClientStore.open(collection, dim, url=qdrant.url, api_key=key, layout=layout)
    root = settings.data_dir / "index"
    if qdrant.embedded_engine == "local":  # local mode locks its folder: one folder per collection
        return await QdrantClientStore.open(collection, dim, path=str(root / f"qdrant-local{suffix}"))
    return EdgeStore.open(root / "qdrant-edge", collection, dim)
