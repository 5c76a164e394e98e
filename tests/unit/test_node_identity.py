"""Node identity: which node (and local rank) a process is, from the explicit id, comet_ml's
setting or the launcher's variables (``config.node_identity``), table-driven."""

from __future__ import annotations

import pytest

from comet_agent.config import NodeIdentity, check_node_id, node_identity, resolve_config
from comet_agent.errors import ConfigError

CASES = [
    # (what, environment, expected node_id, node_index, local_rank, local_size)
    ("nothing: a single process", {}, None, None, None, None),
    (
        "torchrun on one node: no prefix",
        {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "2", "GROUP_RANK": "0"},
        None,
        None,
        2,
        4,
    ),
    (
        "torchrun on two nodes",
        {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "3", "GROUP_RANK": "1"},
        "node1",
        1,
        3,
        4,
    ),
    (
        "torchrun, NODE_RANK only",
        {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "0", "NODE_RANK": "1"},
        "node1",
        1,
        0,
        4,
    ),
    (
        "Slurm on one node",
        {"SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "2"},
        None,
        None,
        1,
        2,
    ),
    (
        "Slurm on three nodes",
        {"SLURM_JOB_NUM_NODES": "3", "SLURM_NODEID": "2", "SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "1"},
        "node2",
        2,
        0,
        1,
    ),
    ("Slurm, SLURM_NNODES (older)", {"SLURM_NNODES": "2", "SLURM_NODEID": "1"}, "node1", 1, None, None),
    (
        "Slurm, tasks from the compressed list",
        {"SLURM_JOB_NUM_NODES": "3", "SLURM_NODEID": "2", "SLURM_LOCALID": "1", "SLURM_TASKS_PER_NODE": "2(x2),4"},
        "node2",
        2,
        1,
        4,
    ),
    (
        "Slurm wins over torchrun",
        {
            "SLURM_JOB_NUM_NODES": "2",
            "SLURM_NODEID": "1",
            "WORLD_SIZE": "8",
            "LOCAL_WORLD_SIZE": "4",
            "GROUP_RANK": "0",
        },
        "node1",
        1,
        None,
        4,
    ),
    (
        "Open MPI on two nodes",
        {
            "OMPI_COMM_WORLD_SIZE": "8",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
            "OMPI_COMM_WORLD_RANK": "6",
            "OMPI_COMM_WORLD_LOCAL_RANK": "2",
        },
        "node1",
        1,
        2,
        4,
    ),
    (
        "Open MPI on one node",
        {
            "OMPI_COMM_WORLD_SIZE": "4",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
            "OMPI_COMM_WORLD_RANK": "3",
            "OMPI_COMM_WORLD_LOCAL_RANK": "3",
        },
        None,
        None,
        3,
        4,
    ),
    ("Kubernetes Indexed Job", {"JOB_COMPLETION_INDEX": "3"}, "node3", 3, None, None),
    ("multi-node without an index: the hostname", {"SLURM_JOB_NUM_NODES": "2"}, "gpu07", None, None, None),
    (
        "garbage counts as unset",
        {"SLURM_JOB_NUM_NODES": "two", "WORLD_SIZE": "-8", "LOCAL_RANK": "x"},
        None,
        None,
        None,
        None,
    ),
    (
        "comet_ml's variable wins",
        {"COMET_DISTRIBUTED_NODE_IDENTIFIER": "east-1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1"},
        "east-1",
        1,
        None,
        4,
    ),
    ("comet_ml's variable on a single node", {"COMET_DISTRIBUTED_NODE_IDENTIFIER": "box"}, "box", None, None, None),
]


@pytest.mark.parametrize(
    ("what", "environ", "node_id", "node_index", "local_rank", "local_size"), CASES, ids=[c[0] for c in CASES]
)
def test_derived_from_environment(what, environ, node_id, node_index, local_rank, local_size):
    node = node_identity(environ=environ, hostname="gpu07")
    assert (node.node_id, node.node_index, node.local_rank, node.local_size) == (
        node_id,
        node_index,
        local_rank,
        local_size,
    )


def test_explicit_id_wins_over_setting_and_environment():
    environ = {"COMET_DISTRIBUTED_NODE_IDENTIFIER": "from-env", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1"}
    node = node_identity(" given-id ", environ=environ)
    assert (node.node_id, node.node_index, node.source) == ("given-id", 1, "given")


def test_setting_read_from_a_config_file(tmp_path):
    (tmp_path / ".comet.config").write_text("[comet]\ndistributed_node_identifier = rack3\n")
    config = resolve_config(environ={"HOME": str(tmp_path)}, cwd=tmp_path, home=tmp_path)
    node = node_identity(config=config, environ={})
    assert node.node_id == "rack3"
    assert "config file" in node.source


@pytest.mark.parametrize("bad", ["", "  ", "two words", "a/b", "x" * 65, "tab\there"])
def test_unusable_ids_are_refused_with_what_to_give(bad):
    with pytest.raises(ConfigError, match="node id .* is unusable: give 1 to 64 characters"):
        check_node_id(bad)
    if bad.strip():  # an empty setting counts as unset, as comet_ml has it
        with pytest.raises(ConfigError):
            node_identity(environ={"COMET_DISTRIBUTED_NODE_IDENTIFIER": bad})


NAMING = [
    # (node, host prefix, rank prefix, writes the system details)
    (NodeIdentity(), "", "", True),
    (NodeIdentity(local_rank=1, local_size=4), "", "rank1.", False),
    (NodeIdentity(local_rank=0, local_size=1), "", "", True),
    (NodeIdentity("node0", 0, 2, 4), "node0.", "node0.rank2.", False),
    (NodeIdentity("node0", 0, 0, 4), "node0.", "node0.rank0.", True),
    (NodeIdentity("node2", 2, 0, 1), "node2.", "node2.", False),
    (NodeIdentity("box", None, None, None), "box.", "box.", True),
]


@pytest.mark.parametrize(("node", "host_prefix", "rank_prefix", "primary"), NAMING)
def test_prefixes_and_who_writes_the_system_details(node, host_prefix, rank_prefix, primary):
    assert (node.host_prefix, node.rank_prefix, node.primary) == (host_prefix, rank_prefix, primary)


def test_run_takes_a_node_id_and_refuses_an_unusable_one_in_one_line(capsys):
    from comet_agent.cli import build_parser

    assert build_parser().parse_args(["run", "--node-id", "node3", "--", "true"]).node_id == "node3"
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--node-id", "a b", "--", "true"])
    assert exit_info.value.code == 2
    assert "node id 'a b' is unusable" in capsys.readouterr().err


def test_monitor_with_an_unusable_node_id_stops_at_the_with_line(tmp_path):
    from comet_agent.agent import Agent
    from comet_agent.errors import AgentError

    agent = Agent(node_id="a/b", data_dir=tmp_path, api_key="k" * 32, url_override="http://127.0.0.1:9/clientlib/")
    with pytest.raises(AgentError, match="node id 'a/b' is unusable") as raised:
        agent.prepare()
    assert raised.value.exit_status == 78
