"""How the subcommands write numbers for people: sizes, durations, ages and metric values in units.

``show``, ``collect`` and ``status`` print through these helpers so that the same quantity reads
the same everywhere. ``--json`` output never goes through here: machines get the raw values.

- ``format_number``: about three significant digits, no exponent, no trailing zeros
  (``1.0101010101010102`` -> ``1.01``, ``98.9725`` -> ``99``, ``1234.56`` -> ``1235``).
- ``format_bytes``: binary prefixes (``1.5 KiB``, ``23.5 GiB``); ``format_duration_s`` and
  ``format_duration_ms``: ``350 ms``, ``2.5 s``, ``4m 05s``, ``1h 02m 03s``, ``2d 03h 04m``.
- ``format_value(name, value)``: a metric value in its catalogue unit (``comet_agent.catalogue``):
  percent, bytes, bytes/s, power (the series are in mW, shown in W), MHz, °C, counts, load,
  bitmasks in hex; a name outside the catalogue (a user's ``loss``) as a plain number.
- ``experiment_state(metadata)``: ``running``, ``finished`` or ``crashed``, by the rule the
  experiment pages use.

Example:
    >>> format_value("sys.gpu.0.power_usage", 245123), format_value("sys.ram.used", 25276071936)
    ('245 W', '23.5 GiB')
    >>> format_duration_s(3723)
    '1h 02m 03s'
"""

from __future__ import annotations

import math
import time
from typing import Any, Optional

from comet_agent import catalogue

__all__ = [
    "experiment_state",
    "format_age",
    "format_bytes",
    "format_duration_ms",
    "format_duration_s",
    "format_git",
    "format_gpus",
    "format_number",
    "format_time_ms",
    "format_value",
    "to_number",
]

_BINARY_PREFIXES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_MOST_DECIMALS = 6


def to_number(value: Any) -> Optional[float]:
    """``value`` as a finite number, or ``None`` when it is not one.

    Comet's summaries carry values as strings (``"98.11"``); booleans are not numbers here.

    Example:
        >>> to_number("1.5"), to_number(3), to_number("n/a"), to_number(None)
        (1.5, 3, None, None)
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def format_number(value: float) -> str:
    """A number with about three significant digits, never in exponent form.

    Whole numbers print whole; otherwise 100 and above print with no decimals, 10 to 100 with
    one, 1 to 10 with two, and smaller ones with three significant digits (at most six
    decimals). Trailing zeros are dropped.

    Example:
        >>> [format_number(v) for v in (1.0101010101010102, 98.97, 1234.5, 0.000123, 12, 2.0, -0.5)]
        ['1.01', '99', '1234', '0.000123', '12', '2', '-0.5']
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100 or float(value).is_integer():
        decimals = 0
    elif magnitude >= 10:
        decimals = 1
    elif magnitude >= 1:
        decimals = 2
    else:
        decimals = min(_MOST_DECIMALS, 2 - math.floor(math.log10(magnitude)))
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_bytes(size_bytes: float) -> str:
    """A size with binary prefixes (1 KiB = 1024 bytes).

    Example:
        >>> [format_bytes(v) for v in (0, 1023, 1536, 156 * 2**20, 25276071936)]
        ['0 B', '1023 B', '1.5 KiB', '156 MiB', '23.5 GiB']
    """
    magnitude = abs(size_bytes)
    power = 0
    while magnitude >= 1024 and power < len(_BINARY_PREFIXES) - 1:
        magnitude /= 1024
        power += 1
    if power == 0:
        return f"{size_bytes:.0f} B"
    # Rounding may carry to 1024 (1023.99 MiB): say 1 GiB instead.
    if power < len(_BINARY_PREFIXES) - 1 and format_number(magnitude) == "1024":
        magnitude, power = 1.0, power + 1
    return f"{'-' if size_bytes < 0 else ''}{format_number(magnitude)} {_BINARY_PREFIXES[power]}"


def format_duration_s(seconds: Optional[float]) -> str:
    """A duration in seconds for people: ``350 ms``, ``2.5 s``, ``45 s``, ``4m 05s``, ``1h 02m 03s``,
    ``2d 03h 04m``; ``-`` for ``None``. Negative durations (clocks apart) print as ``0 s``.

    Example:
        >>> [format_duration_s(v) for v in (0.35, 2.54, 45.2, 245, 3723, 183840)]
        ['350 ms', '2.5 s', '45 s', '4m 05s', '1h 02m 03s', '2d 03h 04m']
    """
    if seconds is None:
        return "-"
    seconds = max(float(seconds), 0.0)
    if seconds < 0.9995:  # what would print as "1000 ms" is "1 s"
        return f"{seconds * 1000:.0f} ms" if seconds else "0 s"
    if seconds < 10:
        return f"{format_number(round(seconds, 1))} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"


def format_duration_ms(duration_ms: Optional[float]) -> str:
    """``format_duration_s`` for a duration in milliseconds.

    Example:
        >>> format_duration_ms(68000)
        '1m 08s'
    """
    return format_duration_s(None if duration_ms is None else duration_ms / 1000)


def format_age(then_ms: Optional[float], now_ms: Optional[float] = None, *, never: str = "never") -> str:
    """How long ago an epoch-ms time was: ``3 s ago``, ``2m 10s ago``; ``never`` for ``None`` or 0.

    Example:
        >>> format_age(1_000, now_ms=131_000), format_age(None)
        ('2m 10s ago', 'never')
    """
    if not then_ms:
        return never
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    return f"{format_duration_ms(now_ms - then_ms)} ago"


def format_time_ms(epoch_ms: Optional[float]) -> str:
    """An epoch-ms time as local ``YYYY-MM-DD HH:MM:SS TZ``; ``-`` for ``None``.

    Example:
        >>> format_time_ms(None)
        '-'
    """
    if epoch_ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch_ms / 1000))


def format_value(name: str, value: Any) -> str:
    """A metric value in the unit the catalogue gives ``name``.

    ``percent`` -> ``12.3%``; ``bytes`` -> ``1.5 GiB``; ``bytes/s`` -> ``1.5 MiB/s``; ``mW`` ->
    watts (``245 W``); ``MHz``, ``°C`` with their unit; ``count`` and ``tasks`` (load) as
    numbers; ``bitmask`` in hex (``0x4``). A name outside the catalogue prints as a plain
    number, and a value that is not a number (a string ``other``) as it is.

    Example:
        >>> [format_value(n, v) for n, v in (("sys.cpu.percent.02", "1.0101010101010102"),
        ...  ("sys.disk.read_bps", 1536), ("sys.gpu.0.temperature", 64.5), ("loss", 0.123456))]
        ['1.01%', '1.5 KiB/s', '64.5 °C', '0.123']
    """
    number = to_number(value)
    if number is None:
        return "-" if value is None else str(value)
    unit = catalogue.unit_for(name)
    if unit == catalogue.PERCENT:
        return f"{format_number(number)}%"
    if unit == catalogue.BYTES:
        return format_bytes(number)
    if unit == catalogue.BYTES_PER_S:
        return f"{format_bytes(number)}/s"
    if unit == catalogue.MILLIWATTS:
        return f"{format_number(number / 1000)} W"
    if unit in (catalogue.MEGAHERTZ, catalogue.CELSIUS):
        return f"{format_number(number)} {unit}"
    if unit == catalogue.BITMASK and float(number).is_integer():
        return hex(int(number))
    return format_number(number)


def format_gpus(gpus: list) -> Optional[str]:
    """A ``gpuStaticInfoList`` in one line, identical boards counted together, in order of
    appearance; ``None`` for no GPUs (the line is left out).

    Example:
        >>> format_gpus([{"name": "NVIDIA H100", "totalMemory": 85520809984}] * 2)
        '2 × NVIDIA H100 (79.6 GiB)'
        >>> format_gpus([]) is None
        True
    """
    counts: dict[tuple, int] = {}
    for gpu in gpus:
        if isinstance(gpu, dict):
            key = (gpu.get("name") or "unnamed GPU", to_number(gpu.get("totalMemory")))
            counts[key] = counts.get(key, 0) + 1
    parts = [
        f"{count} × {name}" + (f" ({format_bytes(memory)})" if memory else "")
        for (name, memory), count in counts.items()
    ]
    return ", ".join(parts) or None


def format_git(git: dict) -> Optional[str]:
    """Git metadata (``{branch, parent, origin, ...}``) in one line; ``None`` when there is none
    (outside a repository every field is empty: the line is left out, not ``None @ None``).

    Example:
        >>> format_git({"branch": "refs/heads/main", "parent": "1a2b3c", "origin": "https://x/r.git"})
        'refs/heads/main @ 1a2b3c  origin https://x/r.git'
        >>> format_git({"branch": None, "parent": None, "origin": None}) is None
        True
    """
    branch, parent, origin = git.get("branch"), git.get("parent"), git.get("origin")
    if not (branch or parent or origin):
        return None
    text = f"{branch or '(detached)'} @ {parent or '(no commits)'}"
    return f"{text}  origin {origin}" if origin else text


def experiment_state(metadata: dict) -> str:
    """``running``, ``finished`` or ``crashed`` from an experiment's metadata (``get_metadata()``).

    The rule of the experiment pages: the crash flag means crashed; the server's ``running``
    (no end time, a recent heartbeat) means running; an end time means finished; no end time
    and no recent heartbeat means the job or its agent died without ending it: crashed.

    Example:
        >>> experiment_state({"running": False, "endTimeMillis": 1}), experiment_state({"running": True})
        ('finished', 'running')
    """
    if metadata.get("hasCrashed"):
        return "crashed"
    if metadata.get("running"):
        return "running"
    if metadata.get("endTimeMillis") is not None:
        return "finished"
    return "crashed"
