"""The experiment page of a job over several nodes: a node selector and one panel per node with
its hardware table and its series; none for a single-node experiment. Read over HTTP."""

from __future__ import annotations

import json
import re

import requests

from comet_agent.api import API, APIExperiment
from comet_agent.server.pages.experiment import group_series_by_node, node_of_series

HOSTILE_NODE = "n<script>x"


def _experiment(server):
    return APIExperiment(
        api=API(api_key=server.api_key, url_override=server.clientlib_url), workspace="ws", project_name="p"
    )


def _page(server, experiment) -> str:
    response = requests.get(experiment.url, headers={"Authorization": server.api_key}, timeout=30)
    assert response.status_code == 200
    return response.text


def test_each_node_gets_a_panel_with_its_hardware_and_series(local_server):
    experiment = _experiment(local_server)
    for node, ram in (("node0", 1000), ("node1", 2000), ("node10", 3000), (HOSTILE_NODE, 4000)):
        experiment.log_metric(f"{node}.sys.ram.used", ram, timestamp=1_700_000_000)
    experiment.log_metric("node1.rank2.sys.proc.rss", 77, timestamp=1_700_000_000)
    experiment.log_metric("loss", 0.5, step=1)
    hardware = {
        "hostname": "gpu-a17",
        "os": "Linux",
        "totalRam": 1 << 40,
        "gpus": [{"name": "H100", "totalMemory": 80}],
    }
    experiment.log_other("comet_agent.node.node1", json.dumps(hardware))
    experiment.log_other("comet_agent.node.node2", json.dumps({"hostname": "gpu-b02"}))  # hardware, no series yet

    page = _page(local_server, experiment)
    assert 'data-section="nodes"' in page
    panels = re.findall(r'<details class="node" id="([^"]+)" data-node="([^"]+)"', page)
    assert [node for _, node in panels] == ["n&lt;script&gt;x", "node0", "node1", "node2", "node10"]
    assert "<script>x" not in page
    node1 = page[page.index('data-node="node1" open') : page.index('data-node="node2" open')]
    assert "gpu-a17" in node1 and "H100 (80 B)" in node1 and "node1.rank2.sys.proc.rss" in node1
    assert "node1.sys.ram.used" in node1 and "node0.sys.ram.used" not in node1
    node2 = page[page.index('data-node="node2" open') :]
    assert "gpu-b02" in node2 and "no series from this node" in node2
    assert 'href="#node-node10"' in page  # the selector


def test_a_single_node_experiment_has_no_node_section(local_server):
    experiment = _experiment(local_server)
    experiment.log_metric("sys.ram.used", 1, timestamp=1_700_000_000)
    experiment.log_metric("rank1.sys.proc.rss", 1, timestamp=1_700_000_000)  # ranks on one node
    assert 'data-section="nodes"' not in _page(local_server, experiment)


def test_series_names_split_by_node():
    assert node_of_series("node1.rank0.sys.proc.rss") == ("node1", "rank0.sys.proc.rss")
    assert node_of_series("gpu01.cluster.sys.ram.used") == ("gpu01.cluster", "sys.ram.used")
    assert node_of_series("gpu01.cluster.rank3.sys.proc.rss") == ("gpu01.cluster", "rank3.sys.proc.rss")
    assert node_of_series("rank2.sys.proc.rss") == (None, "rank2.sys.proc.rss")
    assert node_of_series("sys.cpu.percent.avg") == (None, "sys.cpu.percent.avg")
    assert node_of_series("loss") == (None, "loss")
    grouped = group_series_by_node(["node10.sys.a", "node2.sys.b", "sys.c", "node2.rank1.sys.d", "loss"])
    assert list(grouped.items()) == [
        (None, ["loss", "sys.c"]),
        ("node2", ["node2.rank1.sys.d", "node2.sys.b"]),
        ("node10", ["node10.sys.a"]),
    ]


def test_the_system_section_shows_node_0s_total_ram_on_a_multi_node_run(local_server):
    experiment = _experiment(local_server)
    experiment.log_metric("node1.sys.ram.total", 2 * 2**30, timestamp=1_700_000_000)
    experiment.log_metric("node0.sys.ram.total", 3 * 2**30, timestamp=1_700_000_000)
    page = _page(local_server, experiment)
    system = page[page.index('data-section="system"') :]
    system = system[: system.index("</section>")]
    assert str(3 * 2**30) in system and str(2 * 2**30) not in system
