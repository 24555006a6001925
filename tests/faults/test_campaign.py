"""The reduced fault campaign, as CI runs it: a trial or two of every scenario (the stall
past the client's 30 s timeouts is left to ``make faults``). Every trial must end with
nothing lost or corrupted and every invariant holding."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.faults.campaign import DEFAULT_SEED, all_scenarios, run, table


def test_reduced_campaign_loses_nothing(tmp_path: Path) -> None:
    scenarios = [s for s in all_scenarios(ci=True) if s.ci_trials > 0]
    results = asyncio.run(run(scenarios, None, DEFAULT_SEED, tmp_path, ci=True))
    print(table(results))
    ran = {r.name: len(r.records) for r in results}
    assert all(n >= 1 for n in ran.values()), ran
    failed = [
        f"{f.scenario} seed {f.seed}: {f.error or f.outcome}\n  {f.replay}"
        for r in results
        for f in r.failures
    ]
    assert failed == []
    assert sum(r.total(lambda o: o.faults) for r in results) >= len(results)
    assert sum(r.total(lambda o: o.findings.lost) for r in results) == 0
