"""``comet-agent show KEY``: an experiment's system details, tags, git metadata and metric summary."""

from __future__ import annotations

import json
import sys
import time

from comet_agent.cli.common import ServerConnection, err, exit_status_for
from comet_agent.errors import ExitStatus


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
            "experimentKey": experiment.id, "name": experiment.name, "workspace": experiment.workspace,
            "project": experiment.project_name, "url": experiment.url,
            "startTimeMillis": experiment.start_server_timestamp, "endTimeMillis": experiment.end_server_timestamp,
            "tags": experiment.get_tags(), "systemDetails": experiment.get_system_details(),
            "gitMetadata": experiment.get_git_metadata(), "metricsSummary": experiment.get_metrics_summary(),
            "others": experiment.get_others_summary(),
        }
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            _print_report(report)
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


def _print_report(report: dict) -> None:
    details = report.get("systemDetails") or {}
    git = report.get("gitMetadata") or {}
    print(f"experiment  {report['experimentKey']}  {report.get('name') or ''}")
    print(f"url         {report['url']}")
    print(f"tags        {', '.join(report.get('tags') or []) or '-'}")
    print(f"host        {details.get('hostname')}  user {details.get('user')}  pid {details.get('pid')}")
    print(f"os          {details.get('os')}")
    print(f"python      {details.get('pythonVersion')}  {details.get('executable')}")
    print(f"command     {' '.join(details.get('command') or []) if isinstance(details.get('command'), list) else details.get('command')}")
    print(f"packages    {len(details.get('installedPackages') or [])} python, {len(details.get('osPackages') or [])} os")
    print(f"gpus        {len(details.get('gpuStaticInfoList') or [])}")
    print(f"git         {git.get('branch')} @ {git.get('parent')}  origin {git.get('origin') or '-'}")
    summary = report.get("metricsSummary") or []
    print(f"metrics     {len(summary)}")
    for item in summary:
        print(f"  {item.get('name'):<32} min {item.get('valueMin')}  max {item.get('valueMax')}  current {item.get('valueCurrent')}")
    for item in report.get("others") or []:
        print(f"other       {item.get('name')} = {item.get('valueCurrent')}")
