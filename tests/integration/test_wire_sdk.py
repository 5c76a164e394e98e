"""Wire conformance: our APIExperiment sends what comet_ml 3.58.8's sends, method by method.

Both clients run against the same RecordingServer on loopback. For every method we compare the
HTTP method, path, query (keys and values), JSON body, multipart part names/filenames/contents
(the git-patch zip compared by its unzipped member) and the headers that matter. Differences are
allowed only where ALLOWED_DIFFERENCES names them, with the reason.
"""

from __future__ import annotations

import io
import warnings
import zipfile

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.api.client import SDK_VERSION_HEADER_VALUE
from tests.support.recording_server import RecordingServer

pytestmark = pytest.mark.sdk

KEY = "a" * 32
API_KEY = "WireTestKey0123456789abcdef"

# (label, method name, args, kwargs). "{dir}" in a str argument is replaced by the files' folder.
CALLS = [
    ("add_tags", "add_tags", (["a", "b"],), {}),
    ("create_symlink", "create_symlink", ("p2",), {}),
    ("log_metric_full", "log_metric", ("m", 1.5), dict(step=3, epoch=1, timestamp=1700000000)),
    ("log_metric_min", "log_metric", ("m", 2), {}),
    ("log_parameter", "log_parameter", ("p", "v"), dict(step=2, timestamp=1700000000)),
    ("log_parameter_min", "log_parameter", ("p", 3), {}),
    ("log_other", "log_other", ("o", 5), dict(timestamp=1700000000)),
    ("log_other_min", "log_other", ("o", "x"), {}),
    ("log_output", "log_output", ("hello\nworld",), dict(context="c", stderr=True, timestamp=1700000000)),
    ("log_html", "log_html", ("<b>",), dict(clear=True, timestamp=1700000000)),
    (
        "log_asset",
        "log_asset",
        ("{dir}/f.txt",),
        dict(step=1, name="n.txt", overwrite=True, context="ctx", ftype="text", metadata={"b": 1, "a": 2}),
    ),
    ("log_asset_min", "log_asset", ("{dir}/f.txt",), {}),
    (
        "log_image",
        "log_image",
        ("{dir}/i.png",),
        dict(image_name="img", step=2, overwrite=False, context="c", metadata={"x": 1}),
    ),
    ("log_image_min", "log_image", ("{dir}/i.png",), {}),
    ("log_cpu_metrics", "log_cpu_metrics", ([1.0, 2.0],), dict(context="c", step=1, epoch=2, timestamp=17)),
    ("log_cpu_metrics_min", "log_cpu_metrics", ([3.5],), {}),
    ("log_ram_metrics", "log_ram_metrics", (100, 50), dict(context="c", step=1, epoch=2, timestamp=17)),
    ("log_load_metrics", "log_load_metrics", (0.5,), dict(context="c", step=1, epoch=2, timestamp=17)),
    (
        "log_gpu_metrics",
        "log_gpu_metrics",
        ([{"gpuId": 0, "freeMemory": 1, "usedMemory": 2, "gpuUtilization": 3, "totalMemory": 3}],),
        {},
    ),
    ("log_additional_system_info", "log_additional_system_info", ("k", "v"), {}),
    ("set_code", "set_code", ("print()",), {}),
    ("set_code_file", "set_code", (), dict(filename="{dir}/f.txt")),
    ("set_command", "set_command", (["a", "b"],), {}),
    ("set_end_time", "set_end_time", (1700000001000,), {}),
    ("set_start_time", "set_start_time", (1700000000000,), {}),
    ("set_executable", "set_executable", ("/usr/bin/python",), {}),
    ("set_git_metadata", "set_git_metadata", ("u", "r", "b", "p", "o"), {}),
    ("set_git_patch_bytes", "set_git_patch", (b"diff --git a b\n+x\n",), {}),
    ("set_git_patch_file", "set_git_patch", ("{dir}/p.patch",), {}),
    (
        "set_gpu_static_info",
        "set_gpu_static_info",
        ([{"gpuIndex": 0, "name": "n", "uuid": "u", "totalMemory": 1, "powerLimit": 2}],),
        {},
    ),
    ("set_hostname", "set_hostname", ("h",), {}),
    ("set_ip", "set_ip", ("1.2.3.4",), {}),
    ("set_os", "set_os", ("Linux-6.1",), {}),
    ("set_os_type", "set_os_type", ("Linux",), {}),
    ("set_pid", "set_pid", (42,), {}),
    ("set_python_version", "set_python_version", ("3.11",), {}),
    ("set_python_version_verbose", "set_python_version_verbose", ("3.11.7 x",), {}),
    ("set_user", "set_user", ("bob",), {}),
    ("set_installed_packages", "set_installed_packages", (["a==1"],), {}),
    ("set_os_packages", "set_os_packages", (["b=2"],), {}),
    ("set_network_interface_ips", "set_network_interface_ips", (["1.1.1.1"],), {}),
    ("set_os_release", "set_os_release", ("6.1",), {}),
    ("set_machine", "set_machine", ("x86_64",), {}),
    ("set_processor", "set_processor", ("",), {}),
    ("set_filename", "set_filename", ("/t.py",), {}),
    ("set_model_graph", "set_model_graph", ("g",), {}),
    ("set_name", "set_name", ("nm",), {}),
    ("update_status", "update_status", (), {}),
    ("get_metadata", "get_metadata", (), {}),
    ("get_metrics_all", "get_metrics", (), {}),
    ("get_metrics_one", "get_metrics", ("m",), {}),
    ("get_metrics_summary", "get_metrics_summary", (), {}),
    ("get_parameters_summary", "get_parameters_summary", (), {}),
    ("get_others_summary", "get_others_summary", (), {}),
    ("get_model_data", "get_model_data", ("m",), {}),
    ("get_model_names", "get_model_names", (), {}),
    ("get_model_graph", "get_model_graph", (), {}),
    ("get_asset", "get_asset", ("aid",), {}),
    ("get_asset_list", "get_asset_list", (), {}),
    ("get_code", "get_code", (), {}),
    ("get_git_patch", "get_git_patch", (), {}),
    ("get_git_metadata", "get_git_metadata", (), {}),
    ("get_tags", "get_tags", (), {}),
    ("get_output", "get_output", (), {}),
    ("get_html", "get_html", (), {}),
    ("get_environment_details", "get_environment_details", (), {}),
    ("download_model", "download_model", ("m",), dict(output_path="{out}")),
    ("to_json", "to_json", (), {}),
    ("to_json_full", "to_json", (), dict(full=True)),
] + [
    (name, name, (), {})
    for name in (
        "get_additional_system_info",
        "get_command",
        "get_executable",
        "get_gpu_static_info",
        "get_hostname",
        "get_installed_packages",
        "get_ip",
        "get_max_memory",
        "get_network_interface_ips",
        "get_os",
        "get_os_packages",
        "get_os_type",
        "get_pid",
        "get_python_version",
        "get_python_version_verbose",
        "get_system_details",
        "get_system_metric_names",
        "get_total_memory",
        "get_user",
    )
]

# label -> (what differs, why). Everything not listed here must be identical.
ALLOWED_DIFFERENCES = {
    "log_asset": (
        "query 'metadata'",
        "comet_ml passes a dict to requests, which sends the dict's key names; "
        "useless to any server. We send metadata only in the multipart part.",
    ),
    "log_image": ("query 'metadata'", "same as log_asset; comet_ml sends no metadata part for images, neither do we."),
    "set_git_patch_bytes": (
        "zip bytes",
        "zip headers carry the creation time; the unzipped git_diff.patch is compared.",
    ),
    "set_git_patch_file": (
        "zip bytes",
        "as for set_git_patch_bytes: the zip timestamps differ, the member is compared.",
    ),
    "construction": (
        "GET /clientlib/isAlive/ver",
        "comet_ml probes the backend version in API(); we send nothing at "
        "construction so the agent can start while the server is down (get_metrics() always uses get-all).",
    ),
    "log_html (no timestamp)": (
        "timestamp value",
        "comet_ml multiplies a ms time by 1000 again (a µs-size number); we send "
        "epoch ms. Not compared: the calls above pass explicit timestamps.",
    ),
    "log_output (no timestamp)": (
        "localTimestamp value",
        "comet_ml uses a monotonic clock; we send epoch ms. Not compared for the same reason.",
    ),
    "get_metrics (old backend)": (
        "no project/column-names fallback",
        "comet_ml falls back for backends older than 3.20.60 "
        "(or when the version probe fails); we always use metrics/get-all.",
    ),
    "system-details getters": (
        "missing field",
        "comet_ml raises KeyError when the server omits a field; we return None.",
    ),
    "writes with an empty reply": ("return value", "comet_ml raises a JSON decode error; we return None."),
    "create without a workspace": (
        "GET account-details",
        "comet_ml's APIExperiment raises ValueError; we create the "
        "experiment in the user's default workspace, where its live Experiment would go.",
    ),
    "headers": (
        "X-COMET-DEBUG-SDK-VERSION",
        f"we identify ourselves as {SDK_VERSION_HEADER_VALUE!r}, not as comet_ml 3.58.8.",
    ),
}

# Calls that are local when the experiment's name is already known (comet_ml sends nothing either).
SENDS_NOTHING = {"to_json"}

# Query keys that differ on purpose per label (see ALLOWED_DIFFERENCES).
_IGNORED_QUERY_KEYS = {"log_asset": {"metadata"}, "log_image": {"metadata"}}


def _resolve(value, files_dir, out_dir):
    if isinstance(value, str):
        return value.replace("{dir}", str(files_dir)).replace("{out}", str(out_dir))
    return value


def _normalise(request, label):
    parts = {}
    for name, part in request.parts.items():
        content = part.content
        if label.startswith("set_git_patch") and name == "file":
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                content = {
                    member.filename: (archive.read(member), member.compress_type) for member in archive.infolist()
                }
        parts[name] = (part.filename, content)
    ignored = _IGNORED_QUERY_KEYS.get(label, set())
    return {
        "method": request.method,
        "path": request.path,
        "query": {k: v for k, v in request.query.items() if k not in ignored},
        "json": request.json,
        "gzip": request.was_gzipped,
        "parts": parts,
        "content_type": (request.header("content-type") or "").split(";")[0]
        if not request.parts
        else "multipart/form-data",
        "json_content_type": request.header("content-type") if request.json is not None else None,
        "authorization": request.header("authorization"),
        "sdk_source": request.header("x-comet-sdk-source"),
        "py_version": request.header("x-comet-debug-py-version"),
    }


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Run every CALL through comet_ml and through ours; return {label: (sdk_requests, our_requests, sdk_result, our_result)}."""
    comet_ml = pytest.importorskip("comet_ml")
    files_dir = tmp_path_factory.mktemp("wire-files")
    (files_dir / "f.txt").write_text("hello asset\n")
    (files_dir / "i.png").write_bytes(b"\x89PNG\r\n\x1a\n fake image")
    (files_dir / "p.patch").write_bytes(b"diff --git a/x b/x\n+from file\n")
    results = {}
    with RecordingServer() as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("wire-home")))
        mp.setenv("COMET_ERROR_TRACKING_ENABLE", "false")
        mp.setenv("COMET_URL_OVERRIDE", server.clientlib_url)
        mp.setenv("COMET_API_KEY", API_KEY)
        mp.chdir(files_dir)
        sdk_exp = comet_ml.API(cache=False).get_experiment_by_key(KEY)
        construction_sdk = list(server.requests)
        server.clear()
        our_exp = API().get_experiment_by_key(KEY)
        construction_ours = list(server.requests)
        server.clear()
        results["construction"] = (construction_sdk, construction_ours, None, None)
        for label, method, args, kwargs in CALLS:
            outcome = []
            for side, exp in (("sdk", sdk_exp), ("ours", our_exp)):
                out_dir = tmp_path_factory.mktemp(f"out-{side}-{label}")
                call_args = [_resolve(a, files_dir, out_dir) for a in args]
                call_kwargs = {k: _resolve(v, files_dir, out_dir) for k, v in kwargs.items()}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)  # get_environment_details
                        result = getattr(exp, method)(*call_args, **call_kwargs)
                except Exception as exc:  # recorded and compared below
                    result = ("raised", type(exc).__name__)
                outcome.append((list(server.requests), result))
                server.clear()
            results[label] = (outcome[0][0], outcome[1][0], outcome[0][1], outcome[1][1])
    return results


@pytest.mark.parametrize("label", [c[0] for c in CALLS])
def test_method_sends_what_comet_ml_sends(recordings, label):
    sdk_requests, our_requests, sdk_result, our_result = recordings[label]
    if label not in SENDS_NOTHING:
        assert sdk_requests, f"comet_ml sent nothing for {label}; the comparison would be empty"
    assert [_normalise(r, label) for r in our_requests] == [_normalise(r, label) for r in sdk_requests]


@pytest.mark.parametrize(
    "label", [c[0] for c in CALLS if not c[0].startswith(("to_json", "download_model", "set_end", "set_start"))]
)
def test_method_returns_what_comet_ml_returns(recordings, label):
    _, _, sdk_result, our_result = recordings[label]
    assert our_result == sdk_result


def test_to_json_returns_same_keys_and_values_except_url_port_independent_fields(recordings):
    for label in ("to_json", "to_json_full"):
        _, _, sdk_result, our_result = recordings[label]
        assert our_result == sdk_result


def test_construction_differs_only_by_the_version_probe(recordings):
    sdk_requests, our_requests, _, _ = recordings["construction"]
    assert [r.path for r in sdk_requests] == ["/clientlib/isAlive/ver"] + ["/api/rest/v2/experiment/metadata"] * 2
    assert [_normalise(r, "construction") for r in our_requests] == [
        _normalise(r, "construction") for r in sdk_requests[1:]
    ]


def test_our_requests_identify_comet_agent_and_carry_the_raw_key(recordings):
    _, our_requests, _, _ = recordings["add_tags"]
    (request,) = our_requests
    assert request.header("x-comet-debug-sdk-version") == SDK_VERSION_HEADER_VALUE
    assert request.header("authorization") == API_KEY
    assert request.header("content-type") == "application/json;charset=utf-8"


def test_every_allowed_difference_has_a_reason():
    for label, (what, why) in ALLOWED_DIFFERENCES.items():
        assert what and len(why) > 20, label


# -- API navigation and experiment creation --------------------------------------------------------

NAVIGATION = [
    ("get_workspaces", lambda api: api.get()),
    ("get_projects", lambda api: api.get("ws")),
    ("get_experiments", lambda api: [e.id for e in api.get("ws/proj")]),
    (
        "get_experiments_paged",
        lambda api: [
            e.id for e in api.get_experiments("ws", "proj", page=2, page_size=10, sort_by="endTime", sort_order="desc")
        ],
    ),
    ("get_experiments_pattern", lambda api: [e.id for e in api.get_experiments("ws", "proj", pattern="k+")]),
    ("get_experiments_workspace", lambda api: [e.id for e in api.get_experiments("ws")]),
    ("get_experiment", lambda api: api.get("ws/proj/" + KEY).id),
    ("get_experiment_by_name_after_404", lambda api: api.get_experiment("ws", "proj", "recorded-name").id),
    ("get_experiment_by_key_404", lambda api: api.get_experiment_by_key("missing" + "0" * 25)),
]


@pytest.fixture(scope="module")
def navigation_recordings(tmp_path_factory):
    comet_ml = pytest.importorskip("comet_ml")
    results = {}
    with RecordingServer() as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("nav-home")))
        mp.setenv("COMET_ERROR_TRACKING_ENABLE", "false")
        mp.setenv("COMET_URL_OVERRIDE", server.clientlib_url)
        mp.setenv("COMET_API_KEY", API_KEY)
        apis = {"sdk": comet_ml.API(cache=False), "ours": API()}
        for label, call in NAVIGATION:
            outcome = {}
            for side, api in apis.items():
                server.clear()
                if label.endswith("404"):
                    server.fail_next(1, 404, path="/api/rest/v2/experiment/metadata")
                if label == "get_experiment_by_name_after_404":
                    server.fail_next(1, 404, path="/api/rest/v2/experiment/metadata")
                outcome[side] = (call(api), list(server.requests))
            results[label] = outcome
        for side, make in (
            (
                "sdk",
                lambda: comet_ml.APIExperiment(workspace="ws", project_name="proj", experiment_name="n", cache=False),
            ),
            ("ours", lambda: APIExperiment(workspace="ws", project_name="proj", experiment_name="n")),
        ):
            server.clear()
            created = make()
            results.setdefault("create", {})[side] = (
                created.id,
                [r for r in server.requests if r.path != "/clientlib/isAlive/ver"],
            )
    return results


@pytest.mark.parametrize("label", [n[0] for n in NAVIGATION] + ["create"])
def test_api_navigation_sends_and_returns_what_comet_ml_does(navigation_recordings, label):
    sdk_result, sdk_requests = navigation_recordings[label]["sdk"]
    our_result, our_requests = navigation_recordings[label]["ours"]
    assert sdk_requests
    assert [_normalise(r, label) for r in our_requests] == [_normalise(r, label) for r in sdk_requests]
    assert our_result == sdk_result
