"""The experiment page: overview, metric charts, system, GPUs, packages, git, output, images.

Served at the path ``APIExperiment.url`` builds, ``/{workspace}/{project}/{experiment key}``
(``/{workspace}/{project}/archive/{experiment key}`` for an archived one). Large texts are
capped (``MAX_OUTPUT_CHARS``, ``MAX_PATCH_CHARS``) and say so; chart data travels as a
non-executable ``<script type="application/json">`` block.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

from aiohttp import web

from comet_agent.config import NODE_OTHER_PREFIX
from comet_agent.server.pages.access import RESERVED_SEGMENTS, authorize_page, owns_workspace
from comet_agent.server.pages.charts import (
    EXIT_CODE_OTHER,
    MAX_POINTS_PER_SERIES,
    build_charts,
    format_display,
    run_marks,
    split_node,
)
from comet_agent.server.pages.render import (
    definition_list,
    esc,
    experiment_status,
    format_duration,
    format_ms,
    html_response,
    json_for_html,
    layout,
    not_found_page,
    section,
    status_badge,
)
from comet_agent.server.rest.assets import WEB_ASSET_VIEW_PATH
from comet_agent.server.rest.common import MAX_EXPERIMENT_KEY_LENGTH
from comet_agent.server.state import state_of
from comet_agent.server.store import metric_series_downsampled

MAX_OUTPUT_CHARS = 2_000_000
MAX_PATCH_CHARS = 5_000_000
#: Images shown on the page (the newest), and their width; each links to the full image.
MAX_THUMBNAILS = 48
THUMBNAIL_WIDTH_PX = 160


def _header_section(meta: dict, tags: list[str], status: str, details: dict) -> str:
    tag_html = "".join(f'<span class="tag">{esc(t)}</span>' for t in tags) or '<span class="muted">none</span>'
    rows = definition_list(
        [
            ("Experiment key", meta["experimentKey"]),
            ("Workspace", meta["workspaceName"]),
            ("Project", meta["projectName"]),
            ("Start", format_ms(meta.get("startTimeMillis"))),
            ("End", format_ms(meta.get("endTimeMillis"))),
            ("Duration", format_duration(meta.get("durationMillis"))),
            ("Last heartbeat", format_ms(meta.get("lastHeartbeatMillis"))),
            ("Host", details.get("hostname")),
        ]
    )
    name = meta.get("experimentName") or meta["experimentKey"]
    return (
        f'<section id="overview" class="card" data-section="overview">'
        f'<h1><span class="exp-name">{esc(name)}</span> {status_badge(status)}</h1>'
        f'<div class="tags" data-section="tags">{tag_html}</div>{rows}</section>'
    )


def _system_section(details: dict) -> str:
    command = details.get("command")
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    ips = details.get("networkInterfaceIps") or []
    rows = [
        ("Host", details.get("hostname")),
        ("User", details.get("user")),
        ("OS", details.get("os")),
        ("OS type", details.get("osType")),
        ("OS release", details.get("osRelease")),
        ("Machine", details.get("machine")),
        ("Processor", details.get("processor")),
        ("Python", details.get("pythonVersion")),
        ("Python (verbose)", details.get("pythonVersionVerbose")),
        ("Executable", details.get("executable")),
        ("PID", details.get("pid")),
        ("IP", details.get("ip")),
        ("Interface IPs", ", ".join(str(i) for i in ips)),
        ("Total RAM (bytes)", details.get("totalRam")),
    ]
    extra = details.get("logAdditionalSystemInfoList") or []
    rows += [(str(item.get("key")), item.get("value")) for item in extra if isinstance(item, dict)]
    command_html = (
        f'<pre class="command">{esc(command)}</pre>' if command else '<p class="muted">no command recorded</p>'
    )
    return section("system", "System", f"<h3>Command</h3>{command_html}{definition_list(rows)}")


def _gpu_section(details: dict) -> str:
    gpus = details.get("gpuStaticInfoList") or []
    if not gpus:
        return section("gpus", "GPUs", '<p class="muted">no GPU recorded</p>')
    columns: list[str] = []
    for gpu in gpus:
        for key in gpu:
            if key not in columns:
                columns.append(key)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(g.get(c))}</td>" for c in columns) + "</tr>" for g in gpus)
    return section("gpus", "GPUs", f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _packages_block(block_id: str, title: str, packages: list) -> str:
    items = "".join(f"<li>{esc(p)}</li>" for p in packages)
    return (
        f'<details class="packages" id="{block_id}" data-count="{len(packages)}">'
        f"<summary>{esc(title)} ({len(packages)})</summary>"
        f'<input type="search" class="filter" placeholder="filter" aria-label="filter {esc(title)}" '
        f'data-filter-target="{block_id}-list">'
        f'<ul class="pkg-list" id="{block_id}-list">{items}</ul></details>'
    )


def _packages_section(details: dict) -> str:
    return section(
        "packages",
        "Packages",
        _packages_block("installed-packages", "Installed Python packages", details.get("installedPackages") or [])
        + _packages_block("os-packages", "OS packages", details.get("osPackages") or []),
    )


def _diff_html(patch: str) -> str:
    lines = []
    for line in patch.splitlines():
        if line.startswith(("+++", "---", "diff ", "index ")):
            css = "d-meta"
        elif line.startswith("@@"):
            css = "d-hunk"
        elif line.startswith("+"):
            css = "d-add"
        elif line.startswith("-"):
            css = "d-del"
        else:
            css = "d-ctx"
        lines.append(f'<span class="{css}">{esc(line)}</span>')
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _git_section(row: dict) -> str:
    metadata = json.loads(row["git_metadata"]) if row.get("git_metadata") else {}
    rows = definition_list(
        [
            ("Branch", metadata.get("branch")),
            ("Commit", metadata.get("parent")),
            ("Origin", metadata.get("origin")),
            ("Root", metadata.get("root")),
            ("User", metadata.get("user")),
        ]
    )
    patch_path = row.get("git_patch_path")
    patch_html = '<p class="muted">no patch</p>'
    if patch_path and Path(patch_path).exists():
        raw = Path(patch_path).read_bytes()
        note = ""
        if raw[:2] == b"PK":  # the SDK uploads the patch zipped
            raw = _unzip_first(raw)
        text = raw.decode("utf-8", errors="replace")
        if len(text) > MAX_PATCH_CHARS:
            text, note = text[:MAX_PATCH_CHARS], f'<p class="muted">patch truncated to {MAX_PATCH_CHARS} characters</p>'
        patch_html = (
            f'<details open class="patch"><summary>Patch</summary>{note}{_diff_html(text)}</details>'
            if text.strip()
            else '<p class="muted">empty patch</p>'
        )
    return section("git", "Git", rows + patch_html)


def _unzip_first(raw: bytes) -> bytes:
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = archive.namelist()
            return archive.read(names[0]) if names else b""
    except (zipfile.BadZipFile, KeyError, OSError):
        return raw


def _output_section(store, experiment_key: str) -> str:
    rows = store.connection.execute(
        "SELECT line, is_stderr FROM output_lines WHERE experiment_key=? ORDER BY id", (experiment_key,)
    )
    parts, total, truncated, count = [], 0, False, 0
    for line, is_stderr in rows:
        if total + len(line) > MAX_OUTPUT_CHARS:
            truncated = True
            break
        total += len(line)
        count += 1
        stream = "stderr" if is_stderr else "stdout"
        parts.append(f'<span class="{stream}" data-stream="{stream}">{esc(line)}</span>')
    if not parts:
        return section("output", "Output", '<p class="muted">no output captured</p>')
    note = f'<p class="muted">output truncated after {count} lines</p>' if truncated else ""
    legend = '<p class="legend"><span class="stdout">stdout</span> <span class="stderr">stderr</span></p>'
    return section("output", "Output", f'{legend}{note}<pre class="output">{"".join(parts)}</pre>')


def _summary_table(chart: dict) -> str:
    """min / mean / max / last of each series with units: what the page shows with scripts off
    (``charts.js`` hides it once the chart is drawn)."""
    unit = chart["unit"]
    rows = "".join(
        f'<tr><th scope="row">{esc(s["name"])}</th>'
        + "".join(f"<td>{esc(format_display(s[k], unit))}</td>" for k in ("min", "mean", "max", "last"))
        + "</tr>"
        for s in chart["summary"]
    )
    return (
        '<div class="chart-summary"><table class="grid summary">'
        "<thead><tr><th>series</th><th>min</th><th>mean</th><th>max</th><th>last</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def _charts_section(charts: list[dict], marks: list[dict]) -> str:
    if not charts:
        return section("metrics", "Metrics", '<p class="muted">no metrics logged</p>')
    blocks = []
    for chart in charts:
        unit = f" ({chart['unit']})" if chart["unit"] else ""
        total = sum(s["count"] for s in chart["summary"])
        heatmap = chart["heatmap"]
        heatmap_html = f'<div class="heatmap" data-rows="{len(heatmap["rows"])}"></div>' if heatmap is not None else ""
        wide = " chart-wide" if heatmap is not None else ""  # a heatmap takes the whole row
        blocks.append(
            f'<figure class="chart{wide}" id="{chart["domId"]}" data-chart-id="{esc(chart["id"])}" '
            f'data-kind="{chart["kind"]}" data-series="{len(chart["summary"])}" data-stored-points="{total}" '
            f'data-unit="{esc(chart["unit"])}">'
            f"<figcaption>{esc(chart['title'])}{esc(unit)}</figcaption>"
            f'{heatmap_html}<div class="plot"></div>{_summary_table(chart)}</figure>'
        )
    system = "".join(b for b, c in zip(blocks, charts) if c["kind"] == "system")
    user = "".join(b for b, c in zip(blocks, charts) if c["kind"] == "user")
    content = (
        # uPlot (vendored, MIT) draws the charts; with scripts off each figure shows its table.
        '<link rel="stylesheet" href="/local/static/uPlot.min.css">'
        '<p class="muted chart-help">Hover for values; drag across a chart to zoom (double-click '
        "to reset); click a legend entry to hide or show its series.</p>"
        f'<h3>System metrics</h3><div class="charts">{system or "<p class=muted>none</p>"}</div>'
        f'<h3>User metrics</h3><div class="charts">{user or "<p class=muted>none</p>"}</div>'
    )
    # The summary is the no-script table; the script needs only what it draws.
    drawn = [{k: v for k, v in chart.items() if k != "summary"} for chart in charts]
    data = json_for_html({"charts": drawn, "marks": marks})
    return (
        section("metrics", "Metrics", content)
        + f'<script type="application/json" id="chart-data">{data}</script>'
        + '<script src="/local/static/uPlot.iife.min.js" defer></script>'
        + '<script src="/local/static/charts.js" defer></script>'
    )


def _exit_code(store, experiment_key: str):
    """The wrapped command's exit status that ``comet-agent run`` logged, or None."""
    others = store.others_summary(experiment_key)
    return next((o.get("valueCurrent") for o in others if o.get("name") == EXIT_CODE_OTHER), None)


def _images_section(store, experiment_key: str) -> str:
    """Thumbnails of the experiment's images (``log_image``, ``log_figure``), newest
    ``MAX_THUMBNAILS``, each linking to the full image; empty when it has none."""
    images = store.assets(experiment_key, "image")
    if not images:
        return ""
    shown = images[-MAX_THUMBNAILS:]
    note = f'<p class="muted">the newest {len(shown)} of {len(images)} images</p>' if len(shown) < len(images) else ""
    key = urllib.parse.quote(experiment_key, safe="")
    thumbnails = []
    for image in shown:
        src = f"{WEB_ASSET_VIEW_PATH}?imageId={urllib.parse.quote(image['asset_id'], safe='')}&amp;experimentKey={key}"
        caption = image["file_name"] + (f" (step {image['step']})" if image["step"] is not None else "")
        thumbnails.append(
            f'<a class="thumbnail" href="{src}" title="{esc(caption)}">'
            f'<img src="{src}" alt="{esc(caption)}" width="{THUMBNAIL_WIDTH_PX}" loading="lazy"></a>'
        )
    return section("images", "Images", f'{note}<div class="thumbnails">{" ".join(thumbnails)}</div>')


# ------------------------------------------------------------------------------------------------
# Nodes: a job over several nodes (series named ``<node id>.sys.*``, hardware in the others)
# ------------------------------------------------------------------------------------------------


def node_of_series(name: str) -> tuple[str | None, str]:
    """``(node id, rest)`` of a system series name: ``node1.rank0.sys.proc.rss`` ->
    ``("node1", "rank0.sys.proc.rss")``; ``rank2.sys.proc.rss`` (ranks on a single node) and
    ``sys.cpu.percent.avg`` -> ``(None, name)``; a user metric -> ``(None, name)``."""
    node = split_node(name)[0]  # one node rule for the charts and the node panels
    return (node, name[len(node) + 1 :]) if node else (None, name)


def group_series_by_node(names) -> dict[str | None, list[str]]:
    """Series names grouped by node prefix, nodes in natural order (``node2`` before ``node10``),
    names sorted within each; ``None`` holds the unprefixed ones. For the charts, which can
    offer one node at a time."""
    import re

    groups: dict[str | None, list[str]] = {}
    for name in names:
        groups.setdefault(node_of_series(name)[0], []).append(name)

    def natural(node: str | None) -> list:
        return [] if node is None else [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", node)]

    return {node: sorted(groups[node]) for node in sorted(groups, key=lambda n: (n is not None, natural(n)))}


def node_hardware_records(store, experiment_key: str) -> dict[str, dict]:
    """Each node's hardware record (the latest ``comet_agent.node.<id>`` other), by node id."""
    records: dict[str, dict] = {}
    rows = store.connection.execute(
        "SELECT name, value_json FROM others WHERE experiment_key=? AND substr(name, 1, ?)=? ORDER BY id",
        (experiment_key, len(NODE_OTHER_PREFIX), NODE_OTHER_PREFIX),
    )
    for name, value_json in rows:
        try:
            value = json.loads(value_json)
            record = json.loads(value) if isinstance(value, str) else value
        except (TypeError, ValueError):
            continue
        if isinstance(record, dict):
            records[name[len(NODE_OTHER_PREFIX) :]] = record
    return records


def _node_dom_id(node: str) -> str:
    return "node-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in node)


def _nodes_section(series: dict, hardware: dict[str, dict]) -> str:
    """A node selector (links) and one panel per node: its hardware table and its series' last
    values. Empty for a single-node experiment."""
    groups = {node: names for node, names in group_series_by_node(series).items() if node is not None}
    # in natural order, as group_series_by_node sorts them
    nodes = [n for n in group_series_by_node([f"{n}.sys.x" for n in set(groups) | set(hardware)]) if n is not None]
    if not nodes:
        return ""
    selector = "".join(f'<a href="#{_node_dom_id(n)}" data-node="{esc(n)}">{esc(n)}</a> ' for n in nodes)
    panels = []
    for node in nodes:
        record = hardware.get(node, {})
        gpus = record.get("gpus") or []
        rows = [
            ("Host", record.get("hostname")),
            ("OS", record.get("os")),
            ("OS release", record.get("osRelease")),
            ("Machine", record.get("machine")),
            ("Processor", record.get("processor")),
            ("Python", record.get("pythonVersion")),
            ("Total RAM (bytes)", record.get("totalRam")),
            ("IP", record.get("ip")),
            ("GPUs", ", ".join(f"{g.get('name')} ({g.get('totalMemory')} B)" for g in gpus if isinstance(g, dict))),
        ]
        extra = record.get("additional")
        if isinstance(extra, dict):
            rows += [(str(k), v) for k, v in extra.items()]
        hardware_html = definition_list(rows) if record else '<p class="muted">no hardware recorded for this node</p>'
        body = "".join(
            f"<tr><td>{esc(name)}</td><td>{esc(series[name]['points'][-1][1] if series[name]['points'] else '')}</td></tr>"
            for name in groups.get(node, [])
        )
        table = (
            f'<table class="grid"><thead><tr><th>series</th><th>last value</th></tr></thead><tbody>{body}</tbody></table>'
            if body
            else '<p class="muted">no series from this node</p>'
        )
        panels.append(
            f'<details class="node" id="{_node_dom_id(node)}" data-node="{esc(node)}" open>'
            f"<summary>{esc(node)} ({len(groups.get(node, []))} series)</summary>"
            f"<h3>Hardware</h3>{hardware_html}<h3>Series</h3>{table}</details>"
        )
    return section(
        "nodes",
        f"Nodes ({len(nodes)})",
        f'<nav class="node-selector" aria-label="nodes">{selector}</nav>' + "".join(panels),
    )


def _primary_node_series(series: dict, name: str):
    """The series ``name`` of the first node in natural order (node 0 of a multi-node run), or None."""
    for node, names in group_series_by_node(series).items():
        if node is not None and f"{node}.{name}" in names:
            return series[f"{node}.{name}"]
    return None


def render_experiment_page(state, experiment_key: str) -> str:
    """The experiment page's HTML (the experiment must exist and be readable by the caller)."""
    store = state.store
    meta = store.experiment_metadata(experiment_key, state.intervals.get("isAliveBeatDurationMillis"))
    row = store.experiment_row(experiment_key)
    # The stored record, not store.system_details(): that read also lists every distinct system
    # metric name, a second pass over all points that the page does not need.
    details = store.system_details_raw(experiment_key)
    tags = store.tags(experiment_key)
    status = experiment_status(meta)
    series = metric_series_downsampled(store, experiment_key, MAX_POINTS_PER_SERIES)
    # A multi-node run names it <node 0>.sys.ram.total: the system details are node 0's.
    ram_total = series.get("sys.ram.total") or _primary_node_series(series, "sys.ram.total")
    if ram_total and ram_total["x"] == "timestamp" and ram_total["points"]:
        details["totalRam"] = int(ram_total["points"][-1][1])
    charts = build_charts(series)
    marks = run_marks(meta, status, _exit_code(store, experiment_key))
    body = (
        _header_section(meta, tags, status, details)
        + _charts_section(charts, marks)
        + _nodes_section(series, node_hardware_records(store, experiment_key))
        + _system_section(details)
        + _gpu_section(details)
        + _packages_section(details)
        + _git_section(row)
        + _output_section(store, experiment_key)
        + _images_section(store, experiment_key)
    )
    workspace, project = meta["workspaceName"], meta["projectName"]
    crumbs = [
        (workspace, "/" + urllib.parse.quote(workspace, safe="")),
        (project, f"/{urllib.parse.quote(workspace, safe='')}/{urllib.parse.quote(project, safe='')}"),
        (meta.get("experimentName") or experiment_key, None),
    ]
    return layout(meta.get("experimentName") or experiment_key, body, crumbs)


async def experiment_page(request: web.Request) -> web.StreamResponse:
    """``GET /{workspace}/{project}/{experiment key}`` (and ``.../archive/{key}``): the experiment page."""
    workspace = request.match_info["workspace"]
    project = request.match_info["project"]
    experiment_key = request.match_info["experiment_key"]
    if workspace in RESERVED_SEGMENTS:
        raise web.HTTPNotFound()
    authorized = await authorize_page(request)
    if isinstance(authorized, web.StreamResponse):
        return authorized
    key_id = authorized
    state = state_of(request)
    meta = None
    if (
        experiment_key.isalnum()
        and len(experiment_key) <= MAX_EXPERIMENT_KEY_LENGTH
        and owns_workspace(state, key_id, workspace)
    ):
        meta = state.store.experiment_metadata(experiment_key, None)
    # The project segment may be a project the experiment is symlinked into: accept any
    # project of the same workspace that exists.
    if meta is None or meta["workspaceName"] != workspace or state.store.project(workspace, project) is None:
        return not_found_page(f"experiment {experiment_key}")
    return html_response(render_experiment_page(state, experiment_key))
