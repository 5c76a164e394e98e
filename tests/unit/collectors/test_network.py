"""NetworkCollector on recorded /proc/net/dev sequences."""

from __future__ import annotations

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.network import NetworkCollector
from tests.support.procfs_steps import ManualClock, ProcfsSteps


def started(tmp_path):
    steps, clock = ProcfsSteps("network-counters", tmp_path), ManualClock()
    collector = NetworkCollector(procfs_root=steps.proc, clock=clock)
    return steps, clock, collector


def test_network_first_call_returns_nothing(tmp_path):
    _, _, collector = started(tmp_path)
    assert (collector.name, collector.cadence) == ("network", "cpu")
    assert collector.sample(0) == []


def test_network_rates_sum_interfaces_except_loopback(tmp_path):
    steps, clock, collector = started(tmp_path)
    collector.sample(0)
    steps.advance_to(1)
    clock.advance(4.0)
    [sample] = collector.sample(4_000)
    # eth0 +400000 rx / +100000 tx, docker0 +100 / +200; lo's 9 MB of local traffic is not counted
    assert sample.received_bytes_per_s == pytest.approx(400_100 / 4.0)
    assert sample.sent_bytes_per_s == pytest.approx(100_200 / 4.0)
    assert sample.taken_at_ms == 4_000


def test_network_counter_going_backwards_gives_no_rate(tmp_path):
    steps, clock, collector = started(tmp_path)
    collector.sample(0)
    steps.advance_to(1)
    clock.advance(1.0)
    collector.sample(1_000)
    steps.advance_to(2)  # eth0 counters reset (driver reload)
    clock.advance(1.0)
    assert collector.sample(2_000) == []


def test_network_interfaces_that_appear_or_vanish_are_left_out_of_the_interval(tmp_path):
    steps, clock, collector = started(tmp_path)
    steps.advance_to(2)
    collector.sample(0)
    steps.advance_to(3)  # wlan0 appears with large counters, docker0 disappears
    clock.advance(2.0)
    [sample] = collector.sample(2_000)
    assert sample.received_bytes_per_s == pytest.approx(1_000 / 2.0)  # eth0 only
    assert sample.sent_bytes_per_s == pytest.approx(1_000 / 2.0)


def test_network_unavailable_without_net_dev(tmp_path):
    with pytest.raises(Unavailable, match="net"):
        NetworkCollector(procfs_root=str(tmp_path))
