"""``comet-agent collect``: print the static snapshot and one periodic sample of this host.

The document is assembled here, at the top, because it joins layers that do not import each other
upwards: the collectors' records (``collectors/``) and the Comet metric points they map to
(``delivery/payloads.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Optional, Sequence

from comet_agent import catalogue
from comet_agent.cli.format import format_bytes, format_git, format_gpus, format_value, to_number
from comet_agent.collectors.git import DEFAULT_MAX_PATCH_BYTES, git_metadata_payload
from comet_agent.collectors.periodic import build_periodic_collectors, take_sample
from comet_agent.collectors.snapshot import DEFAULT_DEADLINE_S, collect_static_alongside, system_details
from comet_agent.delivery.payloads import metric_points, system_metric_names
from comet_agent.errors import ExitStatus

logger = logging.getLogger(__name__)


def _take_periodic_sample(directory: Optional[str], pid: Optional[int]) -> tuple[list, dict[str, str]]:
    """One periodic sample: (records, unavailable). A collector that fails to build or sample is reported, not fatal."""
    try:
        collectors, unavailable = build_periodic_collectors(pid=pid, directory=directory)
    except Exception as exc:  # the static snapshot is still worth printing
        logger.warning("periodic collectors failed to build: %s: %s", type(exc).__name__, exc)
        return [], {"periodic": f"failed: {type(exc).__name__}: {exc}"}
    unavailable = dict(unavailable)
    failures: dict[str, str] = {}
    try:
        records = take_sample(collectors, failures=failures)
        unavailable.update({name: f"failed: {reason}" for name, reason in failures.items()})
    finally:
        for collector in collectors:
            try:
                collector.close()
            except Exception as exc:  # closing is best effort; the sample is already taken
                logger.debug("closing %s failed: %s", getattr(collector, "name", collector), exc)
    return list(records), unavailable


def collect_document(
    *,
    directory: Optional[str] = None,
    pid: Optional[int] = None,
    include_os_packages: bool = True,
    server_url: Optional[str] = None,
    secrets: Sequence[str] = (),
) -> dict:
    """Everything ``comet-agent collect --json`` prints, as one JSON-ready object.

    Keys: ``systemDetails``, ``gitMetadata`` (null outside a repository), ``gitPatchBytes`` (the
    size of the capped patch that would be uploaded, null without one), ``gpuStaticInfoList``,
    ``unavailable`` (collector name -> reason) and ``sample`` (the periodic sample as Comet metric
    points ``{metricName, metricValue, timestamp}``).
    """
    snapshot, extras = collect_static_alongside(
        {"sample": lambda: _take_periodic_sample(directory, pid)},
        directory=directory,
        pid=pid,
        include_os_packages=include_os_packages,
        include_gpu=True,
        include_git=True,
        server_url=server_url,
        max_patch_bytes=DEFAULT_MAX_PATCH_BYTES,
        secrets=secrets,
    )
    records, periodic_unavailable = extras.get(
        "sample", ([], {"periodic": f"did not finish within {DEFAULT_DEADLINE_S:g} s"})
    )
    points, metric_names = metric_points(records), system_metric_names(records)
    unavailable = dict(snapshot.unavailable)
    unavailable.update(periodic_unavailable)
    snapshot.unavailable = unavailable
    git = snapshot.git
    return {
        "systemDetails": system_details(snapshot, metric_names),
        "gitMetadata": git_metadata_payload(git) if git is not None else None,
        "gitPatchBytes": len(git.patch) if git is not None and git.patch is not None else None,
        "gpuStaticInfoList": snapshot.gpu_static_info_list(),
        "unavailable": unavailable,
        "sample": points,
    }


def format_summary(document: dict) -> str:
    """A readable summary of a ``collect_document()`` result (what ``collect`` prints without --json).

    Sizes in KiB/MiB/GiB, the sample's values in their catalogue units and in catalogue order;
    no git line outside a repository and no GPU line without GPUs (the reason is in the
    ``unavailable`` lines).
    """
    details = document["systemDetails"]
    interfaces = ", ".join(details["networkInterfaceIps"])
    lines = [
        f"host        {details['hostname']} ({details['os']})",
        f"user        {details['user']}  pid {details['pid']}",
        f"python      {details['pythonVersion']}  {details['executable']}",
        f"command     {' '.join(details['command'])}",
        f"processor   {details['processor']}",
        f"ram         {format_bytes(details['totalRam'])}" if details.get("totalRam") else "",
        f"ip          {details['ip']}" + (f"  interfaces: {interfaces}" if interfaces else ""),
        f"packages    {len(details['installedPackages'])} python, {len(details['osPackages'])} os",
    ]
    gpus = format_gpus(document["gpuStaticInfoList"])
    if gpus:
        lines.append(f"gpus        {gpus}")
    git = format_git(document["gitMetadata"] or {})
    if git:
        patch_bytes = document["gitPatchBytes"]
        lines.append(f"git         {git}" + (f"  patch {format_bytes(patch_bytes)}" if patch_bytes is not None else ""))
    for item in details["logAdditionalSystemInfoList"]:
        key, value = item["key"], item["value"]
        if not key.startswith("unavailable."):
            # Units live in the names (cgroup.memory_limit_bytes, git.patch_bytes).
            shown = format_bytes(value) if key.endswith("_bytes") and to_number(value) is not None else value
            lines.append(f"  {key}: {shown}")
    for name, reason in sorted(document["unavailable"].items()):
        lines.append(f"unavailable {name}: {reason}")
    points = sorted(document["sample"], key=lambda point: catalogue.sort_key(point["metricName"]))
    lines.append(f"sample      {len(points)} metric points")
    width = max((len(point["metricName"]) for point in points), default=0)
    for point in points:
        lines.append(f"  {point['metricName']:<{width}}  {format_value(point['metricName'], point['metricValue'])}")
    return "".join(line + "\n" for line in lines if line)


def collect_from_args(args: argparse.Namespace) -> int:
    """``comet-agent collect``: print the static snapshot and one periodic sample. Returns the exit status.

    Args (attributes of ``args``): ``json`` (bool), ``directory`` (str or None), ``pid`` (int or
    None), ``no_os_packages`` (bool). A directory or pid that does not exist is a usage error
    (status 2) with a message on stderr; nothing is printed on stdout then.
    """
    directory = args.directory
    if directory is not None and not os.path.isdir(directory):
        print(f"comet-agent collect: --directory {directory!r} is not a directory", file=sys.stderr)
        return ExitStatus.USAGE
    if args.pid is not None and (args.pid <= 0 or not os.path.exists(f"/proc/{args.pid}")):
        print(f"comet-agent collect: --pid {args.pid}: no such process", file=sys.stderr)
        return ExitStatus.USAGE
    secrets = [os.environ["COMET_API_KEY"]] if os.environ.get("COMET_API_KEY") else []
    document = collect_document(
        directory=directory,
        pid=args.pid,
        include_os_packages=not args.no_os_packages,
        server_url=os.environ.get("COMET_URL_OVERRIDE") or None,
        secrets=secrets,
    )
    if args.json:
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    else:
        sys.stdout.write(format_summary(document))
    return ExitStatus.OK
