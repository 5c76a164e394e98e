"""Replayed writes inside an idempotency block are applied once; GPU items keep their own time."""

from __future__ import annotations

from comet_agent.api import API, APIExperiment


def _experiment(local_server):
    api = API(api_key=local_server.api_key, url_override=local_server.clientlib_url)
    return APIExperiment(api=api, workspace="ws", project_name="proj")


def _send_block(experiment, request_id):
    with experiment.idempotent(request_id):
        experiment.log_cpu_metrics([10.0, 30.0], timestamp=1_700_000_000_000)
        experiment.log_metrics_batch(
            [{"metricName": "sys.load.avg5", "metricValue": 1.5, "timestamp": 1_700_000_000_000}]
        )


def test_replaying_a_block_with_the_same_id_is_applied_once(local_server):
    experiment = _experiment(local_server)
    _send_block(experiment, "entry-1")
    _send_block(experiment, "entry-1")  # the crash-and-resend case
    names = [m["metricName"] for m in experiment.get_metrics()]
    assert names.count("sys.cpu.percent.01") == 1
    assert names.count("sys.load.avg5") == 1
    _send_block(experiment, "entry-2")  # a new entry is applied
    names = [m["metricName"] for m in experiment.get_metrics()]
    assert names.count("sys.cpu.percent.01") == 2


def test_writes_outside_a_block_are_not_deduplicated(local_server):
    experiment = _experiment(local_server)
    experiment.log_load_metrics(0.5, timestamp=1)
    experiment.log_load_metrics(0.5, timestamp=1)
    assert [m["metricName"] for m in experiment.get_metrics()].count("sys.load.avg") == 2


def test_gpu_metric_items_keep_their_own_timestamp(local_server):
    experiment = _experiment(local_server)
    item = {
        "gpuId": 0,
        "freeMemory": 1,
        "usedMemory": 2,
        "gpuUtilization": 50,
        "totalMemory": 3,
        "timestamp": 1_600_000_000_000,
    }
    experiment.log_gpu_metrics([item])
    points = experiment.get_metrics("sys.gpu.0.gpu_utilization")
    assert [p["timestamp"] for p in points] == [1_600_000_000_000]
    assert experiment.get_total_memory() is None
    assert experiment.get_max_memory() == 3


def test_a_coalesced_group_resent_after_a_lost_reply_is_applied_once(local_server, tmp_path):
    """The sender sends consecutive metric batches as one request with the group's recorded id: when
    the server applied it but the agent never saw the reply, the resend is applied zero more times."""
    from comet_agent.delivery.sender import Sender
    from comet_agent.delivery.spool import Spool

    experiment = _experiment(local_server)
    with Spool(tmp_path / "spool.db") as spool:
        entries = [
            spool.append(
                experiment.id,
                "metrics_batch",
                {"values": [{"metricName": "loss", "metricValue": i, "timestamp": 1_700_000_000_000 + i}]},
            )
            for i in range(3)
        ]
        batch_id = f"{entries[0].request_id}..{entries[-1].request_id}"
        spool.record_batch(entries, batch_id)
        with experiment.idempotent(batch_id):  # the first attempt: applied, but its reply was lost
            experiment.log_metrics_batch([point for entry in entries for point in entry.payload["values"]])
        assert Sender(spool, lambda key: experiment).send_pending() is None
        assert spool.depth() == 0
    assert [float(p["metricValue"]) for p in experiment.get_metrics("loss")] == [0.0, 1.0, 2.0]
