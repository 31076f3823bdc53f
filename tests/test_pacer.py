"""The workspace edit pacer's contract (adapters/pacer.py), on a manual clock: no real time passes."""

from __future__ import annotations

import asyncio
import random

import pytest

from adapters.pacer import Pacer


class Clock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def pacer(clock: Clock, limit: float = 10, window: float = 60.0, min_interval: float = 1.0) -> Pacer:
    return Pacer(limit, window, min_interval, clock=clock, sleep=clock.sleep)


def max_in_window(stamps: list[float], window: float) -> int:
    """The most stamps in any window [t, t + window) (the pacer forgets a stamp `window` seconds on)."""
    stamps = sorted(stamps)
    return max((sum(1 for s in stamps if t <= s < t + window) for t in stamps), default=0)


def test_a_lone_answer_edits_every_min_interval() -> None:
    clock = Clock()
    p = pacer(clock, limit=45)
    edits = 0
    with p.answer("T1") as paced:
        for _ in range(80):  # a delta every 0.25 s for 20 s
            edits += paced.ready()
            clock.now += 0.25
    assert edits == 20  # one edit a second, every second


def test_many_answers_share_the_window_and_each_edits_less_often() -> None:
    clock = Clock()
    p = pacer(clock, limit=45)
    edits: list[float] = []
    per_answer = {}
    answers = [p.answer("T1") for _ in range(20)]
    for step in range(1200):  # 20 answers, each with a delta every 0.1 s, for 120 s
        for index, paced in enumerate(answers):
            if paced.ready():
                edits.append(clock.now)
                per_answer[index] = per_answer.get(index, 0) + 1
        clock.now += 0.1
    assert max_in_window(edits, 60.0) <= 45 - 20  # every answer still holds a slot for its final
    assert max(per_answer.values()) < 120 / 4  # far below one edit a second each
    assert min(per_answer.values()) >= 1  # nobody starved


async def test_every_final_goes_out_first_and_the_window_holds() -> None:
    clock = Clock()
    p = pacer(clock, limit=10)
    answers = [p.answer("T1") for _ in range(25)]  # more answers than the window has slots
    stamps: list[float] = []

    async def finish(paced) -> None:  # type: ignore[no-untyped-def]
        await paced.final()
        stamps.append(clock.now)

    tasks = [asyncio.create_task(finish(paced)) for paced in answers]
    await asyncio.sleep(0)
    assert not p.answer("T1").ready()  # finals waiting: no intermediate edit jumps the queue
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert len(stamps) == 25  # every final went out
    assert max_in_window(stamps, 60.0) <= 10


def test_an_intermediate_edit_never_takes_an_open_answers_final_slot() -> None:
    clock = Clock()
    p = pacer(clock, limit=3, min_interval=0.0)
    first, second = p.answer("T1"), p.answer("T1")
    assert first.ready()  # 1 sent + 2 finals held = 3
    clock.now += 30  # past any share interval, inside the window
    assert not first.ready() and not second.ready()
    second.close()  # an answer that ended without a final gives its slot back
    assert first.ready()


async def test_a_final_comes_min_interval_after_the_answers_last_edit() -> None:
    clock = Clock()
    p = pacer(clock, min_interval=2.0)
    paced = p.answer("T1")
    assert paced.ready()
    clock.now += 0.5
    await paced.final()
    assert clock.now == pytest.approx(1002.0)


async def test_hold_stops_edits_and_delays_finals() -> None:
    clock = Clock()
    p = pacer(clock)
    paced = p.answer("T1")
    p.hold("T1", 5.0)
    assert not paced.ready()
    started = clock.now
    await paced.final()
    assert clock.now - started == pytest.approx(5.0)


def test_workspaces_are_independent() -> None:
    clock = Clock()
    p = pacer(clock, limit=2, min_interval=0.0)
    busy, quiet = p.answer("T1"), p.answer("T2")
    assert busy.ready() and not busy.ready()  # T1: 1 edit + its final's slot
    assert quiet.ready()
    assert p.used("T1") == 1 and p.used("T2") == 1


def test_without_a_limit_only_the_interval_applies() -> None:
    clock = Clock()
    p = Pacer(min_interval=0.5, clock=clock, sleep=clock.sleep)
    answers = [p.answer("T1") for _ in range(50)]
    assert all(a.ready() for a in answers)
    assert not any(a.ready() for a in answers)
    clock.now += 0.5
    assert all(a.ready() for a in answers)


def test_random_load_never_exceeds_the_window() -> None:
    clock = Clock()
    p = pacer(clock, limit=20, window=10.0, min_interval=0.2)
    rng = random.Random(7)
    stamps: list[float] = []
    open_answers = []
    for _ in range(5000):
        clock.now += rng.random() * 0.05
        if rng.random() < 0.02:
            open_answers.append(p.answer("T1"))
        if open_answers and rng.random() < 0.01:
            open_answers.pop(rng.randrange(len(open_answers))).close()
        for paced in open_answers:
            if rng.random() < 0.3 and paced.ready():
                stamps.append(clock.now)
    assert stamps and max_in_window(stamps, 10.0) <= 20


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Pacer(limit=0)
    with pytest.raises(ValueError):
        Pacer(window=0)
