"""``comet-agent show KEY``: an experiment's system details, tags, git metadata and metric summary.

Without ``--json`` it prints for people (``format_report``): the run's state, duration and exit
code, values in their units, and no line for what the experiment does not have (no git line
outside a repository, no GPU line without GPUs). ``--json`` prints the raw values.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional

from comet_agent import catalogue
from comet_agent.cli.common import ServerConnection, err, exit_status_for
from comet_agent.cli.format import (
    experiment_state,
    format_bytes,
    format_duration_ms,
    format_git,
    format_gpus,
    format_time_ms,
    format_value,
    to_number,
)
from comet_agent.errors import ExitStatus

#: The "other" the run command logs with the wrapped command's exit status.
EXIT_CODE_OTHER = "comet_agent.exit_code"
# Longest metric name given its own column width; longer ones push their row's values right.
_NAME_COLUMN_MAX = 40


def show_from_args(args) -> int:
    """``comet-agent show KEY [--json] [--open]``."""
    from comet_agent import errors
    from comet_agent.api.experiment import APIExperiment

    try:
        server = ServerConnection(args.data_dir)
    except (ValueError, OSError) as exc:
        err(str(exc))
        return ExitStatus.CONFIG
    try:
        experiment = APIExperiment(api=server.api, previous_experiment=args.key)
        if not experiment.id:
            raise errors.NotFound(f"{server.api.server_url} knows no experiment {args.key}", status=404)
        report = {
            "experimentKey": experiment.id,
            "name": experiment.name,
            "workspace": experiment.workspace,
            "project": experiment.project_name,
            "url": experiment.url,
            "startTimeMillis": experiment.start_server_timestamp,
            "endTimeMillis": experiment.end_server_timestamp,
            "tags": experiment.get_tags(),
            "systemDetails": experiment.get_system_details(),
            "gitMetadata": experiment.get_git_metadata(),
            "metricsSummary": experiment.get_metrics_summary(),
            "others": experiment.get_others_summary(),
        }
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            sys.stdout.write(format_report(report, experiment.get_metadata()))
        if args.open:
            experiment.display()
            if server.local is not None and server.local.started_here:
                print(f"serving {experiment.url} until Ctrl-C", file=sys.stderr, flush=True)
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
        return 0
    except errors.CometApiError as exc:
        err(str(exc))
        return exit_status_for(exc)
    finally:
        server.close()


def format_report(report: dict, metadata: Optional[dict] = None) -> str:
    """What ``show`` prints without ``--json``: ``report`` is the ``--json`` object, ``metadata``
    the experiment's metadata (``APIExperiment.get_metadata()``: the state needs its ``running``).

    One ``label  value`` line per thing the experiment has; sections it lacks print nothing.

    Example (abridged)::

        experiment  5584b066dc4b4b8fbd03ed1a33abca2c  resnet-3
        url         http://127.0.0.1:5055/local/general/5584b066dc4b4b8fbd03ed1a33abca2c
        state       finished, exit code 0
        duration    4m 05s (2026-05-09 07:35:25 UTC to 2026-05-09 07:39:30 UTC)
        host        vm  user alice  pid 11250
        ram         23.5 GiB
        metrics     3 series                 min       max      last
          sys.cpu.percent.avg              1.01%     99.1%     84.9%
          sys.ram.used                   866 MiB   871 MiB   871 MiB
          sys.gpu.0.power_usage            61.5 W     245 W     198 W
    """
    metadata = metadata or {}
    details = report.get("systemDetails") or {}
    others = [item for item in report.get("others") or [] if isinstance(item, dict)]
    lines = [
        _row("experiment", "  ".join(str(v) for v in (report.get("experimentKey"), report.get("name")) if v)),
        _row("url", report.get("url")),
    ]
    lines.append(_row("state", _state(metadata, others)))
    lines.append(_row("duration", _duration(report, metadata)))
    lines.append(_row("tags", ", ".join(str(tag) for tag in report.get("tags") or [])))
    lines.append(
        _row("host", _joined(details.get("hostname"), ("user", details.get("user")), ("pid", details.get("pid"))))
    )
    lines.append(_row("os", details.get("os")))
    lines.append(_row("python", _joined(details.get("pythonVersion"), details.get("executable"))))
    command = details.get("command")
    lines.append(_row("command", " ".join(str(part) for part in command) if isinstance(command, list) else command))
    total_ram = to_number(details.get("totalRam"))
    lines.append(_row("ram", format_bytes(total_ram) if total_ram else None))
    python_packages, os_packages = len(details.get("installedPackages") or []), len(details.get("osPackages") or [])
    if python_packages or os_packages:
        lines.append(_row("packages", f"{python_packages} python, {os_packages} os"))
    lines.append(_row("gpus", format_gpus(details.get("gpuStaticInfoList") or [])))
    lines.append(_row("git", format_git(report.get("gitMetadata") or {})))
    lines.extend(_metrics(report.get("metricsSummary") or []))
    for item in others:
        if item.get("name") != EXIT_CODE_OTHER:
            lines.append(_row("other", f"{item.get('name')} = {item.get('valueCurrent')}"))
    return "".join(line for line in lines if line)


def _row(label: str, value: Any) -> str:
    """``label  value`` on its own line, or nothing when there is no value."""
    if value is None or value == "":
        return ""
    return f"{label:<11} {value}\n"


def _joined(first: Any, *labelled: Any) -> Optional[str]:
    parts = [str(first)] if first not in (None, "") else []
    for item in labelled:
        if isinstance(item, tuple):
            label, value = item
            if value not in (None, ""):
                parts.append(f"{label} {value}")
        elif item not in (None, ""):
            parts.append(str(item))
    return "  ".join(parts) or None


def _state(metadata: dict, others: list) -> Optional[str]:
    state = experiment_state(metadata) if metadata else None
    exit_code = next((item.get("valueCurrent") for item in others if item.get("name") == EXIT_CODE_OTHER), None)
    if exit_code is not None:
        return f"{state or 'ended'}, exit code {exit_code}"
    return state


def _duration(report: dict, metadata: dict) -> Optional[str]:
    start, end = report.get("startTimeMillis"), report.get("endTimeMillis")
    duration_ms = to_number(metadata.get("durationMillis"))
    if duration_ms is None and start and end:
        duration_ms = end - start
    if not start:
        return format_duration_ms(duration_ms) if duration_ms is not None else None
    if end:
        return f"{format_duration_ms(duration_ms)} ({format_time_ms(start)} to {format_time_ms(end)})"
    so_far = f"{format_duration_ms(duration_ms)} so far, " if duration_ms is not None else ""
    return f"{so_far}since {format_time_ms(start)}"


def _metrics(summary: list) -> list[str]:
    """The metric summary as a table: one row per series, in catalogue order, values in their unit."""
    items = sorted(
        (item for item in summary if isinstance(item, dict) and item.get("name")),
        key=lambda item: catalogue.sort_key(str(item["name"])),
    )
    if not items:
        return []
    rows = [
        (
            str(item["name"]),
            *(format_value(str(item["name"]), item.get(field)) for field in ("valueMin", "valueMax", "valueCurrent")),
        )
        for item in items
    ]
    name_width = min(max(len(row[0]) for row in rows), _NAME_COLUMN_MAX)
    widths = [
        max(len(header), *(len(row[column]) for row in rows))
        for column, header in ((1, "min"), (2, "max"), (3, "last"))
    ]
    title = f"{'metrics':<11} {len(rows)} series"
    name_width = max(name_width, len(title) - 2)  # the value columns' headers sit on the title line
    lines = [
        title.ljust(2 + name_width) + "".join(f"  {h:>{w}}" for h, w in zip(("min", "max", "last"), widths)) + "\n"
    ]
    for name, *values in rows:
        lines.append(f"  {name:<{name_width}}" + "".join(f"  {v:>{w}}" for v, w in zip(values, widths)) + "\n")
    return lines
