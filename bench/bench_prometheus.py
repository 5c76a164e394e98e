"""Cost of serving /metrics: CPU per scrape, in-process and in a real `comet-agent run` at 1 s scrapes.

Usage:
    python bench/bench_prometheus.py                      # both parts, a recorded 4-GPU A100 box
    python bench/bench_prometheus.py --rounds 300 --duration-s 10 --model h100-80gb-mig

Part 1, in-process: an exporter on 127.0.0.1:0 serves a job whose last records are real collectors'
readings of this host (CPU, memory, load, disk, network, this process's tree) plus the recorded
GPUs (the fake pynvml). It prints the CPU of one bare render (median of ``--rounds``), the CPU the
server spends per scrape when a client in another process scrapes ``--rounds`` times
(``time.process_time``: nanoseconds, every thread), the page's size and its series count.

Part 2, the real thing: ``comet-agent run --sample-interval 1 --prometheus-listen`` wrapping a
sleeper (the GPUs from the recorded model, through tests/support/fake_nvml_site), measured from
/proc/<pid>/stat for ``--duration-s`` with a scrape every second, then as long without scrapes,
twice, interleaved. The difference is the agent's CPU per scrape at a 1 s scrape interval; the
kernel counts a process's CPU in 10 ms ticks there, so it is coarse (about +-1 ms per scrape over
10 s parts) and part 1 is the precise figure.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from comet_agent.engine.prometheus import PrometheusExporter  # noqa: E402

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _host_job(model: str) -> types.SimpleNamespace:
    """A job holding one real sample of this host and the recorded GPUs, as the engine keeps it."""
    from comet_agent.collectors.gpu import GpuCollector
    from comet_agent.collectors.periodic import build_periodic_collectors
    from tests.support.fake_nvml import build_fake_nvml

    collectors, _unavailable = build_periodic_collectors(pid=os.getpid(), include_gpu=False)
    for collector in collectors:
        collector.sample(int(time.time() * 1000))  # prime the rates
    time.sleep(0.2)
    now_ms = int(time.time() * 1000)
    cpu = [record for collector in collectors for record in collector.sample(now_ms)]
    gpu = GpuCollector(nvml_module=build_fake_nvml(model), environ={}).sample(now_ms)
    return types.SimpleNamespace(experiment_key="0" * 32, latest_records={"cpu": cpu, "gpu": gpu})


#: The scraping client, in its own process so that only the server's work is on our CPU clock.
_CLIENT = (
    "import sys, time, urllib.request\n"
    "url, rounds = sys.argv[1], int(sys.argv[2])\n"
    "for _ in range(rounds):\n"
    "    urllib.request.urlopen(url, timeout=5).read()\n"
)


def in_process(rounds: int, model: str) -> None:
    job = _host_job(model)
    exporter = PrometheusExporter("127.0.0.1", 0, jobs=lambda: [job]).start()
    try:
        page = urllib.request.urlopen(exporter.url, timeout=5).read()
        render_s = []
        for _ in range(rounds):
            start = time.process_time()
            exporter.render()
            render_s.append(time.process_time() - start)
        # CLOCK_PROCESS_CPUTIME_ID counts every thread of this process, the exited request threads too.
        start = time.process_time()
        subprocess.run([sys.executable, "-c", _CLIENT, exporter.url, str(rounds)], check=True, timeout=600)
        served_s = (time.process_time() - start) / rounds
    finally:
        exporter.stop()
    series = sum(1 for line in page.splitlines() if line and not line.startswith(b"#"))
    print(f"in-process, {model}: page {len(page) / 1024:.1f} KiB, {series} series; {rounds} rounds")
    print(f"  render only (median):              {statistics.median(render_s) * 1000:6.2f} ms CPU")
    print(f"  one scrape served over HTTP (mean): {served_s * 1000:6.2f} ms CPU (server side only)")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime + stime


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def subprocess_at_1s(duration_s: float, model: str) -> None:
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-prom-")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMET_")},
        "COMET_AGENT_DATA_DIR": data_dir,
        "COMET_AGENT_TEST_NVML": model,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "support" / "fake_nvml_site"), str(REPO)]),
    }
    env.pop("CUDA_VISIBLE_DEVICES", None)
    agent = subprocess.Popen(
        [sys.executable, "-m", "comet_agent", "run", "--sample-interval", "1", "--no-git", "--no-os-packages"]
        + ["--prometheus-listen", f"127.0.0.1:{port}", "--", sys.executable, "-c", "import time; time.sleep(3600)"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        time.sleep(3)  # past the start: the static snapshot and the first pushes
        results: dict[bool, list[float]] = {True: [], False: []}
        for scraping in (True, False, True, False):
            start_cpu, start = _cpu_s(agent.pid), time.monotonic()
            scrapes = 0
            while time.monotonic() - start < duration_s:
                if scraping:
                    urllib.request.urlopen(url, timeout=5).read()
                    scrapes += 1
                time.sleep(1.0 - (time.monotonic() - start) % 1.0)
            results[scraping].append((_cpu_s(agent.pid) - start_cpu) / (time.monotonic() - start) * 1000)
    finally:
        agent.terminate()
        agent.wait(30)
    with_ms, without_ms = statistics.mean(results[True]), statistics.mean(results[False])
    print(f"comet-agent run --sample-interval 1, {model}, {duration_s:.0f} s per part, 2 parts each:")
    print(f"  agent CPU with a scrape every 1 s: {with_ms:6.2f} ms/s  {['%.2f' % v for v in results[True]]}")
    print(f"  agent CPU without scrapes:         {without_ms:6.2f} ms/s  {['%.2f' % v for v in results[False]]}")
    print(f"  cost of one scrape:                {with_ms - without_ms:6.2f} ms CPU")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="in-process scrapes (default 300)")
    parser.add_argument("--duration-s", type=float, default=10.0, help="each part of the subprocess run (default 10)")
    parser.add_argument("--model", default="a100-sxm4-80gb", help="recorded GPU model (tests/fixtures/nvml)")
    parser.add_argument("--skip-subprocess", action="store_true", help="only the in-process part")
    args = parser.parse_args(argv)
    in_process(args.rounds, args.model)
    if not args.skip_subprocess:
        subprocess_at_1s(args.duration_s, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
