"""The ``comet-agent`` command line: the parser here, one module per subcommand beside it.

Each subcommand's module is imported lazily so that ``comet-agent --version`` and ``--help``
stay instant, and a missing optional piece (no GPU library, no git binary) never breaks the
others. Every option has a type and a range checked here, so a typo ends in one line of usage
error (exit 2) before anything starts.

Exit statuses are shared by every subcommand (see ``comet_agent.errors.ExitStatus``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from typing import Callable, Sequence

from comet_agent import __version__
from comet_agent.errors import ExitStatus


def _number(kind: Callable[[str], float], low: float, high: float, what: str) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float) within ``[low, high]``, finite; else a one-line usage error."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not finite")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range ({low:g} to {high:g})")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def _node_id(text: str) -> str:
    """An argparse type: a usable node id (``config.check_node_id``), else a one-line usage error."""
    from comet_agent.config import check_node_id
    from comet_agent.errors import ConfigError

    try:
        return check_node_id(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_node_id.__name__ = "a node id"

PORT = _number(int, 0, 65535, "a port number")
PID = _number(int, 1, 2**22, "a process id")
SECONDS = _number(float, 0.05, 86400.0, "a number of seconds")
TIMEOUT_SECONDS = _number(float, 0.0, 86400.0, "a number of seconds")
MILLISECONDS = _number(int, 1, 86_400_000, "a number of milliseconds")
MEGABYTES = _number(float, 0.001, 1_048_576.0, "a size in MB")
COUNT = _number(int, 1, 1_000_000, "a positive whole number")


def LISTEN(text: str) -> str:  # noqa: N802 (an argparse type, named like the others)
    """An argparse type: a ``--prometheus-listen`` address (``HOST:PORT``, ``:PORT``), returned as written."""
    from comet_agent.config import parse_listen_address

    try:
        parse_listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_prometheus_listen(p: argparse.ArgumentParser, whose: str) -> None:
    p.add_argument(
        "--prometheus-listen",
        type=LISTEN,
        default=None,
        metavar="HOST:PORT",
        help=f"serve {whose} series on a Prometheus /metrics page, labelled by experiment, GPU series also under "
        "dcgm-exporter's names; a bare :PORT binds 127.0.0.1 (0.0.0.0:PORT serves every interface)",
    )


def _add_server(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "server",
        help="run the local Comet-compatible server (SQLite store)",
        description="Run the local Comet-compatible REST server. Point the official SDK at it with "
        "COMET_URL_OVERRIDE=http://HOST:PORT/clientlib/.",
        epilog="API keys: --api-key-file FILE (one or more keys per line, '#' comments, mode 0600), or the "
        "environment variable COMET_AGENT_SERVER_API_KEYS (keys separated by commas or spaces); --api-key KEY "
        "also works but shows the key to every local user in ps. Without any, a key is generated on first start "
        "and stored 0600 as <data dir>/api_key. The first key (or the generated one) is the admin key: the only one "
        "that may change the server-wide intervals (POST /local/admin/intervals). Under systemd: "
        "LoadCredential=server-api-keys:/etc/comet-agent/server-api-keys and --api-key-file %d/server-api-keys "
        "(systemd/comet-agent-server.service).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument(
        "--port", type=PORT, default=5055, help="port to listen on; 0 picks a free one (default: %(default)s)"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="where the SQLite store, uploads and generated key live (default: <per-user data dir>/server)",
    )
    p.add_argument(
        "--api-key-file",
        action="append",
        default=None,
        metavar="FILE",
        help="accept the API keys in FILE, one or more per line ('#' starts a comment); FILE must not be readable "
        "by group or others (repeatable)",
    )
    p.add_argument(
        "--api-key",
        action="append",
        default=None,
        metavar="KEY",
        help="accept this API key (repeatable); visible to every local user in ps: prefer --api-key-file or "
        "$COMET_AGENT_SERVER_API_KEYS. Without any key a key is generated on first start and stored 0600 in the data dir",
    )
    # None = "not given": the stored value (or Comet's documented default) applies; a given flag wins.
    p.add_argument(
        "--heartbeat-ms",
        type=MILLISECONDS,
        default=None,
        help="isAliveBeatDurationMillis that update_status() recommends (default: stored, else 10000)",
    )
    p.add_argument(
        "--cpu-interval-ms",
        type=MILLISECONDS,
        default=None,
        help="cpuMonitorIntervalMillis that update_status() recommends (default: stored, else 68000)",
    )
    p.add_argument(
        "--gpu-interval-ms",
        type=MILLISECONDS,
        default=None,
        help="gpuMonitorIntervalMillis that update_status() recommends (default: stored, else 60000)",
    )
    p.add_argument(
        "--sample-interval-ms",
        type=MILLISECONDS,
        default=None,
        help="sampleIntervalMillis that update_status() recommends (a comet-agent extension: how often agents "
        "sample; each push carries every sample) (default: stored, else 1000)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=MEGABYTES,
        default=200.0,
        help="largest accepted request body, in MiB; larger ones get 413 (default: %(default)s)",
    )
    p.add_argument(
        "--access-log",
        default=None,
        metavar="PATH|-",
        help="write one line per request (time, client, method, path, status, bytes, duration; never the key) "
        "to PATH (appended, 0600, reopened after logrotate moves it) or to stderr with '-' (default: off)",
    )
    p.set_defaults(func=_lazy("comet_agent.server.app", "serve_from_args"))


def _add_collect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="print the static snapshot and one periodic sample of this host",
        description="Collect everything the agent would send (system details, packages, git, GPUs) plus one periodic sample, and print it.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a readable summary")
    p.add_argument(
        "--directory",
        default=None,
        help="the job's working directory, for git and disk usage (default: the current one)",
    )
    p.add_argument(
        "--pid", type=PID, default=None, help="the watched job's pid (its interpreter's packages, its process tree)"
    )
    p.add_argument("--no-os-packages", action="store_true", help="skip the OS package list")
    p.set_defaults(func=_lazy("comet_agent.cli.collect", "collect_from_args"))


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="record a run into a Comet experiment: beside a job (--pid), wrapping a command (-- CMD), or until stopped",
        description="Attach to an experiment (--experiment KEY) or create one (--workspace/--project or configuration), "
        "send the static snapshot once, and sample until SIGINT/SIGTERM, until --pid exits, or until the command "
        "after -- exits (then exit with its status). With no Comet configured, the local server is used.",
        usage="comet-agent run [options] [-- COMMAND [ARGS...]]",
    )
    p.add_argument("--experiment", metavar="KEY", help="attach to this experiment")
    p.add_argument("--workspace", help="workspace of a new experiment (default: configuration)")
    p.add_argument("--project", help="project of a new experiment (default: configuration, else 'general')")
    p.add_argument("--name", help="name of a new experiment")
    p.add_argument("--tag", action="append", help="add a tag to the experiment (repeatable)")
    p.add_argument(
        "--pid", type=PID, help="watch this process: its process tree is sampled and the run ends when it exits"
    )
    p.add_argument("--directory", help="the job's working directory, for git and disk usage (default: the current one)")
    p.add_argument(
        "--sample-interval",
        type=SECONDS,
        metavar="SECONDS",
        help="sample this often; pushes follow the server's cadence (default: as often as the server recommends: "
        "every second on the local server, else one sample per push)",
    )
    p.add_argument(
        "--resolution",
        choices=("full", "window"),
        default=None,
        help="what each push carries: every sample with its own timestamp (full) or one aggregate per series "
        "(window) (default: $COMET_AGENT_RESOLUTION, else full)",
    )
    p.add_argument(
        "--stop-timeout",
        type=TIMEOUT_SECONDS,
        default=10.0,
        metavar="SECONDS",
        help="how long to keep sending at the end before leaving the rest in the spool (default: %(default)s)",
    )
    _add_data_dir(p)
    p.add_argument(
        "--spool-max-mb",
        type=MEGABYTES,
        default=None,
        metavar="MB",
        help="cap of the spool; at the cap the oldest periodic samples are dropped and counted "
        "(default: $COMET_AGENT_SPOOL_MAX_BYTES, else 256)",
    )
    p.add_argument("--no-os-packages", action="store_true", help="do not record OS packages")
    p.add_argument("--no-git", action="store_true", help="do not record git metadata and patch")
    p.add_argument("--no-gpu", action="store_true", help="do not use NVML")
    _add_prometheus_listen(p, "the run's")
    p.add_argument(
        "--node-id",
        type=_node_id,
        default=None,
        metavar="ID",
        help="this node's id in a job over several nodes: system series become ID.sys.* as comet_ml names them "
        "(default: $COMET_DISTRIBUTED_NODE_IDENTIFIER, else node<N> from Slurm, torchrun, Open MPI or Kubernetes "
        "variables when the job spans several nodes, else none)",
    )
    p.add_argument(
        "--no-share-experiment",
        action="store_true",
        help="do not hand the experiment to the wrapped command (COMET_EXPERIMENT_KEY, the local server's "
        "URL and key, comet_ml's own system loggers off)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_lazy("comet_agent.cli.run", "run_from_args"))


def _add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help="print an experiment's system details, tags, git metadata and metric summary",
        description="Read an experiment from the configured server (or the local one) and print it.",
    )
    p.add_argument("key", help="the experiment key")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--open", action="store_true", help="open the experiment's page in a browser")
    _add_data_dir(p)
    p.set_defaults(func=_lazy("comet_agent.cli.show", "show_from_args"))


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="show what the running agents are doing",
        description="Experiment, intervals in force, last push and delivery, spool depth and drops of each running agent.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_data_dir(p)
    p.set_defaults(func=_lazy("comet_agent.cli.status", "status_from_args"))


def _add_flush(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flush",
        help="send what earlier runs left in the spool",
        description="Send every record waiting in the spool with the current configuration; exit 5 if some remain.",
    )
    _add_data_dir(p)
    p.set_defaults(func=_lazy("comet_agent.cli.flush", "flush_from_args"))


def _add_daemon(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "daemon",
        help="the host service: sample the host once per tick for every registered job",
        description="Listen for job registrations (comet-agent attach, or monitor()) on a Unix socket and feed "
        "each job's experiment with the host metrics, its own process tree and its GPUs until its pid exits.",
    )
    p.add_argument(
        "--socket",
        default=None,
        help="registration socket; its folder must exist (default: "
        "$COMET_AGENT_DAEMON_SOCKET, $RUNTIME_DIRECTORY/daemon.sock, /run/comet-agent/daemon.sock as root, "
        "$XDG_RUNTIME_DIR/comet-agent/daemon.sock, else <data dir>/daemon.sock)",
    )
    p.add_argument(
        "--socket-group",
        default=None,
        metavar="GROUP",
        help="let this group's members register (socket 0660); default: 0600",
    )
    p.add_argument(
        "--interval",
        type=SECONDS,
        default=60.0,
        metavar="SECONDS",
        help="seconds between host samples; pushes follow the server's cadence (default: %(default)s)",
    )
    p.add_argument(
        "--max-jobs", type=COUNT, default=256, help="registrations one user may hold at once (default: %(default)s)"
    )
    p.add_argument("--registrations-per-minute", type=COUNT, default=30, help="per user (default: %(default)s)")
    p.add_argument("--no-gpu", action="store_true", help="do not use NVML")
    _add_prometheus_listen(p, "every registered job's")
    _add_data_dir(p)
    p.set_defaults(func=_lazy("comet_agent.cli.daemon", "daemon_from_args"))


def _add_attach(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attach",
        help="register a job with the running comet-agent daemon",
        description="Register PID (default: the calling shell) with the daemon, which then records it into "
        "the experiment with your own API key until PID exits.",
    )
    p.add_argument("--experiment", metavar="KEY", required=True, help="the experiment to record into")
    p.add_argument(
        "--pid", type=PID, default=None, help="the job's pid (default: the parent process, i.e. the job script)"
    )
    p.add_argument(
        "--socket",
        default=None,
        help="the daemon's socket (default: as the daemon decides it, see `comet-agent daemon --help`)",
    )
    p.add_argument(
        "--node-id",
        type=_node_id,
        default=None,
        metavar="ID",
        help="this node's id in a multi-node job: the daemon prefixes the job's system series with it "
        "(default: COMET_DISTRIBUTED_NODE_IDENTIFIER or the launcher's variables in the job's environment)",
    )
    p.add_argument("--detach", action="store_true", help="end the registration now (the experiment gets its end time)")
    p.set_defaults(func=_lazy("comet_agent.cli.attach", "attach_from_args"))


def _add_completion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a completion script for SHELL, generated from this command line. "
        'bash: eval "$(comet-agent completion bash)" in ~/.bashrc; zsh: comet-agent completion zsh '
        "> a folder of your $fpath, named _comet-agent; fish: comet-agent completion fish > "
        "~/.config/fish/completions/comet-agent.fish.",
    )
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    p.set_defaults(func=_lazy("comet_agent.cli.completion", "completion_from_args"))


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    # default=None: the global --data-dir (before the subcommand) applies when this one is not given.
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="where the spool, status files and the local server's data live (default: $COMET_AGENT_DATA_DIR, "
        "else the per-user data directory)",
    )


def _lazy(module: str, function: str):
    def call(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), function)(args)

    return call


LOG_FORMATS = ("text", "json")

# (status, meaning) for --help's epilog; a test checks it names every ExitStatus.
_EXIT_STATUSES = (
    (ExitStatus.OK, "ok"),
    (ExitStatus.FAILURE, "failure"),
    (ExitStatus.USAGE, "usage error"),
    (ExitStatus.UNAUTHORIZED, "API key missing or rejected"),
    (ExitStatus.NOT_FOUND, "experiment, workspace or project not found"),
    (ExitStatus.UNREACHABLE, "server unreachable or not answering as Comet does (flush: records remain)"),
    (ExitStatus.CONFIG, "configuration error (systemd does not restart on it)"),
    (ExitStatus.COMMAND_NOT_FOUND, "run -- CMD: CMD could not be started"),
    (128 + 2, "interrupted (Ctrl-C)"),
)


def _epilog() -> str:
    lines = [
        "-v and --log-format go before or after the subcommand; --data-dir too, after those that keep data",
        "(run, show, status, flush, daemon, server).",
        "",
        "exit statuses:",
    ]
    lines += [f"  {status:>3}  {meaning}" for status, meaning in _EXIT_STATUSES]
    lines.append("  run -- CMD otherwise exits with CMD's own status (128 + N when signal N ended it).")
    return "\n".join(lines)


def _add_global_options(parser: argparse.ArgumentParser, *, after_subcommand: bool) -> None:
    """-v, --log-format and --data-dir, before the subcommand (``after_subcommand=False``) or after it.

    After the subcommand argparse parses into a fresh namespace and copies it over the one from
    before, so there the options default to "not given" (SUPPRESS) and -v counts separately
    (``verbose_after``; ``main`` adds the two).
    """
    if after_subcommand:
        parser.add_argument(
            "-v",
            "--verbose",
            dest="verbose_after",
            action="count",
            default=argparse.SUPPRESS,
            help="more logging (-vv for debug)",
        )
        parser.add_argument(
            "--log-format",
            choices=LOG_FORMATS,
            default=argparse.SUPPRESS,
            help="log records on stderr as text, or as one JSON object per line",
        )
        return
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="log records on stderr as text, or as one JSON object per line (time, level, logger, "
        "message); the commands' own messages stay plain lines (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        dest="global_data_dir",
        default=None,
        metavar="DIR",
        help="the data directory, as $COMET_AGENT_DATA_DIR (for server: its store goes in DIR/server); "
        "a subcommand's own --data-dir wins",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; global options are accepted before or after the subcommand."""
    parser = argparse.ArgumentParser(
        prog="comet-agent",
        description="Record where and how a training run executed, and what it consumed, into a Comet experiment.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"comet-agent {__version__}")
    _add_global_options(parser, after_subcommand=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        _add_run,
        _add_show,
        _add_status,
        _add_flush,
        _add_server,
        _add_collect,
        _add_daemon,
        _add_attach,
        _add_completion,
    ):
        add(sub)
    for subparser in sub.choices.values():
        _add_global_options(subparser, after_subcommand=True)
    return parser


def _apply_global_options(args: argparse.Namespace) -> None:
    """Fold the options given before the subcommand into the subcommand's: -v counts add up; the
    global --data-dir fills a subcommand's unset one (the server's store lives in its server/)."""
    args.verbose += getattr(args, "verbose_after", 0)
    data_dir = args.global_data_dir
    if data_dir is None or getattr(args, "data_dir", None) is not None:
        return
    args.data_dir = os.path.join(data_dir, "server") if args.command == "server" else data_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``comet-agent`` console script. Returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _apply_global_options(args)
    from comet_agent.cli.logs import configure_logging

    # The long-running services say at INFO what they listen on and write to.
    configure_logging(args.verbose, log_format=args.log_format, at_least_info=args.command in ("server", "daemon"))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return ExitStatus.USAGE
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader of our output went away (`show KEY | head`): end quietly, as cat does.
        _silence_stdout()
        return ExitStatus.OK
    except KeyboardInterrupt:
        return 128 + 2
    except Exception as exc:  # the last line of defence: one line, never a traceback
        logging.getLogger("comet_agent").debug("internal error", exc_info=True)
        print(
            f"comet-agent: internal error: {type(exc).__name__}: {exc} (run with -vv for details)",
            file=sys.stderr,
            flush=True,
        )
        return ExitStatus.FAILURE


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
