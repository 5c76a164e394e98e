"""comet-agent: records where and how a training run executed, and what it consumed, into a Comet experiment.

Public surface: ``API``, ``APIExperiment`` (the REST client), ``Agent`` and ``monitor`` (the
agent in training code) and ``__version__``.
Heavy modules are imported lazily so that ``import comet_agent`` stays cheap inside training code.
"""

__version__ = "0.1.0"

__all__ = ["API", "APIExperiment", "Agent", "monitor", "__version__"]


def __getattr__(name):
    # Lazy: importing the client pulls in requests; training code that only wants the version
    # (or the context manager, later) should not pay for it.
    if name == "API":
        from comet_agent.api.api import API

        return API
    if name == "APIExperiment":
        from comet_agent.api.experiment import APIExperiment

        return APIExperiment
    if name in ("Agent", "monitor"):
        from comet_agent import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'comet_agent' has no attribute {name!r}")
