"""The one retry policy and the one classification of failures, shared by the REST client and the sender."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet_agent import errors
from comet_agent.delivery.retry import RetryPolicy

Failure = errors.Failure


@pytest.mark.parametrize(
    "error, expected",
    [
        (errors.ConnectionFailed("refused"), Failure.TRANSIENT),
        (errors.RequestTimedOut("slow"), Failure.TRANSIENT),
        (errors.ServerError("503", status=503), Failure.TRANSIENT),
        (errors.ServerError("501", status=501), Failure.TRANSIENT),
        (errors.ClientError("408", status=408), Failure.TRANSIENT),
        (errors.Throttled("429", status=429, retry_after_s=3.0), Failure.THROTTLED),
        (errors.InvalidReply("html"), Failure.INVALID_REPLY),
        (errors.Unauthorized("401", status=401), Failure.UNAUTHORIZED),
        (errors.Unauthorized("403", status=403), Failure.UNAUTHORIZED),
        (errors.BadRequest("400", status=400), Failure.PERMANENT),
        (errors.NotFound("404", status=404), Failure.PERMANENT),
        (errors.ClientError("409", status=409), Failure.PERMANENT),
        (errors.PayloadTooLarge("413", status=413), Failure.PERMANENT),
        (errors.TooManyRedirects("loop"), Failure.PERMANENT),
        (errors.ServerError("told not to", status=503, retryable=False), Failure.PERMANENT),
    ],
)
def test_each_error_has_one_failure_class(error, expected):
    assert errors.classify(error) == expected


@pytest.mark.parametrize(
    "error, at_once",
    [
        (errors.ServerError("503", status=503), True),
        (errors.Throttled("429", status=429), True),
        (errors.InvalidReply("html"), False),
        (errors.Unauthorized("401", status=401), False),
        (errors.NotFound("404", status=404), False),
    ],
)
def test_the_client_resends_at_once_only_transient_and_throttled_within_its_budget(error, at_once):
    policy = RetryPolicy(max_retries=2)
    assert [policy.resends_now(error, attempt) for attempt in (1, 2, 3)] == [at_once, at_once, False]


def test_a_server_wait_longer_than_the_backoff_is_honoured_and_capped():
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=30.0, retry_after_cap_s=45.0)
    assert policy.wait_s(1, random.Random(0), retry_after_s=7.0) == 7.0
    assert policy.wait_s(1, random.Random(0), retry_after_s=86400.0) == 45.0


@given(retry_number=st.integers(1, 30), seed=st.integers(0, 2**32), retry_after_s=st.sampled_from([None, 0.0, 0.001]))
def test_a_short_or_zero_server_wait_never_shortens_the_backoff(retry_number, seed, retry_after_s):
    # Retry-After: 0 from a hostile server must not turn the sender's passes into a busy loop.
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=20.0)
    expected = policy.backoff_s(retry_number, random.Random(seed))
    assert policy.wait_s(retry_number, random.Random(seed), retry_after_s) == max(expected, retry_after_s or 0.0)
