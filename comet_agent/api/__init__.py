"""Our re-implementation of Comet's REST client: ``API`` and ``APIExperiment``.

``comet_agent.api.client.RestClient`` is the low-level session (auth, retries, redirects, typed
errors from ``comet_agent.errors``); ``API`` and ``APIExperiment`` mirror comet_ml 3.58.8.
"""

from __future__ import annotations

from comet_agent.api.api import API
from comet_agent.api.experiment import APIExperiment

__all__ = ["API", "APIExperiment"]
