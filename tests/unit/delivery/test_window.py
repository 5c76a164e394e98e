"""A push window's samples become one value per metric, then the requests that carry them."""

from __future__ import annotations

import pytest

from comet_agent.catalogue import window_rule
from comet_agent.delivery.payloads import aggregate_window, push_requests


def _points(name, values, start_ms=1000):
    return [{"metricName": name, "metricValue": v, "timestamp": start_ms + 100 * i} for i, v in enumerate(values)]


@pytest.mark.parametrize(
    "name,rule",
    [
        ("sys.cpu.percent.01", "mean"),
        ("sys.gpu.0.gpu_utilization", "mean"),
        ("sys.network.send_bps", "mean"),
        ("sys.gpu.1.used_memory", "max"),
        ("sys.ram.used", "max"),
        ("sys.proc.rss", "max"),
        ("sys.disk.root.used", "max"),
        ("sys.gpu.0.free_memory", "min"),
        ("sys.ram.available", "min"),
        ("sys.ram.total", "last"),
        ("sys.gpu.0.total_memory", "last"),
        ("sys.gpu.0.ecc_errors_corrected", "last"),
        ("sys.gpu.0.throttle_reasons", "or"),
        ("sys.load.avg", "mean"),
        ("user_metric", "mean"),
    ],
)
def test_window_rules(name, rule):
    assert window_rule(name) == rule


def test_aggregate_window_applies_each_rule_and_keeps_the_last_timestamp():
    points = (
        _points("sys.cpu.percent.avg", [10.0, 20.0, 60.0])
        + _points("sys.ram.used", [5, 9, 7])
        + _points("sys.ram.available", [50, 40, 45])
        + _points("sys.ram.total", [100, 100, 101])
        + _points("sys.gpu.0.throttle_reasons", [0, 4, 1])
        + _points("sys.network.send_bps", [1, 2, 2])
    )
    result = {p["metricName"]: p for p in aggregate_window(points)}
    assert result["sys.cpu.percent.avg"]["metricValue"] == pytest.approx(30.0)
    assert result["sys.ram.used"]["metricValue"] == 9
    assert result["sys.ram.available"]["metricValue"] == 40
    assert result["sys.ram.total"]["metricValue"] == 101
    assert result["sys.gpu.0.throttle_reasons"]["metricValue"] == 5
    assert result["sys.network.send_bps"]["metricValue"] == 2  # whole bytes per second
    assert isinstance(result["sys.network.send_bps"]["metricValue"], int)
    assert all(p["timestamp"] == 1200 for p in result.values())


def test_a_window_of_one_sample_is_unchanged():
    points = _points("sys.load.avg5", [1.25])
    assert aggregate_window(points) == points


def _one_push_of_each_kind():
    return (
        _points("sys.cpu.percent.01", [10.0])
        + _points("sys.cpu.percent.02", [30.0])
        + _points("sys.cpu.percent.avg", [20.0])
        + _points("sys.ram.total", [100])
        + _points("sys.ram.used", [40])
        + _points("sys.load.avg", [0.5])
        + _points("sys.load.avg5", [0.25])
        + [
            {"metricName": f"sys.gpu.0.{f}", "metricValue": v, "timestamp": 1000}
            for f, v in (
                ("free_memory", 60),
                ("used_memory", 20),
                ("total_memory", 80),
                ("gpu_utilization", 97.6),
                ("temperature", 61),
            )
        ]
    )


def test_push_requests_sends_one_metric_batch_with_every_series_by_name():
    """The default: one request per push, what comet_ml's own system monitors send."""
    points = _one_push_of_each_kind()
    assert push_requests(points) == [("metrics_batch", {"values": points})]


def test_push_requests_of_a_window_batches_the_aggregates():
    points = _points("sys.cpu.percent.avg", [10.0, 30.0]) + _points("sys.ram.used", [5, 9])
    assert push_requests(points, resolution="window") == [
        (
            "metrics_batch",
            {
                "values": [
                    {"metricName": "sys.cpu.percent.avg", "metricValue": 20.0, "timestamp": 1100},
                    {"metricName": "sys.ram.used", "metricValue": 9, "timestamp": 1100},
                ]
            },
        )
    ]


def test_push_requests_maps_comet_metrics_to_their_endpoints_and_the_rest_to_a_batch():
    requests = dict(push_requests(_one_push_of_each_kind(), per_kind_endpoints=True))
    assert requests["cpu_metrics"] == {"cpu_metrics": [10.0, 30.0], "timestamp": 1000}
    assert requests["ram_metrics"] == {"total_ram": 100, "used_ram": 40, "timestamp": 1000}
    assert requests["load_metrics"] == {"load_avg": 0.5, "timestamp": 1000}
    assert requests["gpu_metrics"] == {
        "gpus": [
            {"gpuId": 0, "freeMemory": 60, "usedMemory": 20, "gpuUtilization": 98, "totalMemory": 80, "timestamp": 1000}
        ]
    }
    batch_names = [p["metricName"] for p in requests["metrics_batch"]["values"]]
    # What the server derives from the four endpoints is not sent twice.
    assert batch_names == ["sys.load.avg5", "sys.gpu.0.temperature"]


def test_push_requests_keeps_a_gpu_without_all_five_keys_in_the_batch():
    points = [{"metricName": "sys.gpu.3.used_memory", "metricValue": 5, "timestamp": 1}]
    assert push_requests(points, per_kind_endpoints=True) == [("metrics_batch", {"values": points})]


@pytest.mark.parametrize("per_kind_endpoints", [False, True])
def test_push_requests_splits_batches_at_1000_points(per_kind_endpoints):
    points = [{"metricName": f"user.{i}", "metricValue": i, "timestamp": 1} for i in range(2500)]
    sizes = [len(p["values"]) for endpoint, p in push_requests(points, per_kind_endpoints=per_kind_endpoints)]
    assert sizes == [1000, 1000, 500]


def test_a_window_mean_of_a_whole_number_series_stays_whole_and_a_fraction_stays_a_fraction():
    points = _points("sys.gpu.0.power_usage", [300_000, 300_001]) + _points("sys.gpu.0.temperature", [60.0, 61.0])
    result = {p["metricName"]: p["metricValue"] for p in aggregate_window(points)}
    assert result["sys.gpu.0.power_usage"] in (300_000, 300_001) and isinstance(result["sys.gpu.0.power_usage"], int)
    assert result["sys.gpu.0.temperature"] == pytest.approx(60.5)


def _per_cpu_points(cpu_numbers):
    # Each CPU's value encodes its own number, so a value under another CPU's name shows.
    return [
        {"metricName": f"sys.cpu.percent.{n + 1:02d}", "metricValue": n / 10, "timestamp": 1000} for n in cpu_numbers
    ]


@pytest.mark.parametrize("cpu_count", [99, 100, 128, 512])
def test_push_requests_lists_cpus_in_numeric_order_beyond_99(cpu_count):
    points = _per_cpu_points(range(cpu_count)) + _points("sys.cpu.percent.avg", [5.0])
    [(endpoint, payload)] = push_requests(points, per_kind_endpoints=True)
    assert endpoint == "cpu_metrics"
    # position p of the list becomes sys.cpu.percent.<p+1> on the server: it must hold CPU p's value
    assert payload["cpu_metrics"] == [n / 10 for n in range(cpu_count)]


def test_push_requests_sends_per_cpu_figures_by_name_when_a_cpu_is_missing():
    """CPU 2 went offline this interval: a positional list would put CPU 3's value under .03."""
    points = _per_cpu_points([0, 1, 3, 127]) + _points("sys.cpu.percent.avg", [5.0])
    [(endpoint, payload)] = push_requests(points, per_kind_endpoints=True)
    assert endpoint == "metrics_batch"
    assert {p["metricName"]: p["metricValue"] for p in payload["values"]} == {
        "sys.cpu.percent.01": 0.0,
        "sys.cpu.percent.02": 0.1,
        "sys.cpu.percent.04": 0.3,
        "sys.cpu.percent.128": 12.7,
        "sys.cpu.percent.avg": 5.0,
    }


def test_push_requests_orders_gpus_by_index_beyond_9():
    points = [
        {"metricName": f"sys.gpu.{i}.{f}", "metricValue": 100 * i + k, "timestamp": 1000}
        for i in (10, 2, 1, 0)
        for k, f in enumerate(("free_memory", "used_memory", "total_memory", "gpu_utilization"))
    ]
    requests = dict(push_requests(points, per_kind_endpoints=True))
    assert [
        (item["gpuId"], item["freeMemory"], item["gpuUtilization"]) for item in requests["gpu_metrics"]["gpus"]
    ] == [(0, 0, 3), (1, 100, 103), (2, 200, 203), (10, 1000, 1003)]


# ------------------------------------------------------------------ full resolution


def _samples(count, start_ms=1_700_000_000_000, every_ms=1000):
    """``count`` samples of real records, as the job's window holds them: sample after sample."""
    from comet_agent.delivery.payloads import metric_points
    from comet_agent.records import LoadSample, MemorySample

    records = []
    for i in range(count):
        taken = start_ms + i * every_ms
        records.append(LoadSample(0.5 + i, 0.25, 0.125, taken_at_ms=taken))
        records.append(
            MemorySample(
                total_bytes=1000,
                used_bytes=100 + i,
                available_bytes=900 - i,
                used_percent=10.0 + i / 10,
                swap_total_bytes=0,
                swap_used_bytes=0,
                swap_used_percent=None,
                taken_at_ms=taken,
            )
        )
    return metric_points(records)


def test_full_resolution_carries_every_sample_with_its_own_timestamp_in_one_batch():
    window = _samples(60)  # one minute of 1 s samples, the default push cadence
    requests = push_requests(window)  # full is the default
    assert [endpoint for endpoint, _ in requests] == ["metrics_batch"]
    values = requests[0][1]["values"]
    assert values == window, "every point, in sample order, unchanged"
    load = [(p["timestamp"], p["metricValue"]) for p in values if p["metricName"] == "sys.load.avg"]
    assert load == [(1_700_000_000_000 + 1000 * i, 0.5 + i) for i in range(60)]
    series = {p["metricName"] for p in values}
    for name in series:  # every series has one point per sample, at the sample's own time
        stamps = [p["timestamp"] for p in values if p["metricName"] == name]
        assert stamps == sorted(set(stamps)) and len(stamps) == 60, name


def test_window_resolution_carries_one_aggregate_per_series_of_the_same_window():
    window = _samples(60)
    (endpoint, payload), *more = push_requests(window, resolution="window")
    assert endpoint == "metrics_batch" and not more
    by_name = {p["metricName"]: p for p in payload["values"]}
    assert len(payload["values"]) == len(by_name) == len(window) // 60
    assert by_name["sys.load.avg"]["metricValue"] == pytest.approx(sum(0.5 + i for i in range(60)) / 60)
    assert by_name["sys.ram.used"]["metricValue"] == 159, "the peak of memory in use"
    assert {p["timestamp"] for p in payload["values"]} == {1_700_000_000_000 + 59_000}


def test_a_window_of_one_sample_travels_the_same_in_both_resolutions():
    window = _samples(1)
    assert push_requests(window, resolution="full") == push_requests(window, resolution="window")


@pytest.mark.parametrize("count,sizes", [(999, [999]), (1000, [1000]), (1001, [1000, 1]), (2500, [1000, 1000, 500])])
def test_full_resolution_chunks_at_the_batch_limit_only_when_needed(count, sizes):
    window = [{"metricName": "sys.load.avg", "metricValue": i, "timestamp": 1000 + i} for i in range(count)]
    requests = push_requests(window)
    assert [len(payload["values"]) for _, payload in requests] == sizes
    assert [p for _, payload in requests for p in payload["values"]] == window, "consecutive slices, in order"


def test_full_resolution_with_per_kind_endpoints_sends_their_aggregate_and_the_rest_in_full():
    window = _points("sys.ram.total", [100, 100]) + _points("sys.ram.used", [40, 60]) + _points("sys.load.avg5", [1, 3])
    requests = dict(push_requests(window, per_kind_endpoints=True))
    # log_ram_metrics takes one value: the window's (peak used, last total, at the last timestamp).
    assert requests["ram_metrics"] == {"total_ram": 100, "used_ram": 60, "timestamp": 1100}
    assert requests["metrics_batch"]["values"] == _points("sys.load.avg5", [1, 3]), "the rest: every sample"


def test_an_unknown_resolution_is_refused():
    with pytest.raises(ValueError, match="full, window"):
        push_requests(_samples(2), resolution="fine")
