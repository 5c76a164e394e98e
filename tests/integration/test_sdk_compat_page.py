"""docs/comet_ml-compatibility.md: what the official comet_ml 3.58.8 can do against the local server.

``CALLS`` is the list of calls a training or analysis script commonly makes, one line each, on a
live ``comet_ml.Experiment``, an ``APIExperiment`` of the same experiment, and ``comet_ml.API``.
The test makes every call against one LocalServer on 127.0.0.1:0 and records, per call, **works**
or **not supported** with the reason: the exception the call raised, or the error comet_ml logged
(a live Experiment sends in the background: each live call is followed by ``flush()``), or a
read-back that did not find what was written. The page is whatever the calls did, never a list
kept by hand: run with ``COMET_AGENT_WRITE_DOCS=1`` to write it; otherwise the test fails when
the page differs from what the calls do now. No call may take more than ``MAX_CALL_S``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.support.fixtures import sdk_env

comet_ml = pytest.importorskip("comet_ml", reason="the official comet_ml SDK is a test dependency")
from comet_ml.query import Metric  # noqa: E402

pytestmark = pytest.mark.sdk

PAGE = Path(__file__).resolve().parents[2] / "docs" / "comet_ml-compatibility.md"
WRITE_ENV = "COMET_AGENT_WRITE_DOCS"
#: Read at import: the autouse fixture removes every COMET_* variable before each test runs.
WRITE_PAGE = os.environ.get(WRITE_ENV) == "1"
MAX_CALL_S = 2.0
WS, PROJ = "ws", "compat"
PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15"
    b"\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)
#: Logged by comet_ml when a background send or a call failed (a deprecation notice is not).
_FAILURE_WORDS = re.compile(r"fail|error|not found|unable|could not|cannot|404|405|500", re.IGNORECASE)


@dataclass
class Ctx:
    """What the calls share: the SDK objects of the one experiment, and files to log."""

    api: Any
    experiment: Any  # the live comet_ml.Experiment
    tmp: Path
    api_experiment: Any = None  # the same experiment through API (after the live one ended)
    saved: dict = field(default_factory=dict)  # what a call returns, for a later call


@dataclass(frozen=True)
class Call:
    """One row of the page: ``run(ctx)`` makes the call; ``check(ctx, result)`` reads it back."""

    owner: str
    name: str
    run: Callable[[Ctx], Any]
    check: Optional[Callable[[Ctx, Any], bool]] = None
    needs: Optional[str] = None  # an optional module the call needs (absent: "not checked")


def _file(ctx: Ctx, name: str, data: bytes) -> str:
    path = ctx.tmp / name
    path.write_bytes(data)
    return str(path)


def _artifact(ctx: Ctx) -> Any:
    artifact = comet_ml.Artifact("dataset", artifact_type="dataset")
    artifact.add(_file(ctx, "data.csv", b"a,b\n1,2\n"))
    return artifact


def _asset_names(ctx: Ctx) -> set:
    return {a["fileName"] for a in ctx.api_experiment.get_asset_list()}


def _keep(ctx: Ctx, key: str, value: Any) -> Any:
    ctx.saved[key] = value
    return value


E, X, A = "Experiment", "APIExperiment", "API"

# fmt: off
#: Every call on the page, in page order. Adding a call is adding a line.
CALLS: list[Call] = [
    # --- a training script's live Experiment (each followed by flush())
    Call(E, "log_metric", lambda c: c.experiment.log_metric("loss", 0.5, step=1)),
    Call(E, "log_metrics", lambda c: c.experiment.log_metrics({"acc": 0.9, "f1": 0.8}, step=1)),
    Call(E, "log_parameter", lambda c: c.experiment.log_parameter("lr", 0.01)),
    Call(E, "log_parameters", lambda c: c.experiment.log_parameters({"batch": 32, "optimizer": "adam"})),
    Call(E, "log_other", lambda c: c.experiment.log_other("dataset", "cifar10")),
    Call(E, "log_others", lambda c: c.experiment.log_others({"seed": 1})),
    Call(E, "add_tag", lambda c: c.experiment.add_tag("baseline")),
    Call(E, "add_tags", lambda c: c.experiment.add_tags(["resnet", "v2"])),
    Call(E, "set_name", lambda c: c.experiment.set_name("compat-run")),
    Call(E, "set_step / set_epoch", lambda c: (c.experiment.set_step(2), c.experiment.set_epoch(1))),
    Call(E, "log_epoch_end", lambda c: c.experiment.log_epoch_end(1)),
    Call(E, "log_html", lambda c: c.experiment.log_html("<b>report</b>")),
    Call(E, "log_text", lambda c: c.experiment.log_text("a sample", step=1)),
    Call(E, "log_system_info", lambda c: c.experiment.log_system_info("cluster", "a")),
    Call(E, "log_dependency", lambda c: c.experiment.log_dependency("numpy", "1.26")),
    Call(E, "set_model_graph", lambda c: c.experiment.set_model_graph("Linear(4, 2)")),
    Call(E, "log_code", lambda c: c.experiment.log_code(code="print('hi')", code_name="snippet.py")),
    Call(E, "log_asset", lambda c: _keep(c, "asset", c.experiment.log_asset(_file(c, "notes.txt", b"notes")))),
    Call(E, "log_asset returns an asset id and URLs",
         lambda c: c.saved.get("asset") or {}, lambda c, r: bool(r.get("assetId") and r.get("api"))),
    Call(E, "log_asset_data", lambda c: c.experiment.log_asset_data({"k": 1}, name="data.json")),
    Call(E, "log_asset_folder", lambda c: c.experiment.log_asset_folder(str(_folder(c)))),
    Call(E, "log_remote_asset", lambda c: c.experiment.log_remote_asset("https://example.com/data.csv")),
    Call(E, "log_image (a PNG file)", lambda c: c.experiment.log_image(_file(c, "pixel.png", PNG_BYTES), step=1)),
    Call(E, "log_figure (matplotlib)", lambda c: c.experiment.log_figure(figure=_figure()), needs="matplotlib"),
    Call(E, "log_curve", lambda c: c.experiment.log_curve("roc", x=[0, 1], y=[0, 1])),
    Call(E, "log_table (CSV rows)", lambda c: c.experiment.log_table("table.csv", tabular_data=[[1, 2], [3, 4]])),
    Call(E, "log_confusion_matrix", lambda c: c.experiment.log_confusion_matrix(matrix=[[1, 0], [0, 1]])),
    Call(E, "log_histogram_3d", lambda c: c.experiment.log_histogram_3d([1, 2, 2, 3], name="weights", step=1)),
    Call(E, "log_model", lambda c: c.experiment.log_model("classifier", _file(c, "model.pt", b"weights"))),
    Call(E, "register_model", lambda c: c.experiment.register_model("classifier", version="1.0.0")),
    Call(E, "log_artifact", lambda c: c.experiment.log_artifact(_artifact(c))),
    Call(E, "get_artifact", lambda c: c.experiment.get_artifact("dataset")),
    Call(E, "log_remote_model", lambda c: c.experiment.log_remote_model("remote", "https://example.com/model.pt")),
    Call(E, "get_key / get_name / get_metric / get_parameter",
         lambda c: (c.experiment.get_key(), c.experiment.get_name(), c.experiment.get_metric("loss"),
                    c.experiment.get_parameter("lr")),
         lambda c, r: r[0] == c.experiment.id and r[2] == 0.5),
    Call(E, "end", lambda c: c.experiment.end()),
    # --- reading it back (and writing) through APIExperiment
    Call(X, "get_metadata", lambda c: c.api_experiment.get_metadata(),
         lambda c, r: r["endTimeMillis"] is not None and r["experimentName"] == "compat-run"),
    Call(X, "get_metrics", lambda c: c.api_experiment.get_metrics("loss"),
         lambda c, r: [float(p["metricValue"]) for p in r] == [0.5]),
    Call(X, "get_metrics_summary", lambda c: c.api_experiment.get_metrics_summary(),
         lambda c, r: {"loss", "acc", "f1"} <= {s["name"] for s in r}),
    Call(X, "get_parameters_summary", lambda c: c.api_experiment.get_parameters_summary(),
         lambda c, r: {"lr", "batch", "optimizer"} <= {s["name"] for s in r}),
    Call(X, "get_others_summary", lambda c: c.api_experiment.get_others_summary("dataset"),
         lambda c, r: r == ["cifar10"]),
    Call(X, "get_tags", lambda c: c.api_experiment.get_tags(), lambda c, r: {"baseline", "resnet", "v2"} <= set(r)),
    Call(X, "get_html", lambda c: c.api_experiment.get_html(), lambda c, r: "<b>report</b>" in (r or "")),
    Call(X, "get_output", lambda c: c.api_experiment.get_output(), lambda c, r: isinstance(r, str)),
    Call(X, "get_system_details", lambda c: c.api_experiment.get_system_details(),
         lambda c, r: {"key": "cluster", "value": "a"} in r["logAdditionalSystemInfoList"]),
    Call(X, "get_model_graph", lambda c: c.api_experiment.get_model_graph(), lambda c, r: r == "Linear(4, 2)"),
    Call(X, "get_asset_list", lambda c: c.api_experiment.get_asset_list(),
         lambda c, r: {"notes.txt", "data.json"} <= {a["fileName"] for a in r}),
    Call(X, "get_asset (by id)", lambda c: c.api_experiment.get_asset(c.saved["asset"]["assetId"]),
         lambda c, r: r == b"notes"),
    Call(X, "get_asset_by_name", lambda c: c.api_experiment.get_asset_by_name("notes.txt"), lambda c, r: r == b"notes"),
    Call(X, "image in get_asset_list", lambda c: _asset_names(c), lambda c, r: "pixel.png" in r),
    Call(X, "get_model_names", lambda c: c.api_experiment.get_model_names(), lambda c, r: "classifier" in r),
    Call(X, "download_model", lambda c: c.api_experiment.download_model("classifier", str(c.tmp / "model-out")),
         lambda c, r: (c.tmp / "model-out" / "model.pt").read_bytes() == b"weights"),
    Call(X, "log_metric", lambda c: c.api_experiment.log_metric("val_loss", 0.4, step=1)),
    Call(X, "log_parameter / log_other", lambda c: (c.api_experiment.log_parameter("wd", 0.1),
                                                    c.api_experiment.log_other("note", "x"))),
    Call(X, "add_tags / delete_tags", lambda c: (c.api_experiment.add_tags(["tmp"]),
                                                 c.api_experiment.delete_tags(["tmp"]))),
    Call(X, "log_asset", lambda c: c.api_experiment.log_asset(_file(c, "extra.txt", b"extra"))),
    Call(X, "log_image", lambda c: c.api_experiment.log_image(_file(c, "pixel2.png", PNG_BYTES))),
    Call(X, "set_start_time / set_end_time", lambda c: c.api_experiment.set_end_time(int(time.time() * 1000))),
    Call(X, "get_state / set_state", lambda c: (c.api_experiment.set_state("finished"),
                                                c.api_experiment.get_state())[1]),
    Call(X, "register_model", lambda c: c.api_experiment.register_model("classifier", version="1.1.0")),
    Call(X, "to_json(full=True)", lambda c: c.api_experiment.to_json(full=True),
         lambda c, r: r["id"] == c.experiment.id and r["metrics"]),
    Call(X, "url", lambda c: c.api_experiment.url, lambda c, r: r.endswith(f"/{WS}/{PROJ}/{c.experiment.id}")),
    # --- an analysis script's API
    Call(A, "get_default_workspace / get_workspaces", lambda c: c.api.get_workspaces(), lambda c, r: WS in r),
    Call(A, "get_projects / get_project", lambda c: c.api.get_project(WS, PROJ),
         lambda c, r: r["projectName"] == PROJ),
    Call(A, "get_experiments", lambda c: c.api.get_experiments(WS, PROJ),
         lambda c, r: c.experiment.id in [e.id for e in r]),
    Call(A, "get_experiment_by_key / get", lambda c: c.api.get(f"{WS}/{PROJ}/{c.experiment.id}"),
         lambda c, r: r.id == c.experiment.id),
    Call(A, "get_query_variables", lambda c: c.api.get_query_variables(WS, PROJ),
         lambda c, r: "Metric('loss')" in {repr(v) for v in r}),
    Call(A, "query", lambda c: c.api.query(WS, PROJ, Metric("loss") < 1), lambda c, r: len(r) == 1),
    Call(A, "search", lambda c: c.api.search(WS, PROJ, Metric("loss") < 1), lambda c, r: len(r) == 1),
    Call(A, "get_metrics_for_chart", lambda c: c.api.get_metrics_for_chart([c.experiment.id], ["loss"]),
         lambda c, r: c.experiment.id in r),
    Call(A, "create_project", lambda c: c.api.create_project(WS, "compat-scratch")),
    Call(A, "set_project_notes / get_project_notes",
         lambda c: (c.api.set_project_notes(WS, PROJ, "notes"), c.api.get_project_notes(WS, PROJ))[1],
         lambda c, r: r == "notes"),
    Call(A, "delete_project", lambda c: c.api.delete_project(WS, "compat-scratch"),
         lambda c, r: "compat-scratch" not in c.api.get_projects(WS)),
    Call(A, "get_registry_model_names", lambda c: c.api.get_registry_model_names(WS),
         lambda c, r: "classifier" in r),
    Call(A, "get_registry_model_versions", lambda c: c.api.get_registry_model_versions(WS, "classifier"),
         lambda c, r: "1.0.0" in r),
    Call(A, "get_registry_model_details", lambda c: c.api.get_registry_model_details(WS, "classifier"),
         lambda c, r: r["modelName"] == "classifier"),
    Call(A, "download_registry_model",
         lambda c: c.api.download_registry_model(WS, "classifier", "1.0.0", output_path=str(c.tmp / "reg")),
         lambda c, r: (c.tmp / "reg" / "model.pt").read_bytes() == b"weights"),
    Call(A, "get_artifact_list", lambda c: c.api.get_artifact_list(WS), lambda c, r: bool(r.get("artifacts"))),
    Call(A, "archive_experiment", lambda c: c.api.archive_experiment(c.experiment.id)),
    Call(A, "delete_experiment", lambda c: c.api.delete_experiment(c.experiment.id),
         lambda c, r: c.api.get_experiment_by_key(c.experiment.id) is None),
]
# fmt: on


def _folder(ctx: Ctx) -> Path:
    folder = ctx.tmp / "folder"
    folder.mkdir(exist_ok=True)
    (folder / "a.txt").write_bytes(b"a")
    return folder


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure()
    plt.plot([0, 1], [0, 1])
    return figure


class _Collect(logging.Handler):
    """Keeps the comet_ml log records that say something failed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR or _FAILURE_WORDS.search(message):
            self.failures.append(message)


def _scrub(text: str, ctx: Ctx, server: Any) -> str:
    """One line, without what changes from run to run (URL, keys, paths), at most 160 characters."""
    text = text.replace(server.url, "<server>").replace(str(ctx.tmp), "<tmp>").replace(server.api_key, "<key>")
    text = re.sub(r"127\.0\.0\.1:\d+", "<server>", text)
    text = re.sub(re.escape(tempfile.gettempdir()) + r"/[^\s'\",)]*", "<tmp>", text)  # comet_ml's own copies
    text = re.sub(r"\b[0-9a-f]{32,50}\b", "<id>", text)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 160 else text[:157] + "..."


def _outcome(call: Call, ctx: Ctx, server: Any, collect: _Collect) -> tuple[str, str, float]:
    """(result, reason, seconds) of one call."""
    if call.needs and importlib.util.find_spec(call.needs) is None:
        return "not checked", f"needs {call.needs}, which the test extra does not install", 0.0
    collect.failures.clear()
    started = time.monotonic()
    elapsed = 0.0
    try:
        result = call.run(ctx)
        elapsed = time.monotonic() - started  # what the script waits for; flush() is the test's
        if call.owner == E and call.name != "end":
            # Background sends fail (and are logged) here. One flush() may return while the
            # message it handed on is still being sent; the second waits for that one too.
            ctx.experiment.flush()
            ctx.experiment.flush()
    except Exception as exc:  # the page records what the SDK did, whatever it raised
        first = (str(exc).strip().splitlines() or [""])[0]
        elapsed = elapsed or time.monotonic() - started
        return "not supported", _scrub(f"{type(exc).__name__}: {first}", ctx, server), elapsed
    if collect.failures:
        return "not supported", _scrub(f"comet_ml logged: {collect.failures[0]}", ctx, server), elapsed
    if call.check is not None:
        try:
            ok = bool(call.check(ctx, result))
        except Exception as exc:
            ok, detail = False, f" ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
        else:
            detail = ""
        if not ok:
            return "not supported", _scrub(f"no error, but it did not read back{detail}", ctx, server), elapsed
    return "works", "", elapsed


def render_page(rows: list[tuple[Call, str, str]]) -> str:
    """The markdown page for the recorded outcomes."""
    counts = {result: sum(1 for _, r, _ in rows if r == result) for result in ("works", "not supported", "not checked")}
    lines = [
        "# comet_ml compatibility of the local server",
        "",
        "Generated by `tests/integration/test_sdk_compat_page.py` (do not edit by hand): each row is one",
        f"call of the official comet_ml {comet_ml.__version__} against `comet-agent server`, made by the test",
        "on one experiment, and what happened. **works**: no exception, nothing logged as failed, and",
        "the value reads back where the test checks it; **not supported**: the reason is what the SDK",
        "raised or logged. A live `Experiment` sends in the background, so a call that is not supported",
        "there only logs a warning or an error; it never raises into the training script and never hangs",
        "(the test fails if any call takes more than 2 s). comet_ml 3.58.8 has no call for an",
        'experiment\'s notes (only `display(tab="notes")`); project and registry notes are below.',
        "",
        "Regenerate after a server change: `COMET_AGENT_WRITE_DOCS=1 python -m pytest -q "
        "tests/integration/test_sdk_compat_page.py`.",
        "",
        f"Summary: {counts['works']} work, {counts['not supported']} not supported, "
        f"{counts['not checked']} not checked.",
        "",
        "| object | call | result | reason |",
        "|---|---|---|---|",
    ]
    for call, result, reason in rows:
        shown = f"**{result}**" if result == "works" else result
        lines.append(f"| {call.owner} | `{call.name}` | {shown} | {reason} |")
    return "\n".join(lines) + "\n"


@pytest.fixture
def ctx(local_server, monkeypatch, tmp_path):
    with sdk_env(local_server, monkeypatch):
        for name in (
            "COMET_AUTO_LOG_ENV_CPU",
            "COMET_AUTO_LOG_ENV_GPU",
            "COMET_AUTO_LOG_ENV_NETWORK",
            "COMET_AUTO_LOG_ENV_DISK",
            "COMET_AUTO_LOG_GIT_METADATA",
            "COMET_AUTO_LOG_GIT_PATCH",
        ):
            monkeypatch.setenv(name, "false")
        api = comet_ml.API(cache=False)
        experiment = comet_ml.Experiment(workspace=WS, project_name=PROJ)
        yield Ctx(api=api, experiment=experiment, tmp=tmp_path)
        experiment.end()  # a no-op when the "end" row already ended it


def test_the_compatibility_page_is_what_the_calls_do(ctx, local_server):
    collect = _Collect()
    comet_logger = logging.getLogger("comet_ml")
    comet_logger.addHandler(collect)
    rows, slow = [], []
    try:
        for call in CALLS:
            if call.owner != E and ctx.api_experiment is None:
                ctx.api_experiment = ctx.api.get_experiment_by_key(ctx.experiment.id)
            result, reason, seconds = _outcome(call, ctx, local_server, collect)
            rows.append((call, result, reason))
            if seconds > MAX_CALL_S:
                slow.append(f"{call.owner}.{call.name}: {seconds:.1f} s")
    finally:
        comet_logger.removeHandler(collect)
    page = render_page(rows)
    if WRITE_PAGE:
        PAGE.write_text(page, encoding="utf-8")
    assert not slow, f"calls slower than {MAX_CALL_S} s: {slow}"
    assert PAGE.exists() and PAGE.read_text(encoding="utf-8") == page, (
        f"{PAGE.name} differs from what the calls do now; regenerate it: "
        f"{WRITE_ENV}=1 python -m pytest -q tests/integration/test_sdk_compat_page.py"
    )
    # The calls the server is meant to serve: a regression here is a server bug, not a page change.
    works = {(call.owner, call.name) for call, result, _ in rows if result == "works"}
    assert {(E, "log_metric"), (E, "end"), (X, "get_metrics"), (A, "query"), (A, "get_registry_model_names")} <= works


def test_every_call_is_listed_once():
    names = [(call.owner, call.name) for call in CALLS]
    assert len(names) == len(set(names))
    assert [call.owner for call in CALLS] == sorted((call.owner for call in CALLS), key=[E, X, A].index)
