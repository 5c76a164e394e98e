"""A job over three nodes, four local ranks on one of them, recorded into one experiment.

Six separate processes, as a cluster job runs them: each is a training script that calls
``comet_agent.monitor()`` with torchrun's variables set (``GROUP_RANK``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``WORLD_SIZE``) and its node's own fixture ``/proc`` root (node 1 is the
recorded 128-CPU host, and every node has its own load average), into one experiment on the local
server. Each rank writes its own pid into its node's ``/proc`` with its own RSS, so its process
tree is recognisable. Then: per-node series are distinct and complete, node 0's host series are
written by one sampler (not four), each rank's process tree keeps its own series, killing the
elected sampler hands the host series to another rank, the system details are node 0's, every
node's hardware is readable, and comet_ml itself reads it all back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.engine.election import election_path
from tests.e2e.agent_support import REPO, agent_env, wait_for
from tests.support.procfs_steps import PROCFS_FIXTURES
from tests.support.procfs_tree import copy_host_files

pytestmark = pytest.mark.e2e

FAST = {"heartbeat_ms": 1000, "cpu_interval_ms": 1000, "gpu_interval_ms": 1000}
RANKS_PER_NODE = {0: 4, 1: 1, 2: 1}
PAGE_BYTES = 4096

#: The training script: its own process in its node's /proc, then monitor() around "training"
#: (reading stdin until the test closes it).
TRAIN = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from tests.support.procfs_tree import FakeProcess, write_processes
    import comet_agent

    proc = Path(os.environ["NODE_PROC"])
    rank = int(os.environ["LOCAL_RANK"])
    write_processes(proc, [FakeProcess(os.getpid(), 1, rss_pages=1000 * (rank + 1))])
    with comet_agent.monitor(
        experiment_key=os.environ["EXPERIMENT"], procfs_root=str(proc), include_gpu=False,
        include_os_packages=False, include_git=False, use_daemon=False, stop_timeout_s=5,
    ):
        os.write(1, b"ready\\n")
        sys.stdin.read()
    """
)


def _node_proc(tmp_path: Path, node: int) -> Path:
    proc = tmp_path / f"node{node}" / "proc"
    copy_host_files(proc)
    if node == 1:  # the recorded 128-CPU, 1 TiB host
        for name in ("stat", "meminfo"):
            (proc / name).write_bytes((PROCFS_FIXTURES / "big-host-128cpu" / "step0" / "proc" / name).read_bytes())
    (proc / "loadavg").write_text(f"{node + 1}.25 1.00 0.50 1/100 4242\n")
    return proc


def _points(experiment: APIExperiment) -> dict[str, list[dict]]:
    by_name: dict[str, list[dict]] = {}
    for point in experiment.get_metrics():
        by_name.setdefault(point["metricName"], []).append(point)
    return by_name


def test_three_nodes_four_local_ranks_one_experiment(local_server, tmp_path):
    local_server.set_intervals(**FAST)
    api = API(api_key=local_server.api_key, url_override=local_server.clientlib_url)
    experiment = APIExperiment(api=api, workspace="ws", project_name="multi-node")
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    world = sum(RANKS_PER_NODE.values())
    ranks: dict[tuple[int, int], subprocess.Popen] = {}
    try:
        for node, count in RANKS_PER_NODE.items():
            proc = _node_proc(tmp_path, node)
            for rank in range(count):
                env = agent_env(
                    local_server,
                    tmp_path / f"node{node}" / "data",  # one data directory per node, shared by its ranks
                    EXPERIMENT=experiment.id,
                    NODE_PROC=str(proc),
                    GROUP_RANK=str(node),
                    LOCAL_RANK=str(rank),
                    LOCAL_WORLD_SIZE=str(count),
                    WORLD_SIZE=str(world),
                )
                ranks[node, rank] = subprocess.Popen(
                    [sys.executable, str(script)], env=env, cwd=str(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
        pids = {where: process.pid for where, process in ranks.items()}
        for (node, rank), process in ranks.items():
            assert process.stdout.readline() == b"ready\n", f"node {node} rank {rank} did not start"

        wanted = (
            {f"node{n}.sys.ram.total" for n in RANKS_PER_NODE}
            | {f"node0.rank{r}.sys.proc.rss" for r in range(4)}
            | {"node1.sys.proc.rss", "node2.sys.proc.rss"}
        )
        wait_for(lambda: wanted <= set(_points(experiment)), 30, what="every node's and rank's series")
        time.sleep(3)  # three more pushes at 1 s

        # One sampler on node 0: its host series are as frequent as a one-rank node's, not four times.
        points = _points(experiment)
        node0 = sorted(p["timestamp"] for p in points["node0.sys.load.avg"])
        node1 = sorted(p["timestamp"] for p in points["node1.sys.load.avg"])
        assert len(node0) <= len(node1) + 2, (len(node0), len(node1))
        assert all(b - a >= 500 for a, b in zip(node0, node0[1:])), node0  # no copies a few ms apart
        # Per-node series are distinct: each node's own /proc.
        assert {float(p["metricValue"]) for p in points["node2.sys.load.avg"]} == {3.25}
        assert {float(p["metricValue"]) for p in points["node0.sys.load.avg"]} == {1.25}
        assert float(points["node1.sys.ram.total"][0]["metricValue"]) == 1056755456 * 1024
        assert float(points["node0.sys.ram.total"][0]["metricValue"]) == 24684096 * 1024
        assert "node1.sys.swap.total" in points and "node0.sys.swap.total" not in points  # only node 1 swaps
        assert not any(name.startswith("sys.") for name in points)  # nothing unprefixed on a multi-node job
        # Every rank's own process tree, under its own name.
        for rank in range(4):
            rss = {float(p["metricValue"]) for p in points[f"node0.rank{rank}.sys.proc.rss"]}
            assert rss == {1000 * (rank + 1) * PAGE_BYTES}

        # Kill the elected sampler: another rank takes the host series over within a tick or two.
        lock = election_path(tmp_path / "node0" / "data", experiment.id, "node0")
        holder_pid = int(lock.read_text())
        (holder,) = [where for where, pid in pids.items() if pid == holder_pid]
        killed_ms = int(time.time() * 1000)
        ranks.pop(holder).send_signal(signal.SIGKILL)
        wait_for(
            lambda: max(p["timestamp"] for p in _points(experiment)["node0.sys.load.avg"]) > killed_ms + 500,
            10,
            what="node 0's host series after its sampler was killed",
        )
        assert int(lock.read_text()) not in (holder_pid, 0)
    finally:
        for process in ranks.values():
            process.stdin.close()
        for process in ranks.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    assert all(process.returncode == 0 for process in ranks.values())

    import comet_ml

    os.environ.update(COMET_URL_OVERRIDE=local_server.clientlib_url, COMET_API_KEY=local_server.api_key)
    try:
        theirs = comet_ml.API(cache=False).get_experiment_by_key(experiment.id)
        names = {m["metricName"] for m in theirs.get_metrics()}
        assert {"node0.sys.ram.used", "node1.sys.swap.used", "node2.sys.load.avg", "node0.rank3.sys.proc.rss"} <= names
        others = {o["name"]: o["valueCurrent"] for o in theirs.get_others_summary()}
        hardware = {n: json.loads(others[f"comet_agent.node.node{n}"]) for n in RANKS_PER_NODE}
        assert all(record["hostname"] for record in hardware.values())
        details = theirs.get_system_details()
    finally:
        del os.environ["COMET_URL_OVERRIDE"], os.environ["COMET_API_KEY"]
    assert details["pid"] == pids[0, 0]  # the experiment's system details are node 0's local rank 0's

    # The page: a node selector and every node's hardware table.
    import requests

    page = requests.get(experiment.url, headers={"Authorization": local_server.api_key}, timeout=30).text
    panels = page.split('<details class="node"')[1:]
    assert [panel.split('data-node="')[1].split('"')[0] for panel in panels] == ["node0", "node1", "node2"]
    assert all(hardware[0]["hostname"] in panel and "<h3>Hardware</h3>" in panel for panel in panels)
    api.close()
