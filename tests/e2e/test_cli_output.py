"""What people read from the real command line: units, durations, empty sections, global options
after the subcommand, JSON log lines, completion scripts and flush's progress on a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.delivery.spool import Spool
from tests.e2e.agent_support import (
    REPO,
    agent_argv,
    agent_env,
    experiment_key_from,
    run_agent,
    start_agent,
    wait_for,
)

pytestmark = pytest.mark.e2e

FAST = {"heartbeat_ms": 1000, "cpu_interval_ms": 1000, "gpu_interval_ms": 1000}
SUBCOMMANDS = ["run", "show", "status", "flush", "server", "collect", "daemon", "attach", "completion"]
RUN_OPTIONS = [
    "--experiment",
    "--workspace",
    "--project",
    "--name",
    "--tag",
    "--pid",
    "--directory",
    "--sample-interval",
    "--stop-timeout",
    "--data-dir",
    "--spool-max-mb",
    "--no-os-packages",
    "--no-git",
    "--no-gpu",
    "--no-share-experiment",
    "--verbose",
    "--log-format",
]
DECIMAL = re.compile(r"\d+\.\d+")


def _too_precise(text: str) -> list[str]:
    """Decimals with more than three significant digits (the complaint: 1.0101010101010102)."""
    return [number for number in DECIMAL.findall(text) if len(number.replace(".", "").lstrip("0")) > 3]


TEXT_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR) ")


def _text(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.fixture
def finished_run(local_server, tmp_path):
    """A real `run` that wrapped a command exiting 3, with -vv and --log-format json after `run`."""
    local_server.set_intervals(**FAST)
    result = run_agent(
        local_server,
        tmp_path / "data",
        "run",
        "-vv",
        "--log-format",
        "json",
        "--workspace",
        "ws",
        "--project",
        "cli",
        "--no-git",
        "--sample-interval",
        "0.25",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(2.5); raise SystemExit(3)",
    )
    assert result.returncode == 3, result.stderr.decode()
    return experiment_key_from(result.stderr.decode()), result.stderr.decode()


def test_run_logs_one_json_object_per_line_without_the_key(local_server, finished_run):
    _, stderr = finished_run
    records = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
        else:
            # Not a log record: the command's own messages stay plain lines (the child wrote nothing).
            assert line.startswith("comet-agent: "), line
        assert not TEXT_LOG_LINE.match(line), line
    assert len(records) > 5, stderr
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    assert any(record["level"] == "DEBUG" for record in records), "-vv after the subcommand counts"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", records[0]["time"])
    assert local_server.api_key not in stderr


def test_show_prints_state_duration_exit_code_and_units(local_server, tmp_path, finished_run):
    key, _ = finished_run
    text = _text(run_agent(local_server, tmp_path / "data", "show", key))
    report = json.loads(_text(run_agent(local_server, tmp_path / "data", "show", key, "--json")))
    assert set(report) == {
        "experimentKey",
        "name",
        "workspace",
        "project",
        "url",
        "startTimeMillis",
        "endTimeMillis",
        "tags",
        "systemDetails",
        "gitMetadata",
        "metricsSummary",
        "others",
    }
    lines = text.splitlines()
    assert f"experiment  {key}" in lines
    assert "state       finished, exit code 3" in lines
    (duration,) = [line for line in lines if line.startswith("duration ")]
    assert re.match(r"duration    \d(\.\d)? s \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+ to ", duration), duration
    # Empty sections are left out: --no-git, no tags; no GPU line on a host without GPUs.
    labels = {line.split()[0] for line in lines if line and not line.startswith(" ")}
    assert not labels & {"git", "tags"}, text
    assert ("gpus" in labels) == bool(report["systemDetails"]["gpuStaticInfoList"])
    assert "None" not in text
    rows = {line.split()[0]: line for line in lines if line.startswith("  sys.")}
    assert re.search(r"\d+(\.\d+)? [MG]iB$", rows["sys.ram.total"]), rows["sys.ram.total"]
    assert rows["sys.cpu.percent.avg"].count("%") == 3
    for name, row in rows.items():
        assert not _too_precise(row), row
        if name.endswith("_bps"):
            assert row.endswith("/s")
        if ".power_" in name:
            assert row.endswith(" W")
        if name.endswith(".temperature"):
            assert row.endswith(" °C")
    names = [line.split()[0] for line in lines if line.startswith("  ")]
    assert names.index("sys.cpu.percent.avg") < names.index("sys.ram.total"), "catalogue order"


def test_collect_prints_sizes_and_values_in_units(local_server, tmp_path):
    text = _text(
        run_agent(local_server, tmp_path / "data", "collect", "--no-os-packages", "--directory", str(tmp_path))
    )
    lines = text.splitlines()
    assert re.fullmatch(r"ram         \d+(\.\d+)? [MGT]iB", next(line for line in lines if line.startswith("ram ")))
    assert not any(line.startswith("git ") for line in lines), "outside a repository: no git line"
    assert "unavailable git: not inside a git repository" in text
    samples = [line for line in lines if line.startswith("  sys.")]
    assert samples, text
    assert not [line for line in samples if _too_precise(line)], samples
    assert any(line.startswith("  sys.ram.used ") and line.endswith("iB") for line in samples), samples


def test_global_options_after_the_subcommand(local_server, tmp_path):
    """--data-dir before or after the subcommand; -v after it adds to -v before it."""
    local_server.set_intervals(**FAST)
    data_dir, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    agent = start_agent(
        local_server,
        elsewhere,
        "--data-dir",
        str(data_dir),
        "run",
        "--workspace",
        "ws",
        "--project",
        "status",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(60)",
    )
    try:

        def statuses(*args: str) -> list:
            return json.loads(_text(run_agent(local_server, elsewhere, *args)))

        (status,) = wait_for(
            lambda: [s for s in statuses("status", "--json", "--data-dir", str(data_dir)) if s.get("last_push_ms")],
            30,
            what="a status with a push",
        )
        before = statuses("--data-dir", str(data_dir), "status", "--json")
        assert [s["experiment_key"] for s in before] == [status["experiment_key"]]
        assert statuses("status", "--json") == [], "the environment's data directory has no agent"
        text = _text(run_agent(local_server, elsewhere, "status", "--data-dir", str(data_dir)))
        assert status["experiment_key"] in text
        assert (
            "heartbeat every 1 s; pushes of cpu metrics every 1 s, gpu metrics every 1 s; sampled every 1 s, every sample pushed"
            in text
        )
        assert re.search(r"last push   \d+(\.\d)? m?s ago", text), text
        assert re.search(r"running for \d", text) and "records waiting" in text
        assert "every push s" not in text and "None" not in text
    finally:
        agent.terminate()
        agent.wait(30)

    # -v twice (before and after the subcommand) is -vv: urllib3's DEBUG lines appear.
    key = status["experiment_key"]
    quiet = run_agent(local_server, data_dir, "show", key, "-v")
    loud = run_agent(local_server, data_dir, "-v", "show", key, "-v")
    assert quiet.returncode == loud.returncode == 0
    assert b" DEBUG " not in quiet.stderr
    assert b" DEBUG urllib3" in loud.stderr, loud.stderr.decode()


def test_help_lists_the_exit_statuses():
    from comet_agent.errors import ExitStatus

    text = subprocess.run(
        agent_argv("--help"),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    epilog = text[text.index("exit statuses:") :]
    listed = {int(number) for number in re.findall(r"^\s+(\d+)  ", epilog, flags=re.M)}
    statuses = {value for name, value in vars(ExitStatus).items() if name.isupper()}
    assert statuses <= listed, (statuses, epilog)


# -- completion ------------------------------------------------------------------------------------


def _completion(shell: str) -> str:
    result = subprocess.run(
        agent_argv("completion", shell),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_bash_completion_names_every_subcommand_and_completes_in_bash(tmp_path):
    script = _completion("bash")
    for name in SUBCOMMANDS + RUN_OPTIONS:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", script), name
    (tmp_path / "complete.bash").write_text(script)
    (tmp_path / "a-folder").mkdir()
    probe = f"""
source {tmp_path / "complete.bash"}
try() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=(); _comet_agent; echo "${{COMPREPLY[*]}}"; }}
try comet-agent s
try comet-agent run --sto
try comet-agent -v status --js
try comet-agent --log-format ''
try comet-agent completion ''
try comet-agent --data-dir {tmp_path}/a-f
try comet-agent run --data-dir {tmp_path} --no-g
"""
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "show status server",
        "--stop-timeout",
        "--json",
        "text json",
        "--help --log-format --verbose -h -v bash zsh fish",
        f"{tmp_path}/a-folder",
        "--no-git --no-gpu",
    ]


def test_zsh_completion_parses_and_quotes_its_specs():
    script = _completion("zsh")
    assert script.startswith("#compdef comet-agent\n")
    for name in SUBCOMMANDS + RUN_OPTIONS:
        assert name in script, name
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed: the script's syntax was not checked")
    assert subprocess.run(["zsh", "-n", "-c", script], capture_output=True, timeout=60).returncode == 0
    # With _arguments replaced by a printer, each spec must arrive as one word, unglobbed.
    probe = (
        '_arguments() { print -rl -- "$@"; state=argument; return 0 }\n_describe() { : }\n'
        + script
        + "\nwords=(run); _comet_agent\n"
    )
    result = subprocess.run(["zsh", "-f", "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    specs = result.stdout.splitlines()
    assert "*--tag[add a tag to the experiment]:tag: " in specs
    assert (
        "*-v[more logging]" in specs
        and "--log-format[log records on stderr as text, or as one JSON object per line]:log-format:(text json)"
        in specs
    )
    assert "*::command:_normal" in specs


def test_fish_completion_completes_in_fish():
    script = _completion("fish")
    for name in SUBCOMMANDS + [option.lstrip("-") for option in RUN_OPTIONS]:
        assert name in script, name
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed: the script was not tried")

    def complete(line: str) -> list[str]:
        result = subprocess.run(
            ["fish", "--no-config", "-c", f"{script}\ncomplete -C '{line}'"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return [entry.split("\t")[0] for entry in result.stdout.splitlines()]

    assert set(complete("comet-agent ")) >= set(SUBCOMMANDS)
    assert complete("comet-agent run --sto") == ["--stop-timeout"]
    assert sorted(complete("comet-agent completion ")) == ["bash", "fish", "zsh"]
    assert sorted(complete("comet-agent --log-format ")) == ["json", "text"]


# -- flush's progress ------------------------------------------------------------------------------


def _spool_for_new_experiment(server, data_dir: Path, records: int) -> str:
    experiment = APIExperiment(
        api=API(api_key=server.api_key, url_override=server.clientlib_url), workspace="ws", project_name="flush"
    )
    (data_dir / "spool").mkdir(parents=True)
    with Spool(data_dir / "spool" / f"{experiment.id}.db") as spool:
        for step in range(records):
            spool.append(
                experiment.id,
                "metrics_batch",
                {
                    "values": [
                        {
                            "metricName": "loss",
                            "metricValue": 1.0 / (step + 1),
                            "step": step,
                            "timestamp": 1_700_000_000_000 + step,
                        }
                    ]
                },
            )
    return experiment.id


def test_flush_shows_progress_on_a_terminal_only(local_server, tmp_path):
    key = _spool_for_new_experiment(local_server, tmp_path / "data", 120)
    controller, terminal = pty.openpty()
    try:
        flush = subprocess.Popen(
            agent_argv("flush"),
            env=agent_env(local_server, tmp_path / "data"),
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's last writer closed it
                break
            if not chunk:
                break
            seen += chunk
        stdout, _ = flush.communicate(timeout=60)
    finally:
        os.close(controller)
    assert flush.returncode == 0, seen.decode(errors="replace")
    assert stdout.decode() == f"{key}: sent 120, rejected 0, left 0\n"
    assert re.search(rb"\r\x1b\[Kflushing " + key.encode() + rb": \d+ of 120 records", seen), seen
    assert seen.endswith(b"\r\x1b[K"), "the progress line is cleared at the end"

    # Not a terminal: only the summary.
    key = _spool_for_new_experiment(local_server, tmp_path / "data2", 3)
    result = run_agent(local_server, tmp_path / "data2", "flush")
    assert result.returncode == 0 and result.stderr == b""
    assert result.stdout.decode() == f"{key}: sent 3, rejected 0, left 0\n"
