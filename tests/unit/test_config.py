"""Configuration precedence: arguments, key files, environment, COMET_CONFIG, ./.comet.config, ~/.comet.config."""

from __future__ import annotations

import base64
import json
import os

import pytest

from comet_agent.config import DEFAULT_URL_OVERRIDE, ConfigError, read_key_file, resolve_config
from tests.support.fresh_python import run_fresh


def _write_ini(path, **settings):
    lines = ["[comet]"] + [f"{k} = {v}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def places(tmp_path):
    cwd = tmp_path / "cwd"
    home = tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    return cwd, home


def test_values_merge_key_by_key_cwd_beats_home(places):
    cwd, home = places
    _write_ini(cwd / ".comet.config", api_key="KEY_CWD")
    _write_ini(home / ".comet.config", api_key="KEY_HOME", project_name="proj_home")
    config = resolve_config(environ={}, cwd=cwd, home=home)
    assert config.api_key == "KEY_CWD"
    assert config.project_name == "proj_home"
    assert config.api_key_source == f"config file {cwd / '.comet.config'}"
    assert config.source_of("project_name") == f"config file {home / '.comet.config'}"


def test_comet_config_directory_beats_cwd_and_env_beats_files(places, tmp_path):
    cwd, home = places
    named = tmp_path / "named"
    named.mkdir()
    _write_ini(named / ".comet.config", api_key="KEY_NAMED")
    _write_ini(cwd / ".comet.config", api_key="KEY_CWD", workspace="ws_cwd")
    config = resolve_config(environ={"COMET_CONFIG": str(named)}, cwd=cwd, home=home)
    assert (config.api_key, config.workspace) == ("KEY_NAMED", "ws_cwd")
    config = resolve_config(environ={"COMET_CONFIG": str(named), "COMET_API_KEY": "KEY_ENV"}, cwd=cwd, home=home)
    assert config.api_key == "KEY_ENV"
    assert config.api_key_source == "environment variable COMET_API_KEY"


def test_comet_config_may_name_a_file_and_comet_ini_wins(places, tmp_path):
    cwd, home = places
    a = _write_ini(tmp_path / "a.ini", api_key="KEY_A")
    b = _write_ini(tmp_path / "b.ini", api_key="KEY_B")
    assert resolve_config(environ={"COMET_CONFIG": str(a)}, cwd=cwd, home=home).api_key == "KEY_A"
    assert resolve_config(environ={"COMET_CONFIG": str(a), "COMET_INI": str(b)}, cwd=cwd, home=home).api_key == "KEY_B"


def test_argument_beats_everything(places):
    cwd, home = places
    _write_ini(cwd / ".comet.config", api_key="KEY_CWD", url_override="http://file:1/clientlib/")
    config = resolve_config(
        api_key="KEY_ARG",
        url_override="http://arg:2/clientlib/",
        environ={"COMET_API_KEY": "KEY_ENV"},
        cwd=cwd,
        home=home,
    )
    assert (config.api_key, config.url_override) == ("KEY_ARG", "http://arg:2/clientlib/")
    assert config.api_key_source == "the api_key argument"


def test_rest_api_key_is_a_fallback_alias(places):
    cwd, home = places
    assert (
        resolve_config(environ={"COMET_REST_API_KEY": "OLD"}, cwd=cwd, home=home).api_key_source
        == "environment variable COMET_REST_API_KEY"
    )
    both = resolve_config(environ={"COMET_REST_API_KEY": "OLD", "COMET_API_KEY": "NEW"}, cwd=cwd, home=home)
    assert both.api_key == "NEW"


def test_comet_x_sections_map_to_settings(places):
    cwd, home = places
    (home / ".comet.config").write_text(
        "[comet]\nworkspace = w\n[comet_internal]\ncheck_tls_certificate = false\n[comet_timeout]\napi = 30\n"
    )
    config = resolve_config(environ={}, cwd=cwd, home=home)
    assert config.get("timeout_api") == "30"
    assert config.check_tls_certificate is False
    assert config.workspace == "w"


def test_default_server_is_hosted_and_not_configured(places):
    cwd, home = places
    config = resolve_config(environ={"COMET_API_KEY": "K1234567"}, cwd=cwd, home=home)
    assert config.url_override == DEFAULT_URL_OVERRIDE == "https://www.comet.com/clientlib/"
    assert config.server_configured is False
    configured = resolve_config(environ={"COMET_URL_OVERRIDE": "http://127.0.0.1:9/clientlib/"}, cwd=cwd, home=home)
    assert configured.server_configured is True
    assert configured.source_of("url_override") == "environment variable COMET_URL_OVERRIDE"


def test_key_with_base_url_suffix_configures_the_server(places):
    cwd, home = places
    suffix = base64.b64encode(json.dumps({"baseUrl": "https://comet.example.org"}).encode()).decode()
    config = resolve_config(environ={"COMET_API_KEY": "abcd*" + suffix}, cwd=cwd, home=home)
    assert config.url_override == "https://comet.example.org/clientlib/"
    assert config.server_configured is True


def test_missing_key_error_names_every_place(places):
    cwd, home = places
    config = resolve_config(environ={}, cwd=cwd, home=home)
    with pytest.raises(ConfigError) as info:
        config.require_api_key()
    message = str(info.value)
    for place in ("COMET_API_KEY", "COMET_REST_API_KEY", str(cwd / ".comet.config"), str(home / ".comet.config")):
        assert place in message


def test_repr_never_shows_the_key(places):
    cwd, home = places
    config = resolve_config(environ={"COMET_API_KEY": "SUPERSECRETKEY123"}, cwd=cwd, home=home)
    assert "SUPERSECRETKEY123" not in repr(config)
    assert "SUPERSECRETKEY123" not in str(config)
    assert "environment variable COMET_API_KEY" in repr(config)


def test_systemd_credential_then_key_file_then_env(places, tmp_path):
    cwd, home = places
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api-key").write_text("KEY_CRED\n")
    (creds / "api-key").chmod(0o400)
    key_file = tmp_path / "key"
    key_file.write_text("  KEY_FILE  \n")
    key_file.chmod(0o600)
    env = {"CREDENTIALS_DIRECTORY": str(creds), "COMET_API_KEY_FILE": str(key_file), "COMET_API_KEY": "KEY_ENV"}
    config = resolve_config(environ=env, cwd=cwd, home=home)
    assert config.api_key == "KEY_CRED"
    assert config.api_key_source.startswith("systemd credential")
    del env["CREDENTIALS_DIRECTORY"]
    config = resolve_config(environ=env, cwd=cwd, home=home)
    assert config.api_key == "KEY_FILE"
    assert "COMET_API_KEY_FILE" in config.api_key_source
    assert (
        resolve_config(api_key_file=key_file, environ={"COMET_API_KEY": "E"}, cwd=cwd, home=home).api_key == "KEY_FILE"
    )


def test_key_file_readable_by_others_is_refused_without_showing_content(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("VISIBLEKEY999\n")
    key_file.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        read_key_file(key_file)
    assert "chmod 600" in str(info.value)
    assert "VISIBLEKEY999" not in str(info.value)


@pytest.mark.parametrize("content, problem", [("", "empty"), ("two words\n", "whitespace")])
def test_key_file_content_is_checked(tmp_path, content, problem):
    key_file = tmp_path / "key"
    key_file.write_text(content)
    key_file.chmod(0o600)
    with pytest.raises(ConfigError, match=problem):
        read_key_file(key_file)


def test_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read the API key file"):
        resolve_config(api_key_file=tmp_path / "absent", environ={}, cwd=tmp_path, home=tmp_path)


def test_malformed_config_file_is_a_clear_error(places):
    cwd, home = places
    (cwd / ".comet.config").write_text("api_key = no section header\n")
    with pytest.raises(ConfigError, match=str(cwd / ".comet.config")):
        resolve_config(environ={}, cwd=cwd, home=home)


def test_a_config_path_that_cannot_be_opened_is_a_clear_error(places):
    cwd, home = places
    (cwd / ".comet.config").mkdir()  # a directory where the file should be
    with pytest.raises(ConfigError, match=r"Cannot read Comet config file .*IsADirectoryError"):
        resolve_config(environ={}, cwd=cwd, home=home)


def test_without_config_files_configparser_is_never_imported(tmp_path):
    # ~0.3 MB resident that most runs (a key in the environment, no file) never need.
    code = (
        "import sys\n"
        "from comet_agent.config import resolve_config\n"
        f"config = resolve_config(environ={{'COMET_API_KEY': 'K'}}, cwd={str(tmp_path)!r}, home={str(tmp_path)!r})\n"
        "print(config.api_key == 'K', 'configparser' in sys.modules)\n"
    )
    assert run_fresh(code) == ["True False"]


def test_shared_config_file_with_key_warns(places, caplog):
    cwd, home = places
    path = _write_ini(home / ".comet.config", api_key="SHAREDKEY1")
    path.chmod(0o644)
    with caplog.at_level("WARNING"):
        resolve_config(environ={}, cwd=cwd, home=home)
    assert "readable by other users" in caplog.text
    assert "SHAREDKEY1" not in caplog.text


def test_reads_process_environment_by_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMET_API_KEY", "FROMENV123")
    monkeypatch.setenv("COMET_WORKSPACE", "wsenv")
    config = resolve_config()
    assert (config.api_key, config.workspace) == ("FROMENV123", "wsenv")
    assert os.environ["HOME"] != ""


# ------------------------------------------------------------------ the push resolution setting


def test_resolution_is_full_unless_configured(places):
    from comet_agent.config import resolution_setting

    cwd, home = places
    assert resolution_setting(resolve_config(environ={}, cwd=cwd, home=home)) == "full"
    assert resolution_setting(None) == "full"


def test_resolution_from_the_environment_beats_the_config_file(places):
    from comet_agent.config import resolution_setting

    cwd, home = places
    (home / ".comet.config").write_text("[comet_agent]\nresolution = window\n")
    assert resolution_setting(resolve_config(environ={}, cwd=cwd, home=home)) == "window"
    environ = {"COMET_AGENT_RESOLUTION": "FULL"}
    assert resolution_setting(resolve_config(environ=environ, cwd=cwd, home=home)) == "full"


def test_an_unknown_resolution_names_its_source_and_the_choices(places):
    from comet_agent.config import resolution_setting

    cwd, home = places
    config = resolve_config(environ={"COMET_AGENT_RESOLUTION": "max"}, cwd=cwd, home=home)
    with pytest.raises(ConfigError) as raised:
        resolution_setting(config)
    message = str(raised.value)
    assert "'max'" in message and "COMET_AGENT_RESOLUTION" in message and "full" in message and "window" in message
