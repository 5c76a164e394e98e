"""Collectors: one module per domain, turning sources into records.

Two kinds:

- a *static* collector runs once per run (host, packages, git, GPU static info) and returns one
  snapshot record from ``collect()``;
- a *periodic* collector is sampled by the scheduler; ``sample(now_ms)`` returns a sequence of
  sample records, empty when it has nothing yet (e.g. the first CPU call: rates need two readings,
  and we never report a fake 0.0).

A collector whose source is absent raises ``Unavailable(reason)`` from its constructor (or from
``collect()``); the caller reports the reason once and carries on with the others. A field the
hardware or OS does not support is ``None``, never a fake zero.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable


class Unavailable(Exception):
    """This collector cannot run here; ``reason`` says why (shown once, at INFO)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class StaticCollector(Protocol):
    """Collects once per run. ``name`` is a stable snake_case id (CLI, logs, ``unavailable`` map)."""

    name: str

    def collect(self) -> object: ...


@runtime_checkable
class PeriodicCollector(Protocol):
    """Sampled each tick. ``cadence`` is ``"cpu"`` or ``"gpu"``: which server interval drives its pushes."""

    name: str
    cadence: str

    def sample(self, now_ms: int) -> Sequence[object]: ...

    def close(self) -> None: ...


@runtime_checkable
class CapturingCollector(PeriodicCollector, Protocol):
    """A periodic collector whose tick splits in two: ``capture()`` reads its sources now and
    parses nothing (file text and a clock reading), ``decode(captured, now_ms)`` turns captures
    into records later, called once per capture in capture order (rates are taken between
    consecutive captures). ``sample(now_ms)`` is ``decode(capture(), now_ms)``.

    Why: at one sample a second every tick runs cold, and parsing cold costs several times what
    the same parsing costs in a batch (``engine/host_sampler.py``, ``defer_decoding``).
    """

    def capture(self) -> Any: ...

    def decode(self, captured: Any, now_ms: int) -> Sequence[object]: ...
