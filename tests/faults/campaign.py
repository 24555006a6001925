"""``python -m tests.faults.campaign [--scenario NAME] [--trials N] [--seed S]``: the fault
campaign, or a part of it, or one trial again; a results table at the end.

NAME is a scenario (``agent-kill.publish``) or a family (``agent-kill``). Without
``--trials`` each scenario runs its full count (``--ci``: the reduced one). ``--report
FILE`` also writes the table as Markdown, as docs/reliability.md shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from tests.faults.harness import Outcome, Scenario, ScenarioResult, TrialRecord, run_scenario
from tests.faults.invariants import Findings
from tests.faults.scenarios import (
    agent_kill,
    damaged_blob,
    disk_full,
    network,
    office,
    office_editors,
    office_folders,
    office_saves,
    server_down,
    server_kill,
)

DEFAULT_SEED = 20261206


def all_scenarios(ci: bool = False) -> list[Scenario]:
    found: list[Scenario] = []
    found += agent_kill.scenarios(ci)
    found += server_kill.scenarios(ci)
    found += network.scenarios(ci)
    found += server_down.scenarios(ci)
    found += office.scenarios(ci)
    found += office_saves.scenarios(ci)
    found += office_folders.scenarios(ci)
    found += office_editors.scenarios(ci)
    found += disk_full.scenarios(ci)
    found += damaged_blob.scenarios(ci)
    return found


def chosen(name: str | None, ci: bool = False) -> list[Scenario]:
    every = all_scenarios(ci)
    if name is None:
        return every
    picked = [s for s in every if s.name == name or s.name.startswith(name + ".")]
    if not picked:
        names = ", ".join(s.name for s in every)
        raise SystemExit(f"no scenario {name!r}; there are: {names}")
    return picked


async def run(
    scenarios: list[Scenario], trials: int | None, seed: int, base: Path, ci: bool = False
) -> list[ScenarioResult]:
    results = []
    for scenario in scenarios:
        count = trials if trials is not None else (scenario.ci_trials if ci else scenario.trials)
        results.append(await run_scenario(scenario, count, seed, base))
    return results


def in_parallel(
    scenarios: list[Scenario], trials: int | None, seed: int, ci: bool, jobs: int, tmp: Path
) -> list[ScenarioResult]:
    """The same trials (same seeds) split over ``jobs`` campaign processes at a time, each
    with worlds of its own: most of a trial is waiting (for a kill, a restart, a backoff),
    so a 2-core machine runs several at once."""
    units: list[tuple[Scenario, int, int]] = []
    for scenario in scenarios:
        count = trials if trials is not None else (scenario.ci_trials if ci else scenario.trials)
        share = max(1, -(-count // jobs))
        units += [(scenario, seed + i, min(share, count - i)) for i in range(0, count, share)]
    units.sort(key=lambda u: -u[2])  # the longest first
    running: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    done: list[Path] = []
    for index, (scenario, first, count) in enumerate(units):
        while len(running) >= jobs:
            running = _reap(running, done)
        out, records = tmp / f"unit-{index}.out", tmp / f"unit-{index}.json"
        args = [sys.executable, "-m", "tests.faults.campaign", "--scenario", scenario.name]
        args += ["--trials", str(count), "--seed", str(first), "--records", str(records)]
        args += ["--ci"] if ci else []
        with out.open("wb") as fh:
            proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ))
        running.append((proc, out, records))
    while running:
        running = _reap(running, done)
    by_name = {s.name: ScenarioResult(s.name) for s in scenarios}
    for records in done:
        for raw in json.loads(records.read_text()) if records.exists() else []:
            by_name[raw["scenario"]].records.append(_record(raw))
    for result in by_name.values():
        result.records.sort(key=lambda r: r.seed)
    return list(by_name.values())


def _reap(
    running: list[tuple[subprocess.Popen[bytes], Path, Path]], done: list[Path]
) -> list[tuple[subprocess.Popen[bytes], Path, Path]]:
    time.sleep(0.5)
    left = []
    for proc, out, records in running:
        if proc.poll() is None:
            left.append((proc, out, records))
            continue
        text = out.read_text(errors="replace")
        print(text.split("\n\n| Scenario")[0].rstrip(), flush=True)
        done.append(records)
    return left


def _record(raw: dict[str, object]) -> TrialRecord:
    outcome = raw.get("outcome")
    record = TrialRecord(str(raw["scenario"]), int(str(raw["seed"])), float(str(raw["seconds"])))
    record.error = raw.get("error")  # type: ignore[assignment]
    if isinstance(outcome, dict):
        findings = Findings(**outcome.pop("findings"))
        record.outcome = Outcome(findings=findings, **outcome)
    return record


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def table(results: list[ScenarioResult]) -> str:
    rows = [
        "| Scenario | Trials | Faults injected | Files checked | Files lost or corrupted "
        "| Bytes re-sent | Converge median / max | Failed trials | Also measured |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        median, worst = r.converge()
        notes = []
        swept = r.total(lambda o: o.findings.swept)
        if swept:
            notes.append(f"left over by the faults, removed by the sweeper: {swept:.0f}")
        for key, label in (
            ("peak_rps", "peak requests/s in the first 10 s back"),
            ("offline_attempts_per_min", "connection attempts/min while down"),
            ("resent_chunks_per_cut", "chunks re-sent per cut"),
            ("delivered_twice", "webhooks delivered more than once"),
            ("refused_507", "uploads refused with 507"),
            ("freed_to_converged_s", "seconds from space freed to converged"),
            ("copy_s", "seconds the copy took"),
        ):
            value = r.note(key)
            if value is not None:
                notes.append(f"{label}: {value:g}")
        rows.append(
            f"| {r.name} | {len(r.records)} | {r.total(lambda o: o.faults):.0f} "
            f"| {r.total(lambda o: o.findings.files_checked):.0f} "
            f"| {r.total(lambda o: o.findings.lost):.0f} | {_size(r.total(lambda o: o.resent))} "
            f"| {median:.1f} s / {worst:.1f} s | {len(r.failures)} | {'; '.join(notes)} |"
        )
    return "\n".join(rows)


def machine_note() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{time.strftime('%Y-%m-%d')}, commit {commit or 'unknown'}, "
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.campaign", description=__doc__)
    parser.add_argument("--scenario", help="a scenario or a family (default: all)")
    parser.add_argument("--trials", type=int, help="trials per scenario (default: its count)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the first trial's seed")
    parser.add_argument("--ci", action="store_true", help="the reduced campaign CI runs")
    parser.add_argument("--report", type=Path, help="also write the table here (Markdown)")
    parser.add_argument("--jobs", type=int, default=1, help="campaign processes at a time")
    parser.add_argument("--records", type=Path, help=argparse.SUPPRESS)  # a worker's output
    args = parser.parse_args(argv)
    if args.trials is not None and args.trials < 1:
        parser.error("--trials must be at least 1")
    scenarios = chosen(args.scenario, args.ci)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dropline-faults-") as tmp:
        if args.jobs > 1:
            results = in_parallel(scenarios, args.trials, args.seed, args.ci, args.jobs, Path(tmp))
        else:
            results = asyncio.run(run(scenarios, args.trials, args.seed, Path(tmp), args.ci))
        if args.records is not None:
            args.records.write_text(
                json.dumps([asdict(r) for result in results for r in result.records])
            )
        failed = [f for r in results for f in r.failures]
        if failed:  # keep the failed trials' folders for a look
            keep = Path(tempfile.mkdtemp(prefix="dropline-faults-failed-"))
            subprocess.run(["cp", "-a", f"{tmp}/.", str(keep)], check=False)
            print(f"failed trials' folders copied to {keep}")
    minutes = (time.monotonic() - started) / 60
    text = table(results)
    print(f"\n{text}\n\n{machine_note()}; {minutes:.1f} minutes")
    for record in failed:
        print(f"FAILED {record.scenario} seed {record.seed}: {record.replay}")
    if args.report is not None:
        args.report.write_text(f"{text}\n\n{machine_note()}; {minutes:.1f} minutes\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
