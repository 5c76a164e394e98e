"""Every method of the seed surface exists with comet_ml 3.58.8's parameter names and defaults."""

from __future__ import annotations

import inspect

import pytest

from comet_agent.api import API, APIExperiment

pytestmark = pytest.mark.sdk

EXPERIMENT_METHODS = """add_tags create_symlink display download_model end get_additional_system_info get_asset
get_asset_list get_code get_command get_environment_details get_executable get_git_metadata get_git_patch
get_gpu_static_info get_hostname get_html get_installed_packages get_ip get_max_memory get_metadata get_metrics
get_metrics_summary get_model_data get_model_graph get_model_names get_network_interface_ips get_os get_os_packages
get_os_type get_others_summary get_output get_parameters_summary get_pid get_python_version
get_python_version_verbose get_system_details get_system_metric_names get_tags get_total_memory get_user
log_additional_system_info log_asset log_cpu_metrics log_gpu_metrics log_html log_image log_load_metrics log_metric
log_other log_output log_parameter log_ram_metrics set_code set_command set_end_time set_executable set_git_metadata
set_git_patch set_gpu_static_info set_hostname set_installed_packages set_ip set_model_graph set_name
set_network_interface_ips set_os set_os_packages set_os_type set_pid set_python_version set_python_version_verbose
set_start_time set_user to_json update_status set_os_release set_machine set_processor set_filename""".split()

API_METHODS = [
    "get",
    "get_experiment",
    "get_experiments",
    "get_experiment_by_key",
    "get_workspaces",
    "get_projects",
    "get_account_details",
    "get_default_workspace",
]


def _parameters(function):
    return [(p.name, p.default, p.kind) for p in inspect.signature(function).parameters.values()]


@pytest.fixture(scope="module")
def comet_ml():
    return pytest.importorskip("comet_ml")


@pytest.mark.parametrize("name", EXPERIMENT_METHODS)
def test_experiment_method_matches_comet_ml_signature(comet_ml, name):
    assert _parameters(getattr(APIExperiment, name)) == _parameters(getattr(comet_ml.APIExperiment, name))


@pytest.mark.parametrize("name", API_METHODS)
def test_api_method_matches_comet_ml_signature(comet_ml, name):
    assert _parameters(getattr(API, name)) == _parameters(getattr(comet_ml.API, name))


def test_api_constructor_starts_with_comet_ml_parameters(comet_ml):
    ours = _parameters(API.__init__)
    theirs = _parameters(comet_ml.API.__init__)
    assert ours[: len(theirs)] == theirs
    assert all(kind == inspect.Parameter.KEYWORD_ONLY for _, _, kind in ours[len(theirs) :])


@pytest.mark.parametrize("name", ["url", "name", "key"])
def test_properties_exist(comet_ml, name):
    assert isinstance(getattr(APIExperiment, name), property)
    assert isinstance(getattr(comet_ml.APIExperiment, name), property)
