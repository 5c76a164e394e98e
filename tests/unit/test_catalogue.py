"""The metric catalogue: lookups, the generated docs/metrics.md, and its own consistency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from comet_agent import catalogue
from comet_agent.catalogue import CATALOGUE, Kind, Origin, Window, entry_for, index_of, sort_key, unit_for, window_rule

REPO = Path(__file__).resolve().parents[2]
METRICS_DOC = REPO / "docs" / "metrics.md"


@pytest.mark.parametrize(
    "name,pattern,unit,index",
    [
        ("sys.cpu.percent.avg", "sys.cpu.percent.avg", "percent", None),
        ("sys.cpu.percent.01", "sys.cpu.percent.<NN>", "percent", 1),
        ("sys.cpu.percent.99", "sys.cpu.percent.<NN>", "percent", 99),
        ("sys.cpu.percent.100", "sys.cpu.percent.<NN>", "percent", 100),
        ("sys.cpu.percent.512", "sys.cpu.percent.<NN>", "percent", 512),
        ("sys.gpu.0.power_usage", "sys.gpu.<i>.power_usage", "mW", 0),
        ("sys.gpu.15.temperature", "sys.gpu.<i>.temperature", "°C", 15),
        ("sys.gpu.3.percent.used_memory", "sys.gpu.<i>.percent.used_memory", "percent", 3),
        ("sys.proc.gpu.10.used_memory", "sys.proc.gpu.<i>.used_memory", "bytes", 10),
        ("sys.network.send_bps", "sys.network.send_bps", "bytes/s", None),
        ("sys.gpu.1.clock_sm", "sys.gpu.<i>.clock_sm", "MHz", 1),
    ],
)
def test_lookup_finds_the_row_its_unit_and_its_index(name, pattern, unit, index):
    assert entry_for(name).pattern == pattern
    assert unit_for(name) == unit
    assert index_of(name) == index


@pytest.mark.parametrize(
    "name",
    [
        "loss",
        "sys.cpu.percent.1",
        "sys.cpu.percent.00",
        "sys.cpu.percent.001",
        "sys.cpu.percent.",
        "sys.gpu.01.power_usage",
        "sys.gpu.x.power_usage",
        "sys.gpu.0.power_usage.extra",
        "sys.gpu.0.new_field",
        "node1.sys.gpu.0.power_usage",
        "sys.compute.other",
    ],
)
def test_names_we_do_not_emit_are_not_catalogued(name):
    assert entry_for(name) is None and unit_for(name) is None and index_of(name) is None
    assert window_rule(name) is Window.MEAN  # user metrics average over a push window


@pytest.mark.parametrize(
    "name,rule",
    [
        ("sys.cpu.percent.01", "mean"),
        ("sys.cpu.percent.128", "mean"),
        ("sys.gpu.0.gpu_utilization", "mean"),
        ("sys.gpu.1.used_memory", "max"),
        ("sys.ram.used", "max"),
        ("sys.proc.rss", "max"),
        ("sys.disk.root.used", "max"),
        ("sys.gpu.0.free_memory", "min"),
        ("sys.ram.available", "min"),
        ("sys.ram.total", "last"),
        ("sys.gpu.0.total_memory", "last"),
        ("sys.gpu.0.ecc_errors_corrected", "last"),
        ("sys.gpu.12.throttle_reasons", "or"),
        ("sys.load.avg", "mean"),
    ],
)
def test_window_rules_are_strings_too(name, rule):
    assert window_rule(name) == rule


def test_name_builds_what_the_lookup_parses():
    for entry in CATALOGUE:
        if entry.placeholder is None:
            assert entry.name() == entry.pattern
            assert entry_for(entry.name()) is entry
            with pytest.raises(ValueError):
                entry.name(1)
            continue
        for index in (1, 9, 10, 99, 100, 511):
            name = entry.name(index)
            assert entry_for(name) is entry and index_of(name) == index
        with pytest.raises(ValueError):
            entry.name()
    assert entry_for("sys.cpu.percent.01").name(7) == "sys.cpu.percent.07"
    with pytest.raises(ValueError):
        entry_for("sys.cpu.percent.01").name(0)  # <NN> starts at 01: CPU 0 is .01


def test_every_row_is_complete_and_consistent():
    # A row's source is checked where it can be without a list kept here: the fixture host's
    # collector of that name emits the row (the both-ways tests below), and docs/metrics.md has a
    # section for it (render_markdown refuses a source without one).
    whole_units = {"bytes", "bytes/s", "mW", "MHz", "count", "bitmask"}
    for entry in CATALOGUE:
        assert entry.pattern.startswith("sys.") and entry.description and entry.source, entry
        assert isinstance(entry.kind, Kind) and isinstance(entry.window, Window) and isinstance(entry.origin, Origin)
        # whole-number series are exactly those in whole units; the docs promise it
        assert entry.integer == (entry.unit in whole_units), entry.pattern
        # a counter's window value is its latest total; a rate is never a running total
        if entry.kind is Kind.COUNTER:
            assert entry.window is Window.LAST, entry.pattern
    assert len({entry.pattern for entry in CATALOGUE}) == len(CATALOGUE)


def test_a_pattern_with_two_placeholders_is_refused():
    with pytest.raises(ValueError, match="more than one placeholder"):
        catalogue.CatalogueEntry("sys.gpu.<i>.mig.<i>.x", "bytes", Kind.GAUGE, Window.MAX, "x", "gpu", Origin.OURS)


def test_sort_key_orders_indexed_series_by_number_and_catalogue_rows_in_order():
    names = [
        "loss",
        "sys.cpu.percent.100",
        "sys.gpu.10.power_usage",
        "sys.cpu.percent.10",
        "sys.gpu.2.power_usage",
        "sys.cpu.percent.99",
        "sys.cpu.percent.avg",
        "sys.ram.used",
        "accuracy",
    ]
    assert sorted(names, key=sort_key) == [
        "sys.cpu.percent.avg",
        "sys.cpu.percent.10",
        "sys.cpu.percent.99",
        "sys.cpu.percent.100",
        "sys.ram.used",
        "sys.gpu.2.power_usage",
        "sys.gpu.10.power_usage",
        "accuracy",
        "loss",
    ]


def test_lookups_are_cached_per_name():
    name = "sys.gpu.13.clock_mem"
    entry_for(name)
    hits = catalogue._lookup.cache_info().hits
    assert unit_for(name) == "MHz" and window_rule(name) is Window.MEAN and index_of(name) == 13
    assert catalogue._lookup.cache_info().hits == hits + 3


def test_docs_metrics_md_is_generated_from_the_catalogue():
    """Fails when docs/metrics.md was not regenerated after a catalogue change."""
    expected = catalogue.render_markdown()
    assert METRICS_DOC.read_text(encoding="utf-8") == expected, (
        "docs/metrics.md is out of date: python -m comet_agent.catalogue --markdown > docs/metrics.md"
    )


def test_docs_name_every_row():
    text = catalogue.render_markdown()
    for entry in CATALOGUE:
        assert f"| `{entry.pattern}` | {entry.unit} | {entry.kind.value} | {entry.window.value} |" in text


def test_the_module_prints_the_docs():
    result = subprocess.run(
        [sys.executable, "-m", "comet_agent.catalogue", "--markdown"],
        capture_output=True,
        check=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.stdout.decode("utf-8") == catalogue.render_markdown()
    usage = subprocess.run([sys.executable, "-m", "comet_agent.catalogue"], capture_output=True, cwd=REPO, timeout=60)
    assert usage.returncode == 2 and b"--markdown" in usage.stderr


# ------------------------------------------------------------------------------------------------
# Both ways against a fixture host: every emitted name is catalogued, every row is emitted.


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """``{metric name: collector name}`` for every point the fixture host's records map to."""
    from comet_agent.delivery.payloads import metric_points
    from tests.support.fixture_host import fixture_host_records

    names: dict[str, set] = {}
    for collector_name, record in fixture_host_records(tmp_path_factory.mktemp("fixture-host")):
        for point in metric_points([record]):
            names.setdefault(point["metricName"], set()).add(collector_name)
    return names


def test_every_name_a_fixture_host_emits_is_catalogued_under_its_collector(emitted):
    uncatalogued = sorted(name for name in emitted if entry_for(name) is None)
    assert uncatalogued == [], "add these to comet_agent/catalogue.py"
    for name, collectors in emitted.items():
        assert collectors == {entry_for(name).source}, name


def test_every_catalogue_row_is_emitted_by_some_fixture(emitted):
    rows_seen = {entry_for(name).pattern for name in emitted if entry_for(name) is not None}
    never_emitted = [entry.pattern for entry in CATALOGUE if entry.pattern not in rows_seen]
    assert never_emitted == [], "no fixture produces these rows: record a fixture that does, or remove the row"


def test_the_fixture_host_covers_the_edges_of_indexed_names(emitted):
    # Beyond 99 CPUs and on more than one GPU: where name order and number order part ways.
    assert {"sys.cpu.percent.01", "sys.cpu.percent.99", "sys.cpu.percent.100", "sys.cpu.percent.128"} <= set(emitted)
    assert {index_of(name) for name in emitted if name.startswith("sys.gpu.")} == {0, 1, 2, 3}
