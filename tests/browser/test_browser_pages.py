"""Experiment and index pages in headless Chromium: every section present, every chart drawn
with data, hostile values shown as text and never run. Skips visibly without Chromium."""

from __future__ import annotations

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.api.page_login import page_url
from tests.browser.pages_support import (
    HOSTILE,
    check_experiment_page,
    dump_dom,
    fill_experiment,
    read_dom,
    require_chromium,
)


def _filled(server, hostile: bool):
    require_chromium()
    api = API(api_key=server.api_key, url_override=server.clientlib_url)
    name = "browser <b>check</b>" if hostile else "resnet-50 on gpu-box-3"
    experiment = APIExperiment(api=api, workspace="pages-ws", project_name="pages-proj", experiment_name=name)
    info = fill_experiment(experiment, hostile=hostile)
    return api, experiment, info


@pytest.fixture
def filled(local_server):
    """(server, experiment, fill info): one experiment written through our client, hostile values included."""
    api, experiment, info = _filled(local_server, hostile=True)
    yield local_server, experiment, info
    api.close()


@pytest.fixture
def clean(local_server):
    """(server, experiment, fill info) without hostile values (the README screenshot)."""
    api, experiment, info = _filled(local_server, hostile=False)
    yield local_server, experiment, info
    api.close()


def test_experiment_page_renders_every_section_and_chart(clean, tmp_path):
    server, experiment, info = clean
    check = check_experiment_page(server, experiment.id, tmp_path)

    assert check.missing_sections == [], check.sections
    assert check.charts, "no chart on the page"
    assert check.empty_charts == [], {k: check.charts[k] for k in check.empty_charts}
    assert check.charts_rendered_attr == str(len(check.charts))
    ids = check.chart_ids()
    for expected in (
        "cpu",
        "ram",
        "load",
        "gpu-utilization",
        "gpu-memory",
        "gpu-temperature",
        "gpu-power",
        "network",
        "disk-io",
        "proc-memory",
    ):
        assert expected in ids, f"chart {expected} missing; have {sorted(ids)}"
    for user_metric in info["user_metrics"]:
        assert f"user:{user_metric}" in ids
    rendered_series = {name for chart in check.charts.values() for name in chart["series"]}
    assert set(info["metric_names"]) <= rendered_series
    assert check.screenshot.stat().st_size > 10_000


def test_hostile_values_show_as_text_and_never_run(filled, tmp_path):
    server, experiment, _ = filled
    check = check_experiment_page(server, experiment.id, tmp_path)

    assert not check.pwned, "a hostile value ran as script"
    assert check.foreign_scripts == [] and check.images == [] and check.event_handler_attrs == []
    # Shown as text in: packages, command, GPU name, tags, output, git branch, patch, metric legend.
    assert check.text.count(HOSTILE) >= 8, check.text.count(HOSTILE)
    assert "browser <b>check</b>" in check.text


def test_index_pages_list_the_experiment(filled, tmp_path):
    server, experiment, _ = filled
    profile = tmp_path / "profile"
    root = read_dom(dump_dom(page_url(server.url, server.api_key, "/"), profile))
    assert "workspaces" in root.sections
    project_dom = dump_dom(page_url(server.url, server.api_key, "/pages-ws/pages-proj"), profile)
    assert experiment.id in project_dom
    assert 'data-status="running"' in project_dom
    assert "pages-ws" in "".join(root.text_parts)
