"""Runs a scenario's trials, each from a seed of its own, collects what came of them, and
prints for a failing trial its seed and the exact command that replays it.

Trial ``i`` of a run started with ``--seed S`` is seeded ``S + i``, and it draws every
choice (the tree, the fault, its moment) from that seed alone, so
``--scenario NAME --trials 1 --seed S+i`` plays it again on a fresh world. Timing on a
shared machine still varies: a replay makes the same choices, not the same schedule.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.faults.invariants import Findings

TRIAL_TIMEOUT = 300.0


@dataclass
class Outcome:
    """What one trial did and found."""

    findings: Findings = field(default_factory=Findings)
    faults: int = 0  # faults injected
    resent: int = 0  # bytes sent or fetched again because of the faults
    converge_s: float = 0.0  # from the last fault to both sides agreeing
    notes: dict[str, float] = field(default_factory=dict)


class Scenario(Protocol):
    name: str
    trials: int  # in the full campaign
    ci_trials: int  # in the reduced one

    async def setup(self, base: Path) -> Any: ...

    async def trial(self, world: Any, rng: random.Random, seed: int) -> Outcome: ...

    async def teardown(self, world: Any) -> None: ...


@dataclass
class TrialRecord:
    scenario: str
    seed: int
    seconds: float
    outcome: Outcome | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or (
            self.outcome is not None and bool(self.outcome.findings.problems)
        )

    @property
    def replay(self) -> str:
        return replay_command(self.scenario, self.seed)


def replay_command(scenario: str, seed: int) -> str:
    return f"python -m tests.faults.campaign --scenario {scenario} --trials 1 --seed {seed}"


@dataclass
class ScenarioResult:
    name: str
    records: list[TrialRecord] = field(default_factory=list)

    def _outcomes(self) -> list[Outcome]:
        return [r.outcome for r in self.records if r.outcome is not None]

    @property
    def failures(self) -> list[TrialRecord]:
        return [r for r in self.records if r.failed]

    def total(self, what: Callable[[Outcome], float]) -> float:
        return sum(what(o) for o in self._outcomes())

    def converge(self) -> tuple[float, float]:
        """Median and worst time to converge, in seconds."""
        times = [o.converge_s for o in self._outcomes()] or [0.0]
        return statistics.median(times), max(times)

    def note(self, key: str) -> float | None:
        values = [o.notes[key] for o in self._outcomes() if key in o.notes]
        return max(values) if values else None


Say = Callable[[str], None]


async def run_scenario(
    scenario: Scenario, trials: int, seed: int, base: Path, say: Say = print
) -> ScenarioResult:
    """``trials`` trials seeded ``seed``, ``seed + 1``, ...; a failed trial gets a fresh
    world for the next one, and its own folder is kept for a look."""
    result = ScenarioResult(scenario.name)
    world: Any = None
    world_dir = base
    try:
        for index in range(trials):
            trial_seed = seed + index
            if world is None:
                world_dir = base / f"{scenario.name}-{trial_seed}"
            record, world = await _one_trial(scenario, world, world_dir, trial_seed, base)
            result.records.append(record)
            say(_line(record))
            if record.failed and world is not None:
                await _quietly(scenario.teardown(world))
                world = None
                say(f"    kept for a look: {world_dir}")
    finally:  # also when interrupted: no server or agent outlives the campaign
        if world is not None:
            await _quietly(scenario.teardown(world))
            shutil.rmtree(world_dir, ignore_errors=True)
    return result


async def _one_trial(
    scenario: Scenario, world: Any, world_dir: Path, seed: int, base: Path
) -> tuple[TrialRecord, Any]:
    rng = random.Random(f"{scenario.name}:{seed}")
    started = time.monotonic()
    record = TrialRecord(scenario.name, seed, 0.0)
    try:
        if world is None:
            world = await scenario.setup(world_dir)
        # A scenario that moves gigabytes says how long its trial may take.
        limit = float(getattr(scenario, "trial_timeout", TRIAL_TIMEOUT))
        record.outcome = await asyncio.wait_for(scenario.trial(world, rng, seed), limit)
    except Exception as exc:  # a failed trial is a result, and the campaign goes on
        record.error = f"{type(exc).__name__}: {exc}".strip()
        (base / f"{scenario.name}-{seed}.traceback").write_text(traceback.format_exc())
    record.seconds = time.monotonic() - started
    return record, world


async def _quietly(step: Awaitable[None]) -> None:
    try:
        await step
    except Exception as exc:  # tearing down a broken world must not hide its findings
        print(f"    teardown failed: {type(exc).__name__}: {exc}")


def _line(record: TrialRecord) -> str:
    head = f"[{record.scenario}] seed {record.seed}"
    if record.error is not None:
        failed = f"{head}: FAILED ({record.error}) after {record.seconds:.1f} s"
        return f"{failed}\n    replay: {record.replay}"
    outcome = record.outcome
    assert outcome is not None
    found = outcome.findings
    text = (
        f"{head}: {outcome.faults} fault(s), {found.files_checked} files checked, "
        f"{found.lost} lost, {outcome.resent} B re-sent, converged in {outcome.converge_s:.1f} s"
    )
    if found.problems:
        shown = "\n    ".join(found.problems[:8])
        return f"{head}: FAILED\n    {shown}\n    replay: {record.replay}\n    ({text})"
    return text
