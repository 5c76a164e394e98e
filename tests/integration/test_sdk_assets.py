"""The official comet_ml 3.58.8 SDK's images, assets, remote assets and artifacts against the local server.

Each test drives the live ``comet_ml.Experiment`` (what training code uses) at a real
LocalServer on 127.0.0.1:0, then reads the result back through comet_ml's own ``API`` /
``APIExperiment`` (``cache=False``). The server writes an access log; tests read it to prove
that an upload went out once and was answered 200, i.e. comet_ml had no failed upload to retry
(it retries any non-200 upload four times over ~19 s, which is what made ``end()`` hang).
"""

from __future__ import annotations

import os
import stat
import sys

import pytest
import requests

from comet_agent.server.app import LocalServer
from tests.e2e.agent_support import experiment_key_from, run_agent
from tests.support.fixtures import QUIET_EXPERIMENT_OPTIONS, sdk_env

comet_ml = pytest.importorskip("comet_ml", reason="the official comet_ml SDK is a test dependency")

pytestmark = pytest.mark.sdk

PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15"
    b"\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A LocalServer writing its access log to ``server.access_log``, with the SDK pointed at it."""

    with LocalServer(
        tmp_path / "server-data", api_keys=["test-key-assets-0123456789"], access_log=str(tmp_path / "access.log")
    ) as running:
        with sdk_env(running, monkeypatch):
            yield running


def live_experiment(**kwargs):
    """A live comet_ml.Experiment in ws/assets with every automatic logger off (only what the test logs)."""
    options = {"workspace": "ws", "project_name": "assets", "log_env_details": False, **QUIET_EXPERIMENT_OPTIONS}
    options.update(kwargs)
    return comet_ml.Experiment(**options)


def read_back(experiment_key: str):
    return comet_ml.API(cache=False).get_experiment_by_key(experiment_key)


def access_lines(server, fragment: str) -> list[str]:
    """The access-log lines whose request line contains ``fragment``."""
    with open(server.access_log, encoding="utf-8") as log:
        return [line for line in log if fragment in line.split('"')[1]]


def status_of(line: str) -> int:
    return int(line.split('"')[2].split()[0])


def auth(server) -> dict:
    return {"Authorization": server.api_key}


# ------------------------------------------------------------------ 1. images and figures


def test_log_image_is_stored_under_its_id_listed_as_an_image_and_fetchable(server, tmp_path):
    image_path = tmp_path / "sample.png"
    image_path.write_bytes(PNG_BYTES)
    experiment = live_experiment()
    returned = experiment.log_image(str(image_path), name="sample", step=7)
    experiment.end()

    uploads = access_lines(server, "/clientlib/visualizations/upload")
    assert [status_of(line) for line in uploads] == [200]  # one try, accepted: nothing to retry at end()
    image_id = returned["imageId"]
    assert returned["api"] == (
        f"{server.url}/api/rest/v2/image/get-image?imageId={image_id}&experimentKey={experiment.get_key()}"
    )
    assert returned["web"].startswith(server.url + "/local/asset/view?")

    logged = read_back(experiment.get_key())
    images = logged.get_asset_list(asset_type="image")
    assert [(i["assetId"], i["fileName"], i["step"], i["image"], i["type"]) for i in images] == [
        (image_id, "sample", 7, True, "image")
    ]
    assert logged.get_asset(image_id) == PNG_BYTES
    assert requests.get(returned["api"], headers=auth(server), timeout=10).content == PNG_BYTES
    assert logged.get_asset_list(asset_type="asset") == []


def test_log_figure_is_stored_as_an_image(server):
    pyplot = pytest.importorskip("matplotlib.pyplot", reason="log_figure needs matplotlib, not installed here")
    figure = pyplot.figure()
    pyplot.plot([1, 2, 3])
    experiment = live_experiment()
    returned = experiment.log_figure(figure_name="curve", figure=figure, step=1)
    experiment.end()
    images = read_back(experiment.get_key()).get_asset_list(asset_type="image")
    assert [(i["assetId"], i["fileName"]) for i in images] == [(returned["imageId"], "curve")]


def test_images_show_as_thumbnails_on_the_experiment_page(server, tmp_path):
    image_path = tmp_path / "pic.png"
    image_path.write_bytes(PNG_BYTES)
    experiment = live_experiment()
    returned = experiment.log_image(str(image_path), name="pic", step=3)
    experiment.log_asset_data("<script>alert(1)</script>", name="evil.html")
    experiment.end()
    key = experiment.get_key()

    page = requests.get(f"{server.url}/ws/assets/{key}", headers=auth(server), timeout=10)
    assert page.status_code == 200
    assert 'data-section="images"' in page.text
    view = f"/local/asset/view?imageId={returned['imageId']}&amp;experimentKey={key}"
    assert f'<img src="{view}"' in page.text and 'alt="pic (step 3)"' in page.text

    shown = requests.get(returned["web"], headers=auth(server), timeout=10)
    assert shown.status_code == 200 and shown.headers["Content-Type"] == "image/png"
    assert shown.content == PNG_BYTES
    # An uploaded HTML file is never rendered in the server's origin: a sandboxed download.
    html_asset = read_back(key).get_asset_list(asset_type="all")
    html_id = next(a["assetId"] for a in html_asset if a["fileName"] == "evil.html")
    download = requests.get(
        f"{server.url}/local/asset/view", params={"assetId": html_id, "experimentKey": key}, headers=auth(server)
    )
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in download.headers["Content-Security-Policy"]
    # Without the key (no session either), nothing is shown.
    anonymous = requests.get(returned["web"], timeout=10, allow_redirects=False)
    assert anonymous.status_code == 401 and PNG_BYTES not in anonymous.content


def test_an_image_over_the_server_limit_is_refused_before_it_is_sent(tmp_path, monkeypatch):
    """The handshake announces the upload limit, so comet_ml refuses a too-large file itself
    instead of sending it, failing with 413 and retrying for ~19 s at end()."""

    with LocalServer(
        tmp_path / "data",
        api_keys=["test-key-limit-0123456789"],
        max_upload_bytes=2**20,
        access_log=str(tmp_path / "log"),
    ) as small:
        with sdk_env(small, monkeypatch):
            big = tmp_path / "big.png"
            big.write_bytes(PNG_BYTES + b"\x00" * (2 * 2**20))
            experiment = live_experiment()
            experiment.log_image(str(big), name="big")
            experiment.end()
            assert access_lines(small, "visualizations/upload") == []
            assert read_back(experiment.get_key()).get_asset_list(asset_type="image") == []


# ------------------------------------------------------------------------ 3. assets


def test_the_asset_id_log_asset_returns_is_readable_and_its_urls_point_at_the_server(server, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("epoch 1: fine\n")
    experiment = live_experiment()
    returned = experiment.log_asset(str(path), step=2)
    experiment.end()
    key = experiment.get_key()

    asset_id = returned["assetId"]
    assert (
        returned["api"] == f"{server.url}/api/rest/v2/experiment/asset/get-asset?assetId={asset_id}&experimentKey={key}"
    )
    assert returned["web"] == f"{server.url}/local/asset/view?assetId={asset_id}&experimentKey={key}"
    logged = read_back(key)
    assert [(a["assetId"], a["fileName"], a["step"], a["remote"]) for a in logged.get_asset_list()] == [
        (asset_id, "notes.txt", 2, False)
    ]
    assert logged.get_asset(asset_id) == b"epoch 1: fine\n"
    assert requests.get(returned["api"], headers=auth(server), timeout=10).content == b"epoch 1: fine\n"
    assert requests.get(returned["web"], headers=auth(server), timeout=10).content == b"epoch 1: fine\n"


def test_the_other_kinds_of_asset_are_stored_with_their_type(server, tmp_path):
    (tmp_path / "sound.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    (tmp_path / "weights.bin").write_bytes(b"weights")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.txt").write_text("a")
    experiment = live_experiment()
    experiment.log_audio(str(tmp_path / "sound.wav"))
    experiment.log_video(str(tmp_path / "clip.mp4"))
    experiment.log_curve("roc", [0, 1], [0, 1])
    experiment.log_table("table.csv", tabular_data=[[1, 2]], headers=["a", "b"])
    experiment.log_confusion_matrix(matrix=[[1, 0], [0, 1]])
    experiment.log_model("resnet", str(tmp_path / "weights.bin"))
    experiment.log_asset_folder(str(tmp_path / "folder"))
    experiment.end()
    assert [status_of(line) for line in access_lines(server, "/clientlib/asset/upload")] == [200] * 7
    listed = {(a["type"], a["fileName"]) for a in read_back(experiment.get_key()).get_asset_list()}
    assert listed == {
        ("audio", "sound.wav"),
        ("video", "clip.mp4"),
        ("curve", "roc"),
        ("asset", "table.csv"),
        ("confusion-matrix", "confusion-matrix.json"),
        ("model-element", "weights.bin"),
        ("asset", "a.txt"),
    }


def test_an_upload_sent_again_with_its_id_replaces_the_first(server):
    """comet_ml resends an upload with the same assetId when an answer was lost: one asset, not two."""
    api = comet_ml.API(cache=False)
    experiment = comet_ml.APIExperiment(api=api, workspace="ws", project_name="assets")
    for content in (b"first", b"second"):
        response = requests.post(
            f"{server.url}/clientlib/asset/upload",
            params={"experimentId": experiment.id, "assetId": "a" * 32, "fileName": "w.bin"},
            files={"file": ("file", content)},
            headers=auth(server),
            timeout=10,
        )
        assert response.status_code == 200, response.text
    assert [a["assetId"] for a in experiment.get_asset_list()] == ["a" * 32]
    assert experiment.get_asset("a" * 32) == b"second"

    other = comet_ml.APIExperiment(api=api, workspace="ws", project_name="assets")
    taken = requests.post(
        f"{server.url}/clientlib/asset/upload",
        params={"experimentId": other.id, "assetId": "a" * 32, "fileName": "w.bin"},
        files={"file": ("file", b"x")},
        headers=auth(server),
        timeout=10,
    )
    assert taken.status_code == 400 and "another experiment" in taken.json()["msg"]


def test_a_chosen_asset_id_cannot_choose_where_the_file_is_written(server):
    api = comet_ml.API(cache=False)
    experiment = comet_ml.APIExperiment(api=api, workspace="ws", project_name="assets")
    for path, field in (("/clientlib/asset/upload", "assetId"), ("/clientlib/visualizations/upload", "imageId")):
        for chosen in ("../../escape", "a/b", "..", "x" * 65):
            refused = requests.post(
                server.url + path,
                params={"experimentId": experiment.id, field: chosen},
                files={"file": ("file", b"payload")},
                headers=auth(server),
                timeout=10,
            )
            assert refused.status_code == 400, (path, chosen)
    assert experiment.get_asset_list() == []
    assert not (server.data_dir.parent / "escape").exists()


def test_log_remote_asset_is_recorded_and_listed(server):
    experiment = live_experiment()
    returned = experiment.log_remote_asset("https://data.example/train/shard-0.tar", remote_file_name="shard-0.tar")
    experiment.end()
    assert [status_of(line) for line in access_lines(server, "/clientlib/asset/upload")] == [200]

    logged = read_back(experiment.get_key())
    assets = logged.get_asset_list()
    assert [(a["assetId"], a["fileName"], a["remote"], a["link"]) for a in assets] == [
        (returned["assetId"], "shard-0.tar", True, "https://data.example/train/shard-0.tar")
    ]
    with pytest.raises(Exception) as raised:  # a remote asset has no bytes on the server
        logged.get_asset(returned["assetId"])
    assert "remote asset" in str(raised.value)


# ---------------------------------------------------------------------- 2. artifacts


def make_artifact(tmp_path, name: str = "dataset-a", **kwargs):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "train.csv").write_text("x,y\n1,2\n")
    (data / "labels.txt").write_text("cat\ndog\n")
    artifact = comet_ml.Artifact(name, "dataset", metadata={"rows": 1}, **kwargs)
    artifact.add(str(data / "train.csv"))
    artifact.add(str(data / "labels.txt"), logical_path="meta/labels.txt")
    artifact.add_remote("https://data.example/big.bin", sync_mode=False)
    return artifact


def test_log_artifact_then_get_artifact_and_download_in_another_experiment(server, tmp_path):
    producer = live_experiment()
    logged = producer.log_artifact(make_artifact(tmp_path))
    assert (logged.name, logged.workspace, str(logged.version)) == ("dataset-a", "ws", "1.0.0")
    producer.end()
    assert [status_of(line) for line in access_lines(server, "write/artifacts/state")] == [200]

    consumer = live_experiment()
    fetched = consumer.get_artifact("dataset-a")
    assert str(fetched.version) == "1.0.0" and fetched.metadata == {"rows": 1}
    assert fetched.source_experiment_key == producer.get_key()
    assert fetched.size == len("x,y\n1,2\n") + len("cat\ndog\n")
    by_path = {a.logical_path: a for a in fetched.assets}
    assert set(by_path) == {"train.csv", "meta/labels.txt", "big.bin"}
    assert by_path["big.bin"].remote and by_path["big.bin"].link == "https://data.example/big.bin"
    target = tmp_path / "downloaded"
    fetched.download(str(target))
    consumer.end()
    assert (target / "train.csv").read_text() == "x,y\n1,2\n"
    assert (target / "meta" / "labels.txt").read_text() == "cat\ndog\n"
    assert not (target / "big.bin").exists()  # a remote file is listed, not downloaded

    stored = list((server.data_dir / "artifacts").rglob("*"))
    files = [p for p in stored if p.is_file()]
    assert len(files) == 2 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


def test_each_log_artifact_makes_the_next_version_and_names_resolve(server, tmp_path):
    first = live_experiment()
    first.log_artifact(make_artifact(tmp_path))
    first.end()
    second = live_experiment()
    logged = second.log_artifact(make_artifact(tmp_path, aliases=["best"]))
    second.end()
    assert str(logged.version) == "2.0.0"

    api = comet_ml.API(cache=False)
    assert str(api.get_artifact("ws", "dataset-a").version) == "2.0.0"  # latest
    assert str(api.get_artifact("ws", "dataset-a", version="1.0.0").version) == "1.0.0"
    assert str(api.get_artifact("ws", "dataset-a", alias="best").version) == "2.0.0"
    details = api.get_artifact_details("ws", "dataset-a")
    assert details["latestVersion"] == "2.0.0" and [v["version"] for v in details["versions"]] == ["1.0.0", "2.0.0"]
    assert [a["name"] for a in api.get_artifact_list("ws")["artifacts"]] == ["dataset-a"]

    first_version = api.get_artifact("ws", "dataset-a", version="1.0.0")
    first_version.update_aliases(["production"])
    first_version.update_version_tags(["checked"])
    first_version.update_artifact_tags(["images"])
    relabelled = api.get_artifact("ws", "dataset-a", alias="production")
    assert str(relabelled.version) == "1.0.0" and relabelled.version_tags == {"checked"}
    assert relabelled.artifact_tags == {"images"}


def test_an_unknown_artifact_is_comet_mls_artifact_not_found(server):
    from comet_ml.exceptions import ArtifactNotFound

    experiment = live_experiment()
    try:
        with pytest.raises(ArtifactNotFound):
            experiment.get_artifact("no-such-artifact")
    finally:
        experiment.end()


# ------------------------------------------------------ endpoints the server does not serve


def test_an_unserved_comet_endpoint_answers_a_clear_json_error_and_training_carries_on(server, tmp_path):
    experiment = live_experiment()
    experiment.log_remote_model("remote-model", "https://models.example/m.pt")  # not served: a warning
    experiment.log_metric("loss", 0.5, step=1)
    experiment.end()
    unserved = access_lines(server, "/clientlib/asset/log-remote-model")
    assert [status_of(line) for line in unserved] == [404]
    body = requests.post(f"{server.url}/clientlib/asset/log-remote-model", headers=auth(server), timeout=10).json()
    assert body["code"] == 404 and "does not support POST /clientlib/asset/log-remote-model" in body["msg"]
    assert [p["metricValue"] for p in read_back(experiment.get_key()).get_metrics("loss")] == ["0.5"]


# ------------------------------------------------------------------------ 8. access log


def test_the_access_log_has_a_line_per_request_and_never_the_key(server):
    key = server.api_key
    requests.get(f"{server.url}/api/rest/v2/workspaces", headers=auth(server), timeout=10)
    requests.get(f"{server.url}/api/rest/v2/workspaces", params={"apiKey": key, "x": "1"}, timeout=10)
    requests.get(f"{server.url}/api/rest/v2/no/such/thing", headers=auth(server), timeout=10)
    server.stop()  # a line is written just after its answer went out: stopping waits for the last one
    with open(server.access_log, encoding="utf-8") as log:
        lines = log.read().splitlines()
    assert key not in "\n".join(lines)
    workspaces = [line for line in lines if "/api/rest/v2/workspaces" in line]
    assert len(workspaces) == 2
    time_stamp, client, *_ = workspaces[0].split(" ")
    assert time_stamp.endswith("Z") and client == "127.0.0.1"
    request_line, rest = workspaces[0].split('"')[1:3]
    assert request_line == "GET /api/rest/v2/workspaces"
    status, size, duration = rest.split()
    assert status == "200" and int(size) > 0 and duration.endswith("ms")
    assert '"GET /api/rest/v2/workspaces?apiKey=********&x=1" 401' in workspaces[1]
    assert any('"GET /api/rest/v2/no/such/thing" 404' in line for line in lines)
    assert stat.S_IMODE(os.stat(server.access_log).st_mode) == 0o600


# ------------------------------------------------------------- as a user runs it: the real CLI

TRAINING_SCRIPT = """
import comet_ml, pathlib, sys
out = pathlib.Path(sys.argv[1])
(out / "sample.png").write_bytes(bytes.fromhex(sys.argv[2]))
(out / "weights.txt").write_text("w=1")
experiment = comet_ml.start()
image = experiment.log_image(str(out / "sample.png"), name="sample", step=1)
artifact = comet_ml.Artifact("model-weights", "model")
artifact.add(str(out / "weights.txt"))
experiment.log_artifact(artifact)
experiment.end()
print("image", image["imageId"])
"""


@pytest.mark.e2e
def test_a_script_under_comet_agent_run_logs_images_and_artifacts(tmp_path, monkeypatch):
    """What a user does: `comet-agent run -- python train.py` with only the server's URL and key set;
    the script's images and artifact read back through comet_ml."""

    script = tmp_path / "train.py"
    script.write_text(TRAINING_SCRIPT)
    (tmp_path / "home").mkdir()
    with LocalServer(tmp_path / "server-data", api_keys=["test-key-run-0123456789"]) as running:
        result = run_agent(
            running,
            tmp_path / "agent-data",
            "run",
            "--",
            sys.executable,
            str(script),
            str(tmp_path),
            PNG_BYTES.hex(),
            HOME=str(tmp_path / "home"),
            timeout_s=120,
        )
        assert result.returncode == 0, result.stderr.decode()
        image_id = result.stdout.decode().split("image ")[-1].split()[0]
        with sdk_env(running, monkeypatch):
            api = comet_ml.API(cache=False)
            experiment_key = experiment_key_from(result.stderr.decode())
            images = api.get_experiment_by_key(experiment_key).get_asset_list(asset_type="image")
            assert [i["assetId"] for i in images] == [image_id]
            workspace = api.get_default_workspace()
            artifact = api.get_artifact(workspace, "model-weights")
            assert artifact.source_experiment_key == experiment_key
            artifact.download(str(tmp_path / "fetched"))
            assert (tmp_path / "fetched" / "weights.txt").read_text() == "w=1"
