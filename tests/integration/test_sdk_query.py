"""``API.query``, ``API.search``, ``get_query_variables`` and ``get_metrics_for_chart`` of the
official comet_ml 3.58.8 against a LocalServer on 127.0.0.1:0.

Three experiments are written through comet_ml's own ``APIExperiment``; each query must find
exactly the ones its condition holds for (so a server answering every key, or none, fails).
"""

from __future__ import annotations

import datetime
import os

import pytest

from tests.support.fixtures import sdk_env

comet_ml = pytest.importorskip("comet_ml", reason="the official comet_ml SDK is a test dependency")
from comet_ml.query import Environment, Metadata, Metric, Other, Parameter, Tag  # noqa: E402

pytestmark = pytest.mark.sdk

WS, PROJ = "ws", "queries"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(api, {name: APIExperiment}) for three experiments a, b, c in WS/PROJ, written once.

    Module-scoped (written once for every query below), so it isolates itself as the autouse
    per-test fixture does: a temporary HOME and no COMET_* variable from the host.
    """
    from comet_agent.server.app import LocalServer

    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("COMET_") or name.lower().endswith("_proxy"):
                patch.delenv(name)
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        server = LocalServer(tmp_path_factory.mktemp("server"), api_keys=["query-test-key-0123456789"])
        server.start()
        try:
            with sdk_env(server, patch):
                api = comet_ml.API(cache=False)
                runs = {}
                for name, loss, lr, optimizer, tag, host in (
                    ("a", 0.05, 0.3, "adam", "best", "gpu-1"),
                    ("b", 0.2, 0.3, "sgd", "baseline", "gpu-2"),
                    ("c", 0.08, 0.01, "adamw", None, "cpu-1"),
                ):
                    experiment = comet_ml.APIExperiment(api=api, workspace=WS, project_name=PROJ, experiment_name=name)
                    experiment.log_metric("loss", 1.0, step=0)
                    experiment.log_metric("loss", loss, step=1)
                    experiment.log_parameter("lr", lr)
                    experiment.log_other("optimizer", optimizer)
                    experiment.set_hostname(host)
                    if tag:
                        experiment.add_tags([tag])
                    runs[name] = experiment
                yield api, runs
        finally:
            server.stop()


def _param_id(value) -> str:
    """Test ids that are the same in every process (a set's repr follows hash randomisation,
    and pytest-xdist needs every worker to collect the same ids)."""
    return "{" + ",".join(sorted(value)) + "}" if isinstance(value, set) else repr(value)


def _names(experiments, runs) -> set[str]:
    by_key = {experiment.id: name for name, experiment in runs.items()}
    return {by_key[e.id] for e in experiments}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Metric("loss") < 0.1, {"a", "c"}),
        (Metric("loss") >= 0.2, {"b"}),
        (Parameter("lr") == 0.3, {"a", "b"}),
        ((Metric("loss") < 0.1) & (Parameter("lr") >= 0.3), {"a"}),
        (Other("optimizer").startswith("adam"), {"a", "c"}),
        (Other("optimizer").contains("gd"), {"b"}),
        (Other("optimizer") != "sgd", {"a", "c"}),
        (Tag("best"), {"a"}),
        (Environment("hostname").endswith("-2"), {"b"}),
        (Metadata("experiment_name") == "c", {"c"}),
        (Metric("loss").between(0.07, 0.3), {"b", "c"}),
        (Metadata("start_server_timestamp") > datetime.datetime(2020, 1, 1), {"a", "b", "c"}),
        (Metadata("start_server_timestamp") < datetime.datetime(2020, 1, 1), set()),
    ],
    ids=_param_id,
)
def test_query_finds_exactly_the_matching_experiments(project, query, expected):
    api, runs = project
    assert _names(api.query(WS, PROJ, query), runs) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ((Metric("loss") < 0.1) & (Parameter("lr") >= 0.3), {"a"}),
        ((Metric("loss") > 0.1) | Tag("best"), {"a", "b"}),
        (~(Parameter("lr") == 0.3), {"c"}),
    ],
    ids=_param_id,
)
def test_search_finds_exactly_the_matching_experiments(project, query, expected):
    api, runs = project
    assert _names(api.search(WS, PROJ, query), runs) == expected


def test_an_unknown_query_variable_matches_nothing_and_raises_nothing(project):
    api, _ = project
    assert api.query(WS, PROJ, Metric("no-such-metric") > 1) == []


def test_query_variables_list_every_source(project):
    api, _ = project
    variables = {repr(v) for v in api.get_query_variables(WS, PROJ)}
    expected = {"Metric('loss')", "Parameter('lr')", "Other('optimizer')", "Tag('best')", "Tag('baseline')"}
    expected |= {"Environment('hostname')", "Metadata('start_server_timestamp')", "Metadata('duration')"}
    assert expected <= variables


def test_metrics_for_chart_gives_each_experiments_series_and_parameters(project):
    api, runs = project
    keys = [runs["a"].id, runs["b"].id]
    chart = api.get_metrics_for_chart(keys, ["loss"], ["lr"])
    assert set(chart) == set(keys)
    series = chart[runs["b"].id]["metrics"][0]
    assert series["metricName"] == "loss"
    assert series["values"] == [1.0, 0.2]
    assert series["steps"] == [0, 1]
    assert all(d >= 0 for d in series["durations"])
    assert chart[runs["a"].id]["params"] == {"lr": "0.3"}
