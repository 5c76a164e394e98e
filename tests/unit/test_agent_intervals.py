"""Intervals the server recommends are validated and clamped before they drive the scheduler."""

from __future__ import annotations

import pytest

from comet_agent.agent import INTERVAL_BOUNDS_MS, clamp_interval_ms


@pytest.mark.parametrize(
    "value,expected",
    [
        (10000, 10000),
        ("5000", 5000),
        (2500.0, 2500),
        (1, INTERVAL_BOUNDS_MS["cpu"][0]),
        (10**12, INTERVAL_BOUNDS_MS["cpu"][1]),
    ],
)
def test_usable_values_are_clamped_into_bounds(value, expected):
    assert clamp_interval_ms("cpu", value)[0] == expected


@pytest.mark.parametrize("value", [0, -5, "abc", "", None, True, float("nan"), float("inf"), [1000], {"a": 1}])
def test_garbage_keeps_the_current_interval(value):
    ms, reason = clamp_interval_ms("gpu", value)
    assert ms is None
    assert reason


def test_clamping_is_explained():
    assert clamp_interval_ms("heartbeat", 10**9)[1] == f"{10**9!r} clamped to {INTERVAL_BOUNDS_MS['heartbeat'][1]}"
