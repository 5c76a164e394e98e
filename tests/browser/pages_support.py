"""Helpers for the experiment-page tests: fill an experiment through our client, load pages in
headless Chromium and read back what the browser rendered.

``check_experiment_page(server, key, tmp_path)`` works for any experiment key on a running
``LocalServer`` (e.g. one written by ``comet-agent run``): it logs in with a single-use token
(``comet_agent.api.page_login.page_url``), lets the page's JavaScript run, and returns a
``PageCheck`` describing the sections, charts and any sign of script injection it found.
"""

from __future__ import annotations

import dataclasses
import html.parser
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest
import requests

from comet_agent.api.page_login import page_url

#: The hostile value put into every experiment field the page shows. If any copy of it ran as
#: script (or became an element), the page's <html> would carry data-pwned and window.__pwned.
HOSTILE = (
    "<script>window.__pwned=1;document.documentElement.setAttribute('data-pwned','1')</script>"
    "<img src=x onerror=\"window.__pwned=1;document.documentElement.setAttribute('data-pwned','1')\">"
)

#: Sections every experiment page has (``data-section`` values).
EXPECTED_SECTIONS = ("overview", "tags", "metrics", "system", "gpus", "packages", "git", "output")

#: The scripts a page may load: ours and the vendored uPlot, all from this server.
OUR_SCRIPTS = ("/local/static/pages.js", "/local/static/uPlot.iife.min.js", "/local/static/charts.js")

_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "headless_shell")
_BROWSER_TIMEOUT_S = 90


def chromium_path() -> Optional[str]:
    """The headless-capable Chromium on this machine (``$CHROMIUM`` first), or None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit and Path(explicit).exists():
        return explicit
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium path, or skip the calling test visibly."""
    path = chromium_path()
    if path is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium, or set $CHROMIUM)")
    return path


#: How every page test starts Chromium: headless, with no network of its own (this machine's closed
#: network refuses its background connections) and nothing from a previous profile.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
)


def _chromium(args: list[str], profile_dir: Path) -> subprocess.CompletedProcess:
    argv = [
        require_chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile_dir}",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=_BROWSER_TIMEOUT_S, check=False)


def dump_dom(url: str, profile_dir: Path, budget_ms: int = 4000) -> str:
    """The DOM after the page's scripts ran (``--dump-dom``), as HTML text."""
    result = _chromium([f"--virtual-time-budget={budget_ms}", "--dump-dom", url], profile_dir)
    if result.returncode != 0 or "<html" not in result.stdout:
        raise AssertionError(f"chromium --dump-dom failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def screenshot(
    url: str, path: Path, profile_dir: Path, width: int = 1400, height: int = 2600, budget_ms: int = 4000
) -> Path:
    """A PNG of the page at ``path`` (``--screenshot``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result = _chromium(
        [f"--virtual-time-budget={budget_ms}", f"--window-size={width},{height}", f"--screenshot={path}", url],
        profile_dir,
    )
    if not path.exists() or path.stat().st_size == 0:
        raise AssertionError(f"chromium --screenshot wrote nothing ({result.returncode}): {result.stderr[-2000:]}")
    return path


class _DomReader(html.parser.HTMLParser):
    """Collects what the tests look at from a dumped DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.html_attrs: dict = {}
        self.body_attrs: dict = {}
        self.sections: list[str] = []
        self.charts: dict[str, dict] = {}  # dom id -> {"chartId", "renderedPoints", "series": {name: n}}
        self._figure: Optional[str] = None
        self.scripts: list[dict] = []
        self.images: list[dict] = []
        self.event_handler_attrs: list[tuple[str, str]] = []
        self.text_parts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, _value in attrs:
            if name.startswith("on"):
                self.event_handler_attrs.append((tag, name))
        if tag == "html":
            self.html_attrs = attributes
        elif tag == "body":
            self.body_attrs = attributes
        elif tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        elif tag == "img":
            self.images.append(attributes)
        if "data-section" in attributes:
            self.sections.append(attributes["data-section"])
        if tag == "figure" and "chart" in (attributes.get("class") or "").split():
            self._figure = attributes.get("id")
            self.charts[self._figure] = {
                "chartId": attributes.get("data-chart-id"),
                "kind": attributes.get("data-kind"),
                "expectedSeries": int(attributes.get("data-series") or 0),
                "renderedPoints": int(attributes.get("data-rendered-points") or 0),
                "series": {},
            }
        # charts.js marks each drawn line's legend row, and a heatmap canvas names its rows.
        if tag == "tr" and self._figure and "data-points" in attributes:
            self.charts[self._figure]["series"][attributes.get("data-series")] = int(attributes["data-points"])
        if tag == "canvas" and self._figure and "data-series-names" in attributes:
            columns = int(attributes.get("data-columns") or 0)
            for name in attributes["data-series-names"].split():
                self.charts[self._figure]["series"][name] = columns

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if not self._in_script:
            self.text_parts.append(data)


@dataclasses.dataclass
class PageCheck:
    """What a browser found on an experiment page."""

    url: str
    sections: list[str]
    charts: dict[str, dict]
    pwned: bool
    foreign_scripts: list[dict]
    images: list[dict]
    event_handler_attrs: list
    text: str
    charts_rendered_attr: Optional[str]
    screenshot: Optional[Path]
    dom: str

    @property
    def missing_sections(self) -> list[str]:
        """Expected sections absent from the page."""
        return [s for s in EXPECTED_SECTIONS if s not in self.sections]

    @property
    def empty_charts(self) -> list[str]:
        """Charts the page's JS did not draw, or drew without points in some series."""
        return [
            dom_id
            for dom_id, chart in self.charts.items()
            if chart["renderedPoints"] == 0
            or len(chart["series"]) != chart["expectedSeries"]
            or any(n == 0 for n in chart["series"].values())
        ]

    def chart_ids(self) -> set[str]:
        """The ``data-chart-id`` of every chart (``cpu``, ``ram``, ``user:<name>``, ...)."""
        return {chart["chartId"] for chart in self.charts.values()}


def read_dom(dom: str) -> _DomReader:
    """Parse a dumped DOM."""
    reader = _DomReader()
    reader.feed(dom)
    return reader


def experiment_path(server, experiment_key: str, api_key: Optional[str] = None) -> str:
    """``/{workspace}/{project}/{key}`` of an experiment, read through the REST API."""
    response = requests.get(
        server.url + "/api/rest/v2/experiment/metadata",
        params={"experimentKey": experiment_key},
        headers={"Authorization": api_key or server.api_key},
        timeout=30,
    )
    response.raise_for_status()
    meta = response.json()
    archive = "archive/" if meta.get("archived") else ""
    return f"/{meta['workspaceName']}/{meta['projectName']}/{archive}{experiment_key}"


def check_experiment_page(
    server, experiment_key: str, tmp_path: Path, api_key: Optional[str] = None, screenshot_to: Optional[Path] = None
) -> PageCheck:
    """Open an experiment's page in headless Chromium (logged in) and report what rendered.

    Args:
        server: a running ``LocalServer`` (anything with ``.url`` and ``.api_key``).
        experiment_key: the experiment to open.
        tmp_path: scratch space (browser profile, screenshot ``experiment-page.png``).
        api_key: the key to log in with (default: the server's first key).
        screenshot_to: also copy the screenshot there (e.g. ``docs/experiment-page.png``).

    Returns:
        A ``PageCheck``; skips the test when Chromium is absent.
    """
    require_chromium()
    key = api_key or server.api_key
    path = experiment_path(server, experiment_key, key)
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    dom = dump_dom(page_url(server.url, key, path), profile)
    reader = read_dom(dom)
    shot = screenshot(page_url(server.url, key, path), tmp_path / "experiment-page.png", profile)
    if screenshot_to is not None:
        screenshot_to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, screenshot_to)
    foreign = [s for s in reader.scripts if s.get("type") != "application/json" and s.get("src") not in OUR_SCRIPTS]
    return PageCheck(
        url=server.url + path,
        sections=reader.sections,
        charts=reader.charts,
        pwned="data-pwned" in reader.html_attrs or "data-pwned" in reader.body_attrs,
        foreign_scripts=foreign,
        images=reader.images,
        event_handler_attrs=reader.event_handler_attrs,
        text="".join(reader.text_parts),
        charts_rendered_attr=reader.body_attrs.get("data-charts-rendered"),
        screenshot=shot,
        dom=dom,
    )


# ------------------------------------------------------------------ experiment data


def _writable_details(details: dict) -> dict:
    from comet_agent.server.store import WRITABLE_SYSTEM_DETAILS_KEYS

    return {k: v for k, v in details.items() if k in WRITABLE_SYSTEM_DETAILS_KEYS and v not in (None, [])}


def real_metric_points(samples: int = 3, start_ms: Optional[int] = None, step_ms: int = 1000) -> list[dict]:
    """Metric points from this machine's real periodic collectors (one real sample, repeated
    ``samples`` times at ``step_ms`` apart so every chart has a line)."""
    from comet_agent.collectors.periodic import build_periodic_collectors, take_sample
    from comet_agent.delivery.payloads import metric_points

    collectors, _unavailable = build_periodic_collectors(pid=os.getpid(), include_gpu=False)
    points = metric_points(take_sample(collectors, interval_s=0.2))
    base = start_ms if start_ms is not None else int(time.time() * 1000) - samples * step_ms
    result = []
    for index in range(samples):
        for point in points:
            value = point["metricValue"]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = value * (1 + 0.1 * index)
            result.append({**point, "metricValue": value, "timestamp": base + index * step_ms})
    return result


def synthetic_gpu_points(start_ms: int, samples: int = 3, gpus: int = 2) -> list[dict]:
    """``sys.gpu.<i>.*`` points as the agent's GPU collector names them (this machine has no GPU)."""
    points = []
    for index in range(samples):
        for gpu in range(gpus):
            prefix = f"sys.gpu.{gpu}."
            for field, value in (
                ("gpu_utilization", 50 + 10 * index + gpu),
                ("memory_utilization", 20 + index),
                ("used_memory", (10 + index) * 2**30),
                ("total_memory", 80 * 2**30),
                ("temperature", 60 + index),
                ("power_usage", 300000 + 1000 * index),
                ("power_limit", 700000),
            ):
                points.append(
                    {"metricName": prefix + field, "metricValue": value, "timestamp": start_ms + index * 1000}
                )
    return points


def log_points(experiment, points: list[dict]) -> None:
    """Send points through ``APIExperiment.log_metrics_batch`` in batches of 1000."""
    for start in range(0, len(points), 1000):
        experiment.log_metrics_batch(points[start : start + 1000])


def fill_experiment(experiment, hostile: bool = True, real_static: bool = True) -> dict:
    """Write a complete experiment through our client: real static snapshot and periodic samples
    of this machine, synthetic GPU series, user metrics, output on both streams, git metadata and a
    patch, tags; with ``hostile`` every free-text field also carries ``HOSTILE``.

    Returns:
        ``{"metric_names": [...], "user_metrics": [...]}``.
    """
    from comet_agent.collectors.snapshot import collect_static, system_details

    bad = HOSTILE if hostile else ""
    if real_static:
        snapshot = collect_static(include_gpu=False, include_git=False, deadline_s=20)
        details = _writable_details(system_details(snapshot))
    else:
        details = {"hostname": "box", "installedPackages": ["numpy==1.26.4"]}
    details["installedPackages"] = list(details.get("installedPackages") or []) + (
        [f"evil{bad}==1.0"] if hostile else []
    )
    details["osPackages"] = list(details.get("osPackages") or []) + ([f"libevil{bad}=1"] if hostile else [])
    details["command"] = ["python", "train.py", "--note", f"x{bad}"]
    details["gpuStaticInfoList"] = [
        {"gpuIndex": 0, "name": f"NVIDIA H100{bad}", "uuid": "GPU-0", "totalMemory": 80 * 2**30, "powerLimit": 700000},
        {"gpuIndex": 1, "name": "NVIDIA H100", "uuid": "GPU-1", "totalMemory": 80 * 2**30, "powerLimit": 700000},
    ]
    experiment.update_system_details(details)
    if hostile:
        experiment.log_additional_system_info(f"note{bad}", f"value{bad}")
    experiment.add_tags(["pages-test", f"tag{bad}"] if hostile else ["pages-test"])
    start_ms = int(time.time() * 1000) - 10_000
    points = real_metric_points(samples=4, start_ms=start_ms) + synthetic_gpu_points(start_ms, samples=4)
    user = ["loss", f"acc{bad}"] if hostile else ["loss", "acc"]
    for step in range(20):
        points.append(
            {"metricName": user[0], "metricValue": 1.0 / (step + 1), "step": step, "timestamp": start_ms + step}
        )
        points.append({"metricName": user[1], "metricValue": step / 20, "step": step, "timestamp": start_ms + step})
    log_points(experiment, points)
    experiment.log_output(f"epoch 1 loss 0.5 {bad}\n")
    experiment.log_output(f"warning: something on stderr {bad}\n", stderr=True)
    experiment.set_git_metadata(
        user="alice",
        root="0" * 40,
        branch=f"refs/heads/main{bad}",
        parent="1" * 40,
        origin="https://example.invalid/repo.git",
    )
    experiment.set_git_patch(
        (
            "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
            f"@@ -1,2 +1,2 @@\n-lr = 0.1\n+lr = 0.01 # {bad}\n context line\n"
        ).encode()
    )
    return {"metric_names": sorted({p["metricName"] for p in points}), "user_metrics": user}
