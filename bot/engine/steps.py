"""The answer's steps, in order. A new step (a learned crisis detector, a per-channel scope)
is added here and nowhere else."""

from __future__ import annotations

from bot.engine.answer import Step
from bot.engine.compose import compose
from bot.engine.guard import guard
from bot.engine.recall import recall
from bot.engine.remember import remember
from bot.engine.search import search
from bot.engine.sense import sense
from bot.engine.speak import speak
from bot.engine.vet import vet

STEPS: tuple[Step, ...] = (sense, guard, recall, search, compose, speak, vet, remember)
