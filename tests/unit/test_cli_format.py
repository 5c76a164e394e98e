"""The numbers people read in ``show``, ``collect`` and ``status``: units, rounding, durations."""

from __future__ import annotations

import doctest

import pytest

from comet_agent import catalogue
from comet_agent.cli import format as fmt


def test_the_docstring_examples_hold():
    failed, tried = doctest.testmod(fmt)
    assert tried > 0 and failed == 0


@pytest.mark.parametrize("value, text", [
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
])
def test_numbers_keep_about_three_significant_digits(value, text):
    assert fmt.format_number(value) == text


@pytest.mark.parametrize("size, text", [
    (0, "0 B"),
    (1023, "1023 B"),
    (1024, "1 KiB"),
    (1536, "1.5 KiB"),
    (1048575, "1 MiB"),  # 1023.999 KiB rounds up to the next prefix, not to "1024 KiB"
    (156 * 2**20, "156 MiB"),
    (25276071936, "23.5 GiB"),
    (80 * 2**30, "80 GiB"),
    (3 * 2**40 + 2**39, "3.5 TiB"),
])
def test_bytes_use_binary_prefixes(size, text):
    assert fmt.format_bytes(size) == text


@pytest.mark.parametrize("seconds, text", [
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
])
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


@pytest.mark.parametrize("name, value, text", [
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
])
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


@pytest.mark.parametrize("metadata, state", [
    ({"running": True, "endTimeMillis": None}, "running"),
    ({"running": False, "endTimeMillis": 5}, "finished"),
    ({"running": False, "endTimeMillis": None}, "crashed"),
    ({"running": False, "endTimeMillis": 5, "hasCrashed": True}, "crashed"),
])
def test_experiment_state(metadata, state):
    assert fmt.experiment_state(metadata) == state
