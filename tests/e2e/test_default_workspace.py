"""The first command of a hosted-Comet user: only COMET_API_KEY and COMET_URL_OVERRIDE, no workspace
anywhere, ``comet-agent run -- CMD`` without ``--workspace`` or ``--project``."""

from __future__ import annotations

import sys

import pytest

from comet_agent.api import API, APIExperiment
from tests.e2e.agent_support import experiment_key_from, run_agent

pytestmark = pytest.mark.e2e


def test_run_without_any_workspace_creates_the_experiment_in_the_default_one(local_server, tmp_path):
    # agent_env passes on only COMET_API_KEY and COMET_URL_OVERRIDE (plus the data directory); HOME
    # is an empty directory (tests/conftest.py), so no ~/.comet.config names a workspace either.
    result = run_agent(
        local_server, tmp_path / "data", "run", "--", sys.executable, "-c", "print('trained')", HOME=str(tmp_path)
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert result.stdout == b"trained\n"
    api = API(api_key=local_server.api_key, url_override=local_server.clientlib_url)
    workspace = api.get_account_details()["defaultWorkspaceName"]
    experiment = APIExperiment(api=api, previous_experiment=experiment_key_from(stderr))
    assert (experiment.workspace, experiment.project_name) == (workspace, "general")
    assert f"{local_server.url}/{workspace}/general/{experiment.id}" in stderr, "the printed URL opens it"
