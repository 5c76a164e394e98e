"""``comet-agent collect``: print the static snapshot and one periodic sample of this host."""

from __future__ import annotations

import argparse
import json
import os
import sys

from comet_agent.collectors.snapshot import collect_document, format_summary
from comet_agent.errors import ExitStatus


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
        directory=directory, pid=args.pid, include_os_packages=not args.no_os_packages,
        server_url=os.environ.get("COMET_URL_OVERRIDE") or None, secrets=secrets,
    )
    if args.json:
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    else:
        sys.stdout.write(format_summary(document))
    return ExitStatus.OK
