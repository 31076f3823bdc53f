"""Errors every store raises, whatever engine is behind it."""


class StoreError(RuntimeError):
    """The vector store cannot be opened or used; the message says why and what to do."""
