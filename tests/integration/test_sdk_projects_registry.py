"""Projects, project notes and the model registry, driven by the official comet_ml 3.58.8 SDK
against a LocalServer on 127.0.0.1:0 and read back with it."""

from __future__ import annotations

import zipfile

import pytest

from tests.support.fixtures import sdk_env

comet_ml = pytest.importorskip("comet_ml", reason="the official comet_ml SDK is a test dependency")
from comet_ml.exceptions import CometRestApiException  # noqa: E402

pytestmark = pytest.mark.sdk


@pytest.fixture
def api(local_server, monkeypatch):
    with sdk_env(local_server, monkeypatch, quiet=True):
        yield comet_ml.API(cache=False)


def test_create_list_annotate_rename_and_delete_projects(api):
    comet_ml.APIExperiment(api=api, workspace="ws", project_name="general")  # makes the workspace
    created = api.create_project("ws", "vision", project_description="image models")
    assert created["projectName"] == "vision" and created["projectDescription"] == "image models"
    assert "vision" in api.get_projects("ws")
    found = api.get_project("ws", "vision")
    assert found["projectId"] == created["projectId"] and found["projectDescription"] == "image models"
    with pytest.raises(CometRestApiException, match="already exists"):
        api.create_project("ws", "vision")

    api.set_project_notes("ws", "vision", "# Vision\nresnets only")
    assert api.get_project_notes("ws", "vision") == "# Vision\nresnets only"
    assert api.get_project_notes("ws", "general") == ""

    api.update_project("ws", "vision", new_project_name="vision-2", description="all image models")
    assert api.get_project("ws", "vision-2")["projectDescription"] == "all image models"
    assert "vision-2" in api.get_projects("ws") and "vision" not in api.get_projects("ws")
    assert api.get_project_notes("ws", "vision-2") == "# Vision\nresnets only"

    api.delete_project("ws", "vision-2")
    assert "vision-2" not in api.get_projects("ws")


def test_a_project_with_experiments_is_deleted_only_when_asked(api):
    experiment = comet_ml.APIExperiment(api=api, workspace="ws", project_name="scratch")
    experiment.log_metric("loss", 0.5)
    with pytest.raises(CometRestApiException, match="delete_experiments=True"):
        api.delete_project("ws", "scratch")
    assert api.get_experiment_by_key(experiment.id) is not None
    api.delete_project("ws", "scratch", delete_experiments=True)
    assert "scratch" not in api.get_projects("ws")
    assert api.get_experiment_by_key(experiment.id) is None


def test_log_model_then_register_model_lands_in_the_registry(api, tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights-v1")
    experiment = comet_ml.Experiment(workspace="ws", project_name="models")
    experiment.log_model("classifier", str(weights))
    experiment.register_model("classifier", version="1.0.0", description="first cut")
    experiment.end()

    assert api.get_registry_model_names("ws") == ["classifier"]
    assert api.get_registry_model_versions("ws", "classifier") == ["1.0.0"]
    details = api.get_registry_model_details("ws", "classifier")
    assert details["description"] == "first cut"
    assert details["versions"][0]["experimentModel"]["experimentKey"] == experiment.get_key()

    # A second version through APIExperiment, then downloads of either.
    again = api.get_experiment_by_key(experiment.get_key())
    again.register_model("classifier", version="1.1.0", comment="same weights, new version")
    with pytest.raises(ValueError):
        again.register_model("classifier", version="not-a-version")
    assert api.get_registry_model_versions("ws", "classifier") == ["1.0.0", "1.1.0"]
    assert api.get_model("ws", "classifier") is not None

    api.download_registry_model("ws", "classifier", version="1.0.0", output_path=str(tmp_path / "out"), expand=True)
    assert (tmp_path / "out" / "model.pt").read_bytes() == b"weights-v1"
    (tmp_path / "zips").mkdir()  # comet_ml creates the folder only when it unzips
    api.download_registry_model("ws", "classifier", output_path=str(tmp_path / "zips"), expand=False)
    with zipfile.ZipFile(tmp_path / "zips" / "classifier_latest.zip") as archive:
        assert archive.namelist() == ["model.pt"]

    api.update_registry_model_notes("ws", "classifier", "trained on 10% of the data")
    assert api.get_registry_model_notes("ws", "classifier") == "trained on 10% of the data"


def test_registering_a_model_the_experiment_never_logged_says_so(api):
    experiment = comet_ml.APIExperiment(api=api, workspace="ws", project_name="models")
    with pytest.raises((ValueError, CometRestApiException)):
        experiment.register_model("missing")
    assert api.get_registry_model_names("ws") == []


def test_delete_experiment_removes_it_and_its_files(api, local_server):
    experiment = comet_ml.APIExperiment(api=api, workspace="ws", project_name="scratch")
    experiment.log_asset(__file__)
    files = local_server.data_dir / "files" / experiment.id
    assert files.is_dir()
    api.delete_experiment(experiment.id)
    assert api.get_experiment_by_key(experiment.id) is None
    assert not files.exists()
    assert api.get_experiments("ws", "scratch") == []
