"""The experiment page's interactive charts in headless Chromium, on a recorded 64-core run.

Driven through the DevTools protocol (``tests/browser/devtools.py``) with real mouse input: the
hover read-out shows values in their unit, a drag zooms, a legend click hides and shows a
series, cursors move together, the 64 cores are one heatmap of 64 rows, the run's start and end
are marked, the console stays free of CSP violations and errors, and with scripts off every chart
is a table of min / mean / max / last with units. Skips visibly without Chromium.

``UPDATE_DOCS_SCREENSHOT=1`` also writes this page's screenshot to ``docs/experiment-page.png``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.api.page_login import page_url
from comet_agent.server.app import LocalServer
from tests.browser.devtools import Browser
from tests.browser.many_core_run import BUSY_CORES, CPU_COUNT, STEP_S, STEPS, core_percent, write_many_core_run
from tests.browser.pages_support import experiment_path, require_chromium, screenshot

API_KEY = "charts-test-key-" + "0" * 16
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "experiment-page.png"


@pytest.fixture(scope="module")
def run_page(tmp_path_factory):
    """(server, experiment key, page path): the recorded 64-core run, finished with exit code 0."""
    require_chromium()
    tmp = tmp_path_factory.mktemp("charts")
    with LocalServer(tmp / "server", api_keys=[API_KEY]) as server:
        api = API(api_key=API_KEY, url_override=server.clientlib_url)
        experiment = APIExperiment(
            api=api, workspace="charts-ws", project_name="charts-proj", experiment_name="pretrain on a 64-core host"
        )
        start_ms = int(time.time() * 1000) - 600_000
        points = write_many_core_run(tmp, start_ms)
        for index in range(0, len(points), 1000):
            experiment.log_metrics_batch(points[index : index + 1000])
        experiment.update_system_details(
            {
                "hostname": "gpu-box-64",
                "user": "alice",
                "os": "Linux-6.8-x86_64",
                "pythonVersion": "3.11.9",
                "command": ["python", "pretrain.py", "--epochs", "3"],
            }
        )
        experiment.add_tags(["pretrain", "64-core"])
        for step in range(60):
            experiment.log_metric("loss", 2.5 * 0.95**step, step=step * 10)
        experiment.set_start_time(start_ms - 1000)
        experiment.set_end_time(start_ms + (STEPS - 1) * STEP_S * 1000 + 1000)
        experiment.log_other("comet_agent.exit_code", 0)
        yield server, experiment.id, experiment_path(server, experiment.id, API_KEY)
        api.close()


@pytest.fixture(scope="module")
def page(run_page, tmp_path_factory):
    """A browser on the run's page, logged in, every chart drawn."""
    server, _key, path = run_page
    with Browser(tmp_path_factory.mktemp("browser") / "profile") as browser:
        browser.open(
            page_url(server.url, API_KEY, path),
            ready="document.body && document.body.dataset.chartsRendered !== undefined",
        )
        yield browser


def _figure(chart_id: str) -> str:
    return f'figure[data-chart-id="{chart_id}"]'


def _legend_values(browser, chart_id: str) -> list[str]:
    return browser.evaluate(
        f"Array.from(document.querySelectorAll('{_figure(chart_id)} .u-legend .u-series .u-value'))"
        ".map(e => e.textContent)"
    )


def test_every_chart_draws_and_the_console_stays_clean(page):
    charts = page.evaluate(
        "Array.from(document.querySelectorAll('figure.chart')).map(f => [f.dataset.chartId, f.dataset.rendered,"
        " f.dataset.renderError || null])"
    )
    assert charts and all(rendered == "true" and error is None for _, rendered, error in charts), charts
    assert page.evaluate("document.body.dataset.chartsRendered") == str(len(charts))
    # Scripts only from this server; nothing inline besides the JSON data block.
    scripts = page.evaluate("Array.from(document.scripts).map(s => s.getAttribute('src') || s.type)")
    assert sorted(scripts) == sorted(
        ["/local/static/pages.js", "application/json", "/local/static/uPlot.iife.min.js", "/local/static/charts.js"]
    )
    assert page.problems() == []


def test_a_csp_violation_would_be_seen(page):
    # The clean console above means something only if a violation shows up in it: inject one.
    before = len(page.problems())
    page.evaluate(
        "(() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
        " document.body.appendChild(s); return 1; })()"
    )
    deadline = time.monotonic() + 5
    while len(page.problems()) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("Content Security Policy" in p for p in page.problems()[before:]), page.problems()
    assert page.evaluate("window.x === undefined")
    page.messages.clear()


def test_hover_reads_out_values_with_units_and_cursors_move_together(page):
    left, top, width, height = page.rect_of(f"{_figure('gpu-power')} .u-over")
    page.move_mouse(left + width * 0.5, top + height * 0.5)
    power = _legend_values(page, "gpu-power")
    # First cell: the time under the cursor; then each series in W (stored in mW).
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", power[0]), power
    assert all(re.fullmatch(r"\d+(\.\d+)? W", v) for v in power[1:]), power
    values_w = [float(v.split()[0]) for v in power[1:]]
    assert all(100 <= v <= 700 for v in values_w), power  # 120-480 W and the 700 W limit, not 120000
    # The RAM chart's cursor followed, to the same moment, with binary prefixes.
    ram = _legend_values(page, "ram")
    assert ram[0] == power[0]
    assert all(re.fullmatch(r"\d+(\.\d+)? GiB", v) for v in ram[1:]), ram
    # A different place reads a different moment.
    page.move_mouse(left + width * 0.2, top + height * 0.5)
    assert _legend_values(page, "gpu-power")[0] != power[0]


def test_drag_zooms_the_x_range_and_double_click_resets(page):
    figure = _figure("memory-percent")
    before = page.evaluate(
        f"[+document.querySelector('{figure}').dataset.xMin, +document.querySelector('{figure}').dataset.xMax]"
    )
    left, top, width, height = page.rect_of(f"{figure} .u-over")
    page.drag((left + width * 0.25, top + height / 2), (left + width * 0.5, top + height / 2))
    after = page.evaluate(
        f"[+document.querySelector('{figure}').dataset.xMin, +document.querySelector('{figure}').dataset.xMax]"
    )
    span_before, span_after = before[1] - before[0], after[1] - after[0]
    assert after[0] > before[0] and after[1] < before[1], (before, after)
    assert 0.2 < span_after / span_before < 0.3, (before, after)
    page.click(left + width / 2, top + height / 2)
    page.click(left + width / 2, top + height / 2, click_count=2)
    reset = page.evaluate(
        f"[+document.querySelector('{figure}').dataset.xMin, +document.querySelector('{figure}').dataset.xMax]"
    )
    assert reset == pytest.approx(before)


def test_a_legend_click_hides_and_shows_a_series(page):
    entry = f'{_figure("ram")} .u-legend tr[data-series="sys.ram.used"]'
    page.move_mouse(1, 1)  # off every chart: legends show last values and stay where they are
    assert page.evaluate(f"document.querySelector('{entry}').classList.contains('u-off')") is False
    page.click(*page.center_of(f"{entry} th"))
    assert page.evaluate(f"document.querySelector('{entry}').classList.contains('u-off')") is True
    page.click(*page.center_of(f"{entry} th"))
    assert page.evaluate(f"document.querySelector('{entry}').classList.contains('u-off')") is False
    # Every series has its legend entry (no cap on how many are listed).
    assert page.evaluate(f"document.querySelectorAll('{_figure('gpu-memory')} .u-legend tr[data-series]').length") == 4


def test_64_cores_are_one_heatmap_beside_the_average_line(page):
    cpu = _figure("cpu")
    canvas = f"{cpu} canvas.heatmap-canvas"
    assert page.evaluate(f"document.querySelector('{canvas}').dataset.rows") == str(CPU_COUNT)
    names = page.evaluate(f"document.querySelector('{canvas}').dataset.seriesNames").split()
    assert names == [f"sys.cpu.percent.{i:02d}" for i in range(1, CPU_COUNT + 1)]
    # The average is the only line; no line per core.
    assert page.evaluate(
        f"Array.from(document.querySelectorAll('{cpu} .u-legend tr[data-series]')).map(e => e.dataset.series)"
    ) == ["sys.cpu.percent.avg"]
    # Colours follow the recorded load: an idle core's row is one dark colour all along, a busy
    # core's row goes from dark to bright as its load wave passes.
    rows = page.evaluate(
        f"(() => {{ const c = document.querySelector('{canvas}'); const ctx = c.getContext('2d');"
        f" const rowPx = c.height / {CPU_COUNT}; const out = [];"
        f" for (const r of [0, {BUSY_CORES - 1}, {CPU_COUNT - 1}]) {{"
        " const d = ctx.getImageData(0, Math.floor((r + 0.5) * rowPx), c.width, 1).data; const lum = [];"
        " for (let x = 0; x < c.width; x += 2) if (d[x * 4 + 3] === 255) lum.push(d[x * 4] + d[x * 4 + 1] + d[x * 4 + 2]);"
        " out.push([Math.min(...lum), Math.max(...lum)]); } return out; })()"
    )
    (busy_min, busy_max), (last_busy_min, last_busy_max), (idle_min, idle_max) = rows
    assert idle_max - idle_min < 10 and idle_max < 250, rows
    assert busy_max - busy_min > 200 and last_busy_max - last_busy_min > 200, rows
    assert min(busy_min, last_busy_min) > idle_max, rows  # 15% at the trough is still above idle 4%
    # Hovering a row reads that core's value at that time, in percent.
    left, top, width, height = page.rect_of(canvas)
    page.move_mouse(left + width * 0.5, top + height - 1)
    readout = page.evaluate(f"document.querySelector('{cpu} .heatmap-readout').textContent")
    assert readout.startswith(f"sys.cpu.percent.{CPU_COUNT} at ") and readout.endswith(": 4%"), readout
    page.move_mouse(left + 2, top + 1)
    readout = page.evaluate(f"document.querySelector('{cpu} .heatmap-readout').textContent")
    first = float(readout.rsplit(": ", 1)[1].rstrip("%"))
    assert first == pytest.approx(core_percent(0, 1), abs=8), readout


def test_the_run_start_and_end_are_marked_on_time_charts(page):
    marks = page.evaluate(
        "Array.from(document.querySelectorAll('figure.chart')).map(f => [f.dataset.chartId,"
        " Array.from(f.querySelectorAll('.run-mark')).map(m => [m.dataset.mark, m.textContent, !m.hidden])])"
    )
    by_chart = dict((chart_id, found) for chart_id, found in marks)
    for chart_id in ("cpu", "ram", "gpu-power"):
        assert by_chart[chart_id] == [["start", "start", True], ["end", "end: finished, exit 0", True]], by_chart
    assert by_chart["user:loss"] == []  # a step axis has no times to mark


def test_with_scripts_off_every_chart_is_a_summary_table_with_units(run_page, tmp_path):
    server, _key, path = run_page
    with Browser(tmp_path / "profile-noscript") as browser:
        browser.disable_scripts()
        browser.open(page_url(server.url, API_KEY, path), ready="document.querySelector('figure.chart') !== null")
        assert browser.evaluate("document.querySelectorAll('canvas').length") == 0
        tables = browser.evaluate(
            "Array.from(document.querySelectorAll('figure.chart')).map(f => { const t = f.querySelector("
            "'.chart-summary'); return [f.dataset.chartId, t !== null && t.offsetParent !== null,"
            " Array.from(t.querySelectorAll('tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))]; })"
        )
        by_chart = {chart_id: (visible, rows) for chart_id, visible, rows in tables}
        assert all(visible for visible, _ in by_chart.values()), by_chart
        cpu_rows = {row[0]: row[1:] for row in by_chart["cpu"][1]}
        assert len(cpu_rows) == CPU_COUNT + 1  # every core and the average
        assert cpu_rows["sys.cpu.percent.64"] == ["4%", "4%", "4%", "4%"]
        power_rows = {row[0]: row[1:] for row in by_chart["gpu-power"][1]}
        assert power_rows["sys.gpu.0.power_limit"] == ["700 W"] * 4
        ram_rows = {row[0]: row[1:] for row in by_chart["ram"][1]}
        assert ram_rows["sys.ram.total"] == ["256 GiB"] * 4
        assert browser.problems() == []


def test_screenshot_of_the_page(run_page, tmp_path):
    server, _key, path = run_page
    shot = screenshot(
        page_url(server.url, API_KEY, path), tmp_path / "page.png", tmp_path / "profile-shot", width=1400, height=1700
    )
    assert shot.stat().st_size > 50_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.write_bytes(shot.read_bytes())
