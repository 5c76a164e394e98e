"""The numbers people read in ``show``, ``collect`` and ``status``: units, rounding, durations."""

from __future__ import annotations

import doctest

import pytest

from comet_agent import catalogue
from comet_agent.cli import format as fmt


def test_the_docstring_examples_hold():
    failed, tried = doctest.testmod(fmt)
    assert tried > 0 and failed == 0


@pytest.mark.parametrize(
    "value, text",
    [
        (1.0101010101010102, "1.01"),  # the complaint in issue #19
        (98.11320754716981, "98.1"),
        (99.96, "100"),
        (100.0, "100"),
        (1234.56, "1235"),
        (0.5, "0.5"),
        (0.000123456, "0.000123"),
        (1e-9, "0"),
        (-0.0, "0"),
        (-12.345, "-12.3"),
        (7, "7"),
        (25276071936, "25276071936"),
        (3.0, "3"),
    ],
)
def test_numbers_keep_about_three_significant_digits(value, text):
    assert fmt.format_number(value) == text


@pytest.mark.parametrize(
    "size, text",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (1048575, "1 MiB"),  # 1023.999 KiB rounds up to the next prefix, not to "1024 KiB"
        (156 * 2**20, "156 MiB"),
        (25276071936, "23.5 GiB"),
        (80 * 2**30, "80 GiB"),
        (3 * 2**40 + 2**39, "3.5 TiB"),
    ],
)
def test_bytes_use_binary_prefixes(size, text):
    assert fmt.format_bytes(size) == text


@pytest.mark.parametrize(
    "seconds, text",
    [
        (None, "-"),
        (0, "0 s"),
        (0.35, "350 ms"),
        (0.9999, "1 s"),
        (2.54, "2.5 s"),
        (45.4, "45 s"),
        (59.6, "1m 00s"),
        (68, "1m 08s"),
        (3723, "1h 02m 03s"),
        (2 * 86400 + 3 * 3600 + 4 * 60 + 5, "2d 03h 04m"),
        (-5, "0 s"),
    ],
)
def test_durations(seconds, text):
    assert fmt.format_duration_s(seconds) == text


def test_durations_in_milliseconds_and_ages():
    assert fmt.format_duration_ms(10000) == "10 s"
    assert fmt.format_duration_ms(None) == "-"
    assert fmt.format_age(1_000, now_ms=4_000) == "3 s ago"
    assert fmt.format_age(None) == "never"
    assert fmt.format_age(0, never="no push yet") == "no push yet"


def test_times_are_local_with_their_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    assert fmt.format_time_ms(1_700_000_000_000) == "2023-11-14 22:13:20 UTC"
    assert fmt.format_time_ms(None) == "-"


@pytest.mark.parametrize(
    "name, value, text",
    [
        ("sys.cpu.percent.02", "1.0101010101010102", "1.01%"),
        ("sys.proc.cpu.percent", 200.0, "200%"),
        ("sys.ram.used", 912822272, "871 MiB"),
        ("sys.gpu.3.used_memory", "85899345920", "80 GiB"),
        ("sys.network.send_bps", 1536, "1.5 KiB/s"),
        ("sys.gpu.0.power_usage", 245123, "245 W"),
        ("sys.gpu.0.power_limit", "700000", "700 W"),
        ("sys.gpu.0.power_usage", 61500, "61.5 W"),
        ("sys.gpu.1.clock_sm", 1980, "1980 MHz"),
        ("sys.gpu.1.temperature", 64.26, "64.3 °C"),
        ("sys.load.avg", 1.6899999999999997, "1.69"),
        ("sys.proc.threads", 12, "12"),
        ("sys.gpu.0.throttle_reasons", 4, "0x4"),
        ("loss", 0.123456789, "0.123"),
        ("accuracy", "0.91", "0.91"),
        ("comet_agent.cwd", "/tmp", "/tmp"),
        ("sys.ram.used", None, "-"),
    ],
)
def test_values_print_in_their_catalogue_unit(name, value, text):
    assert fmt.format_value(name, value) == text


# What a value of 2048 reads as, for each unit the catalogue uses: a new unit fails here until
# format_value knows how to write it.
_EXPECTED_BY_UNIT = {
    catalogue.PERCENT: "2048%",
    catalogue.BYTES: "2 KiB",
    catalogue.BYTES_PER_S: "2 KiB/s",
    catalogue.MILLIWATTS: "2.05 W",
    catalogue.MEGAHERTZ: "2048 MHz",
    catalogue.CELSIUS: "2048 °C",
    catalogue.COUNT: "2048",
    catalogue.TASKS: "2048",
    catalogue.BITMASK: "0x800",
}


@pytest.mark.parametrize("entry", catalogue.CATALOGUE, ids=lambda entry: entry.pattern)
def test_every_catalogued_series_has_a_unit_we_can_write(entry):
    index = {None: None, "<i>": 0, "<NN>": 1}[entry.placeholder]
    assert fmt.format_value(entry.name(index), 2048) == _EXPECTED_BY_UNIT[entry.unit]


@pytest.mark.parametrize(
    "metadata, state",
    [
        ({"running": True, "endTimeMillis": None}, "running"),
        ({"running": False, "endTimeMillis": 5}, "finished"),
        ({"running": False, "endTimeMillis": None}, "crashed"),
        ({"running": False, "endTimeMillis": 5, "hasCrashed": True}, "crashed"),
    ],
)
def test_experiment_state(metadata, state):
    assert fmt.experiment_state(metadata) == state


# -- the subcommands' text, from the documents their --json prints ---------------------------------

_REPORT = {
    "experimentKey": "5584b066dc4b4b8fbd03ed1a33abca2c",
    "name": "resnet",
    "workspace": "local",
    "project": "general",
    "url": "http://127.0.0.1:5055/local/general/5584b066dc4b4b8fbd03ed1a33abca2c",
    "startTimeMillis": 1_700_000_000_000,
    "endTimeMillis": 1_700_000_245_000,
    "tags": [],
    "systemDetails": {
        "hostname": "vm",
        "user": "alice",
        "pid": 42,
        "os": "Linux-6.1",
        "pythonVersion": "3.11.7",
        "executable": "/usr/bin/python3",
        "command": ["python", "train.py"],
        "totalRam": 25276071936,
        "installedPackages": ["numpy==2.0"],
        "osPackages": [],
        "gpuStaticInfoList": [],
    },
    "gitMetadata": {"user": None, "root": None, "branch": None, "parent": None, "origin": None},
    "metricsSummary": [
        {"name": "sys.ram.used", "valueMin": "906067968", "valueMax": "912822272", "valueCurrent": "912822272"},
        {"name": "loss", "valueMin": "0.1234567", "valueMax": "2.5", "valueCurrent": "0.1234567"},
        {"name": "sys.cpu.percent.02", "valueMin": "1.0101010101010102", "valueMax": "100.0", "valueCurrent": "55.55"},
        {"name": "sys.cpu.percent.avg", "valueMin": "2", "valueMax": "99.0566037735849", "valueCurrent": "50"},
    ],
    "others": [
        {"name": "comet_agent.exit_code", "valueCurrent": "3"},
        {"name": "comet_agent.cwd", "valueCurrent": "/w"},
    ],
}


def test_show_text_says_state_duration_exit_code_and_units():
    from comet_agent.cli.show import format_report

    text = format_report(_REPORT, {"running": False, "endTimeMillis": 1_700_000_245_000, "durationMillis": 245_000})
    lines = text.splitlines()
    assert "state       finished, exit code 3" in lines
    assert lines[3].startswith("duration    4m 05s (")
    assert "ram         23.5 GiB" in lines
    assert "other       comet_agent.cwd = /w" in lines and "exit_code =" not in text
    rows = [line.split() for line in lines if line.startswith("  ")]
    # Catalogue order, then the user's metrics; min, max, last in their units.
    assert rows == [
        ["sys.cpu.percent.avg", "2%", "99.1%", "50%"],
        ["sys.cpu.percent.02", "1.01%", "100%", "55.5%"],
        ["sys.ram.used", "864", "MiB", "871", "MiB", "871", "MiB"],
        ["loss", "0.123", "2.5", "0.123"],
    ]
    assert "1.0101010101010102" not in text


def test_show_text_leaves_out_what_the_experiment_lacks():
    from comet_agent.cli.show import format_report

    text = format_report(_REPORT, {"running": True, "endTimeMillis": None, "durationMillis": 5000})
    labels = {line.split()[0] for line in text.splitlines() if not line.startswith(" ")}
    assert not labels & {"git", "gpus", "tags"}, text
    assert "None" not in text
    bare = format_report({"experimentKey": "k", "url": "u", "metricsSummary": [], "others": []}, {"running": True})
    assert bare == "experiment  k\nurl         u\nstate       running\n"


def test_show_text_counts_identical_gpus_and_names_the_commit():
    from comet_agent.cli.show import format_report

    gpu = {"gpuIndex": 0, "name": "NVIDIA H200", "totalMemory": 150754820096, "uuid": "u", "powerLimit": 700000}
    report = {
        **_REPORT,
        "systemDetails": {**_REPORT["systemDetails"], "gpuStaticInfoList": [gpu, {**gpu, "gpuIndex": 1}]},
        "gitMetadata": {"branch": "refs/heads/main", "parent": "1a2b3c", "origin": None},
        "tags": ["a", "b"],
    }
    lines = format_report(report, {"running": False, "endTimeMillis": 1}).splitlines()
    assert "gpus        2 × NVIDIA H200 (140 GiB)" in lines
    assert "git         refs/heads/main @ 1a2b3c" in lines
    assert "tags        a, b" in lines


_STATUS = {
    "pid": 4567,
    "experiment_key": "abc",
    "experiment_url": "http://x/ws/p/abc",
    "server": "http://x",
    "intervals_ms": {"heartbeat": 10000, "cpu": 68000, "gpu": 60000},
    "sample_interval_s": None,
    "started_ms": 1_000,
    "last_push_ms": 310_000,
    "last_success_ms": None,
    "spool_depth": 3,
    "dropped_total": 2,
    "rejected": 0,
    "quarantined": 1,
    "last_error": None,
    "watching": "4560",
    "via": "agent",
}


def test_status_text_says_intervals_ages_and_the_spool():
    from comet_agent.cli.status import format_statuses

    text = format_statuses(
        [_STATUS, {**_STATUS, "via": "daemon", "sample_interval_s": 0.5}],
        {"pid": 12, "socket": "/run/d.sock", "interval_s": 60.0, "server": None, "jobs": [{}, {}]},
        now_ms=313_000,
    )
    lines = text.splitlines()
    assert lines[0] == (
        "daemon pid 12 on /run/d.sock: samples the host every 1m 00s, writes to its local server; "
        "2 registrations visible to you"
    )
    assert lines[1] == "agent pid 4567, watching pid 4560, running for 5m 12s"
    assert "  experiment  abc  http://x/ws/p/abc" in lines
    assert (
        "  intervals   heartbeat every 10 s; pushes of cpu metrics every 1m 08s, gpu metrics every 1m 00s; "
        "sampled at each push"
    ) in lines
    assert "  last push   3 s ago; last delivery none yet" in lines
    assert "  spool       3 records waiting, 2 dropped, 0 rejected, 1 quarantined" in lines
    assert "daemon job watching pid 4560, running for 5m 12s" in lines
    assert any(line.endswith("sampled every 500 ms, aggregated per push") for line in lines)
    assert "every push s" not in text and "None" not in text


def test_status_text_says_whether_each_sample_is_pushed():
    from comet_agent.cli.status import format_statuses

    full = {**_STATUS, "sample_interval_s": 1.0, "resolution": "full"}
    window = {**_STATUS, "sample_interval_s": 1.0, "resolution": "window"}
    lines = format_statuses([full, window], None, now_ms=313_000).splitlines()
    intervals = [line for line in lines if line.startswith("  intervals")]
    assert intervals[0].endswith("sampled every 1 s, every sample pushed")
    assert intervals[1].endswith("sampled every 1 s, aggregated per push")


def test_status_text_names_the_node_and_whether_this_rank_samples_the_host():
    from comet_agent.cli.status import format_statuses

    sampler = {**_STATUS, "node_id": "node1", "host_sampler": True}
    waiting = {**_STATUS, "node_id": "node1", "host_sampler": False}
    lines = format_statuses([sampler, waiting, _STATUS], None, now_ms=313_000).splitlines()
    nodes = [line for line in lines if line.startswith("  node ")]
    assert nodes == [
        "  node        node1: samples the host",
        "  node        node1: its own series only (another rank samples the host)",
    ]


def test_status_text_without_agents_names_the_data_directory():
    from comet_agent.cli.status import format_statuses

    assert format_statuses([], None, data_dir="/data") == "no agent is running with the data directory /data\n"
