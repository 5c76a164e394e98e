"""Step through a recorded ``/proc`` scenario, and a clock that moves only when told.

A scenario folder ``tests/fixtures/procfs/<scenario>/`` holds ``step0/``, ``step1/``, ... each with
``proc/`` (and, where the scenario needs them, ``sys/`` and ``cgroup/``) trees. ``ProcfsSteps``
exposes them through one symlink, ``<tmp>/current``, and ``advance_to(n)`` repoints it, so a
collector built once on ``steps.proc`` sees the next reading exactly as it would on a live host.
"""

from __future__ import annotations

import os
from pathlib import Path

PROCFS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "procfs"


class ProcfsSteps:
    """A symlink ``<tmp_path>/current`` pointing at ``step<N>`` of a recorded scenario."""

    def __init__(self, scenario: str, tmp_path: Path):
        self.scenario_dir = PROCFS_FIXTURES / scenario
        if not (self.scenario_dir / "step0").is_dir():
            raise FileNotFoundError(f"no procfs fixture scenario {scenario!r} under {PROCFS_FIXTURES}")
        self.current = tmp_path / "current"
        self.step = -1
        self.advance_to(0)

    @property
    def proc(self) -> str:
        return str(self.current / "proc")

    @property
    def sys(self) -> str:
        return str(self.current / "sys")

    @property
    def cgroup(self) -> str:
        return str(self.current / "cgroup")

    def advance_to(self, step: int) -> None:
        """Make ``current`` point at ``step<step>`` (atomically, as a rename)."""
        target = self.scenario_dir / f"step{step}"
        if not target.is_dir():
            raise FileNotFoundError(f"{target} does not exist")
        staging = self.current.with_name("current.next")
        if staging.is_symlink():
            staging.unlink()
        os.symlink(target, staging)
        os.replace(staging, self.current)
        self.step = step


class ManualClock:
    """A monotonic clock in seconds that advances only through ``advance(seconds)``."""

    def __init__(self, start_s: float = 1000.0):
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def fixture_host_collectors(steps: ProcfsSteps, clock: ManualClock, no_cgroup: Path) -> list:
    """The periodic host collectors over a scenario, on a manual clock, with no GPU and no cgroup
    (``no_cgroup``: a directory that does not exist), without ``agent_self`` (this process's own
    ``stat`` is not in the fixture)."""
    from comet_agent.collectors.periodic import build_periodic_collectors

    collectors, _ = build_periodic_collectors(
        procfs_root=steps.proc, sysfs_root=steps.sys, include_gpu=False, cgroup_root=str(no_cgroup), clock=clock
    )
    return [c for c in collectors if c.name != "agent_self"]
