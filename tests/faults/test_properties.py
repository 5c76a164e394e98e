"""Property-based tests (hypothesis): configuration files, server replies and /proc contents never
raise anything but the documented error."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comet_agent import errors
from comet_agent.agent import INTERVAL_BOUNDS_MS, clamp_interval_ms
from comet_agent.api.api import API
from comet_agent.api.client import RetryPolicy, parse_retry_after_s
from comet_agent.api.experiment import APIExperiment
from comet_agent.config import resolve_config
from comet_agent.sources import procfs
from tests.support.recording_server import Fault, RecordingServer

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@FAST
@given(text=st.text(max_size=400))
def test_any_config_file_resolves_or_raises_a_config_error(tmp_path_factory, text):
    """Pass: any text as .comet.config either resolves or raises ConfigError/ValueError, never another exception."""
    home = tmp_path_factory.mktemp("home")
    (home / ".comet.config").write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        resolve_config(environ={}, cwd=home, home=home)
    except ValueError:
        pass


@FAST
@given(value=st.text(max_size=60), custom=st.none() | st.text(max_size=30), now_s=st.floats(0, 4e9))
def test_any_retry_after_header_parses_to_none_or_a_non_negative_wait(value, custom, now_s):
    """Pass: any Retry-After / Retry-After-Custom value gives None or a wait >= 0 that is not NaN, no exception
    (an infinite wait is capped by the client and the sender)."""
    headers = {"Retry-After": value}
    if custom is not None:
        headers["Retry-After-Custom"] = custom
    wait_s = parse_retry_after_s(headers, now_s)
    assert wait_s is None or (wait_s >= 0 and not math.isnan(wait_s))


@FAST
@given(name=st.sampled_from(sorted(INTERVAL_BOUNDS_MS)), value=json_values)
def test_any_recommended_interval_is_clamped_into_bounds_or_ignored(name, value):
    """Pass: any JSON value from update_status() gives (None, reason) or a value within the bounds."""
    ms, reason = clamp_interval_ms(name, value)
    low, high = INTERVAL_BOUNDS_MS[name]
    assert (ms is None and reason) or low <= ms <= high


PARSERS = [
    procfs.parse_stat,
    procfs.parse_cpuinfo,
    procfs.parse_meminfo,
    procfs.parse_loadavg,
    procfs.parse_diskstats,
    procfs.parse_net_dev,
    procfs.parse_pid_stat,
]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@FAST
@given(
    text=st.text(max_size=300)
    | st.lists(st.text(alphabet="0123456789 :abcdefghijklmnopqrstuvwxyz()\t-.", max_size=60), max_size=12).map(
        "\n".join
    )
)
def test_any_proc_text_parses_or_raises_value_error(parser, text):
    """Pass: a /proc parser given any text returns or raises ValueError (the documented error), nothing else."""
    try:
        parser(text)
    except ValueError:
        pass


@pytest.fixture(scope="module")
def server():
    with RecordingServer() as running:
        yield running


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    status=st.sampled_from([200, 201, 204, 400, 404, 429, 500, 502]),
    body=st.binary(max_size=200),
    content_type=st.sampled_from(["application/json", "text/html", "text/plain", "application/octet-stream"]),
    retry_after=st.none() | st.text(max_size=20),
)
def test_any_server_reply_to_a_write_returns_or_raises_a_typed_error(server, status, body, content_type, retry_after):
    """Pass: a write answered with any status, body and content type returns or raises a CometApiError
    subclass (what the sender classifies), never a raw requests/JSON/Unicode exception."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    server.add_fault(
        Fault(status=status, body=body, content_type=content_type, headers=headers),
        times=1,
        path="/api/rest/v2/write/experiment/log-other",
    )
    api = API(api_key="property-key-0123456789", url_override=server.clientlib_url, retry=RetryPolicy(max_retries=0))
    try:
        experiment = APIExperiment(api=api, previous_experiment="f" * 32)
        try:
            experiment.log_other("k", "v")
        except errors.CometApiError:
            pass
    finally:
        api.close()
