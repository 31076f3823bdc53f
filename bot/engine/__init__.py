"""The advisor engine: `Engine.answer()` and the steps it runs a message through."""
