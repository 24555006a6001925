"""The reduced fault campaign, as CI runs it: one trial of each scenario, several at a
time. Left to ``make faults``: the server away for minutes, the stall past the client's
30 s timeouts, the 2 GiB slow copy and the damaged journals (tests/sync covers those at
CI size). The disk-full family mounts a tmpfs: CI runs as root. Every trial must end
with nothing lost or corrupted and every invariant holding."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.campaign import DEFAULT_SEED, all_scenarios, in_parallel, table

# Four at a time: most of a trial is waiting, and the suite's other worker runs beside it.
JOBS = 4


@pytest.mark.timeout(900)  # a loaded machine slows every trial; the checks stay the same
def test_reduced_campaign_loses_nothing(tmp_path: Path) -> None:
    scenarios = [s for s in all_scenarios(ci=True) if s.ci_trials > 0]
    results = in_parallel(scenarios, None, DEFAULT_SEED, True, JOBS, tmp_path)
    print(table(results))
    assert {r.name: len(r.records) for r in results} == {s.name: s.ci_trials for s in scenarios}
    failed = [f"{f.scenario} seed {f.seed}: {f.replay}" for r in results for f in r.failures]
    assert failed == []
    assert all(r.total(lambda o: o.faults) >= 1 for r in results)
    assert sum(r.total(lambda o: o.findings.files_checked) for r in results) > 1000
    assert sum(r.total(lambda o: o.findings.lost) for r in results) == 0
