"""The retry policy: how long to wait before sending a failed request again.

One policy type serves both places that retry, with different numbers: the REST client between
the attempts of one request (a few quick retries: ``max_retries``), and the sender between its
passes over the spool (no limit on passes, a longer ceiling). Which failures are sent again at all
is decided by ``comet_agent.errors.classify``; this module decides only *when*:

- full-jitter exponential backoff: a uniformly random wait between 0 and a ceiling that doubles
  from ``backoff_base_s`` up to ``backoff_max_s``;
- a server-requested wait (``Retry-After`` in seconds or as an HTTP date, or Comet's
  ``Retry-After-Custom``) is honoured when longer than the backoff, capped at
  ``retry_after_cap_s`` so that a broken or hostile server cannot park delivery for days, and
  never shortens the backoff (``Retry-After: 0`` must not make the sender spin).
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from typing import Mapping, Optional

from comet_agent import errors


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a request again.

    Args:
        max_retries: resends after the first attempt within one request (comet_ml uses 3: four
            attempts in all). The sender's passes over the spool are not limited by it.
        backoff_base_s: the first backoff ceiling, in seconds; it doubles at each retry.
        backoff_max_s: the largest backoff ceiling, in seconds.
        retry_after_cap_s: the longest server-requested wait honoured, in seconds; longer
            requests are shortened to this.

    Example::

        policy = RetryPolicy(max_retries=2, backoff_base_s=0.5)
        if policy.resends_now(error, attempt):
            time.sleep(policy.wait_s(attempt, rng, retry_after_s=7.0))
    """

    max_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    retry_after_cap_s: float = 600.0

    def backoff_s(self, retry_number: int, rng: random.Random) -> float:
        """Full-jitter wait before retry ``retry_number`` (1-based), in seconds."""
        ceiling_s = min(self.backoff_max_s, self.backoff_base_s * (2 ** (retry_number - 1)))
        return rng.uniform(0.0, ceiling_s)

    def wait_s(self, retry_number: int, rng: random.Random, retry_after_s: Optional[float] = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based): the full-jitter backoff, or
        ``retry_after_s`` (what the server asked for, if anything) when that is longer, capped."""
        wait_s = self.backoff_s(retry_number, rng)
        if retry_after_s is not None:
            wait_s = max(wait_s, min(float(retry_after_s), self.retry_after_cap_s))
        return wait_s

    def resends_now(self, error: errors.CometApiError, attempt: int) -> bool:
        """Whether the REST client sends the request again after attempt number ``attempt`` (1-based)
        failed with ``error``: a transient or throttled failure, within ``max_retries``."""
        return attempt <= self.max_retries and errors.classify(error) in errors.Failure.RESENT_AT_ONCE


def parse_retry_after_s(headers: Mapping[str, str], now_s: float) -> Optional[float]:
    """Seconds the server asked us to wait: ``Retry-After`` (delta seconds or HTTP date) or
    ``Retry-After-Custom`` (float seconds, what Comet sends on 429). None when absent or unparsable.
    ``now_s`` is the current epoch time in seconds (for HTTP dates)."""
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - now_s)
    custom = headers.get("Retry-After-Custom")
    if custom:
        try:
            return max(0.0, float(custom.strip()))
        except ValueError:
            return None
    return None
