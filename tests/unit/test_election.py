"""The election of one host sampler per node (``engine.election``), and what a ``Job`` then writes.

Real locks on real files in ``tmp_path``; a holder that dies is a real subprocess killed with
SIGKILL. Jobs sample the recorded ``vm-2cpu`` host and are pushed by hand (``job.push``); what
they spool is read back from their spools.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from comet_agent.api import API
from comet_agent.config import NodeIdentity
from comet_agent.delivery import payloads
from comet_agent.delivery.spool import Spool
from comet_agent.engine.election import HostElection, election_path
from comet_agent.engine.host_sampler import HostSampler
from comet_agent.engine.job import Job
from comet_agent.engine.link import ExperimentLink, new_experiment_key
from tests.support.procfs_steps import ManualClock, ProcfsSteps, fixture_host_collectors

REPO = Path(__file__).resolve().parents[2]


def test_one_holder_among_several_and_handover_on_release(tmp_path):
    path = election_path(tmp_path, "abc", "node0")
    ranks = [HostElection(path) for _ in range(4)]
    assert [rank.is_sampler() for rank in ranks] == [True, False, False, False]
    assert [rank.is_sampler() for rank in ranks] == [True, False, False, False]  # asking again changes nothing
    ranks[0].release()
    assert [rank.is_sampler() for rank in ranks[1:]] == [True, False, False]
    assert ranks[1].became_sampler == 1 and ranks[1].held
    assert path.read_text().strip() == str(os.getpid())  # who samples, for a person looking


def test_the_lock_is_per_experiment_and_node(tmp_path):
    elections = [
        HostElection(election_path(tmp_path, key, node))
        for key, node in (("a", "node0"), ("a", "node1"), ("b", "node0"), ("a", None))
    ]
    assert all(election.is_sampler() for election in elections)
    assert election_path(tmp_path, "../k", "n/1").parent == tmp_path / "election"  # nothing escapes the folder


def _holder(path: Path, *, fork_child: bool = False) -> subprocess.Popen:
    """A process that takes the role (and optionally forks a child that lives on), then waits."""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from comet_agent.engine.election import HostElection
        election = HostElection(Path({str(path)!r}))
        assert election.is_sampler()
        if {fork_child!r}:
            child = os.fork()
            if child == 0:
                election.release_in_child()
                os.write(1, b"child %d\\n" % os.getpid())  # one write each: the lines never interleave
                time.sleep(60)
                os._exit(0)
        os.write(1, b"holding\\n")
        time.sleep(60)
        """
    )
    return subprocess.Popen([sys.executable, "-c", script], cwd=str(REPO), stdout=subprocess.PIPE, text=True)  # noqa: S603


def test_a_holder_killed_hands_over(tmp_path):
    path = election_path(tmp_path, "abc", "node0")
    holder = _holder(path)
    try:
        assert holder.stdout.readline().strip() == "holding"
        waiting = HostElection(path)
        assert not waiting.is_sampler()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert waiting.is_sampler()  # the kernel dropped the dead holder's lock
    finally:
        holder.kill()
        holder.wait(10)


def test_a_forked_child_does_not_keep_the_role_after_its_parent_died(tmp_path):
    path = election_path(tmp_path, "abc", "node0")
    holder = _holder(path, fork_child=True)
    child_pid = None
    try:
        said = [holder.stdout.readline().split() for _ in range(2)]
        child_pid = next(int(words[1]) for words in said if words[0] == "child")
        waiting = HostElection(path)
        assert not waiting.is_sampler()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        os.kill(child_pid, 0)  # the DataLoader-like child still runs...
        assert waiting.is_sampler()  # ...without the lock
    finally:
        holder.kill()
        holder.wait(10)
        if child_pid is not None:
            try:
                os.kill(child_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_unusable_lock_folder_makes_every_process_a_sampler(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the folder should be
    election = HostElection(blocker / "election" / "x.lock")
    assert election.is_sampler() and election.is_sampler()
    assert "cannot elect one host sampler per node" in caplog.text


# ------------------------------------------------------------------------------------------------
# Jobs of four local ranks on one node
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def rank_jobs(tmp_path):
    steps, clock = ProcfsSteps("vm-2cpu", tmp_path), ManualClock()
    steps.advance_to(0)
    api = API(api_key="k" * 32, url_override="http://127.0.0.1:9/clientlib/")  # never reached: pushes are spooled
    key = new_experiment_key()
    jobs = []
    for rank in range(4):
        collectors = fixture_host_collectors(steps, clock, tmp_path / "none")
        (tmp_path / f"job{rank}").mkdir()
        jobs.append(
            Job(
                ExperimentLink(api, key, create=False),
                Spool(tmp_path / f"rank{rank}.db"),
                HostSampler(collectors),
                directory=str(tmp_path / f"job{rank}"),
                procfs_root=steps.proc,
                node=NodeIdentity("node0", 0, rank, 4),
                election=HostElection(election_path(tmp_path, key, "node0")),
            )
        )
    for job in jobs:
        job._build_own_collectors()
    yield jobs, steps, clock
    for job in jobs:
        job.spool.close()
        job.host.close()
    api.close()


def _names(job: Job) -> set[str]:
    return {
        p["metricName"] for e in job.spool.peek(10_000) if e.endpoint == "metrics_batch" for p in e.payload["values"]
    }


def test_only_the_elected_rank_writes_the_host_series_each_rank_its_own(rank_jobs):
    jobs, steps, clock = rank_jobs
    for step in (0, 1):
        steps.advance_to(step)
        clock.advance(1.0)
        for job in jobs:
            job.push("cpu")
    names = [_names(job) for job in jobs]
    assert {"node0.sys.ram.total", "node0.sys.cpu.percent.avg", "node0.sys.load.avg"} <= names[0]
    for rank, rank_names in enumerate(names):
        assert f"node0.rank{rank}.sys.disk.job.used" in rank_names
        assert all(name.startswith(("node0.sys.", f"node0.rank{rank}.sys.")) for name in rank_names), rank_names
        if rank:
            assert not any(name.startswith("node0.sys.") for name in rank_names)
    ram_points = sum(
        1
        for job in jobs
        for e in job.spool.peek(10_000)
        for p in e.payload.get("values", ())
        if p["metricName"] == "node0.sys.ram.total"
    )
    assert ram_points == 2  # two pushes, one sampler: not eight
    assert jobs[0].status().host_sampler and not jobs[1].status().host_sampler
    assert jobs[2].status().node_id == jobs[2].node_id == "node0"

    jobs[0].election.release()  # what stop() does, and what the kernel does when rank 0 dies
    steps.advance_to(1)
    clock.advance(1.0)
    for job in jobs[1:]:
        job.push("cpu")
    taken = [job for job in jobs[1:] if job.election.held]
    assert len(taken) == 1 and "node0.sys.ram.total" in _names(taken[0])


def test_prefixed_names_keep_their_window_rules():
    points = [
        {"metricName": "node3.sys.ram.used", "metricValue": value, "timestamp": ts}
        for ts, value in ((1, 100), (2, 300), (3, 200))
    ]
    (point,) = payloads.aggregate_window(points)
    assert point["metricValue"] == 300  # memory in use: the window's peak, as unprefixed
    assert payloads.base_metric_name("node3.rank1.sys.proc.rss") == "sys.proc.rss"
    assert payloads.prefixed(points, "") is points


def test_per_kind_endpoints_give_way_to_a_node_prefix(tmp_path):
    api = API(api_key="k" * 32, url_override="http://127.0.0.1:9/clientlib/")
    job = Job(
        ExperimentLink(api, new_experiment_key(), create=False),
        Spool(tmp_path / "s.db"),
        HostSampler([]),
        per_kind_endpoints=True,
        node=NodeIdentity("node1", 1),
    )
    assert job.per_kind_endpoints is False  # Comet would name those series itself, unprefixed
    job.spool.close()
    api.close()


def test_gpu_series_carry_the_node_prefix_too(tmp_path):
    from comet_agent.collectors.gpu import GpuCollector
    from tests.support.fake_nvml import build_fake_nvml

    api = API(api_key="k" * 32, url_override="http://127.0.0.1:9/clientlib/")
    host = HostSampler([GpuCollector(nvml_module=build_fake_nvml("a100-sxm4-80gb"), environ={})])
    job = Job(
        ExperimentLink(api, new_experiment_key(), create=False),
        Spool(tmp_path / "s.db"),
        host,
        node=NodeIdentity("node1", 1),
        election=HostElection(election_path(tmp_path, "k", "node1")),
    )
    job.push("gpu")
    names = _names(job)
    assert "node1.sys.gpu.0.gpu_utilization" in names and "node1.sys.gpu.1.power_usage" in names
    assert all(name.startswith("node1.sys.gpu.") for name in names)  # as comet_ml's convert_gpu_details_to_metrics
    job.spool.close()
    host.close()
    api.close()
