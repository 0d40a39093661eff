"""How settings travel to the server, its workers and its spend writer: never in the environment."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from passgate.config import SettingsError
from passgate.runtime.handover import (
    WorkerApp,
    hand_over,
    hand_over_text,
    handed_settings,
    secret_free_environ,
    secret_values,
)
from passgate.settings_env import load_settings


def test_settings_handed_over_come_back_equal_secrets_included(tmp_path: Path) -> None:
    settings = load_settings(
        master_key="sk-master-handed",
        mistral_api_key="provider-handed",
        data_dir=tmp_path,
        pricing={"m": {"input_per_million": 1.0}},
        port=4100,
    )
    fd = hand_over(settings)
    assert os.get_inheritable(fd)
    # the file has no name anyone could open
    assert not Path(os.readlink(f"/proc/self/fd/{fd}")).exists()
    handed = handed_settings(fd)
    assert handed.model_dump() == settings.model_dump()
    assert handed.master_key is not None
    assert handed.master_key.get_secret_value() == "sk-master-handed"
    assert handed.upstreams()["mistral"] == (None, "provider-handed")
    with pytest.raises(OSError):
        os.fstat(fd)  # read once, then closed


def test_bad_handed_settings_are_refused_without_quoting_them() -> None:
    fd = hand_over_text('{"master_key": "sk-leak-me", "port": "x"}')
    with pytest.raises(SettingsError) as refused:
        handed_settings(fd)
    assert "sk-leak-me" not in str(refused.value)


def test_a_descriptor_that_is_not_open_is_refused() -> None:
    fd = hand_over_text("{}")
    os.close(fd)
    with pytest.raises(SettingsError, match="cannot read the settings handed over"):
        handed_settings(fd)


def test_the_server_environment_keeps_no_variable_that_sets_a_credential() -> None:
    environ = {
        "PATH": "/usr/bin",
        "MISTRAL_API_KEY": "provider",
        "mistral_api_key": "provider",
        "PASSGATE_MASTER_KEY": "sk-1",
        "LITELLM_MASTER_KEY": "sk-2",
        "DATABASE_URL": "postgresql://u:pw@db/x",
        "REDIS_URL": "redis://:pw@r",
        "PASSGATE_WEBHOOK_URL": "https://hooks/token",
        "PASSGATE_PORT": "4100",
        "MISTRAL_API_BASE": "http://127.0.0.1:9",
    }
    assert secret_free_environ(environ) == {
        "PATH": "/usr/bin",
        "PASSGATE_PORT": "4100",
        "MISTRAL_API_BASE": "http://127.0.0.1:9",
    }


def test_a_variable_the_config_file_names_for_a_key_leaves_the_server_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROD_PROVIDER_KEY", "provider-by-reference")
    monkeypatch.setenv("PROD_MASTER", "sk-master-by-reference")
    config = tmp_path / "passgate.yaml"
    config.write_text(
        "master_key: os.environ/PROD_MASTER\n"
        "providers:\n  mistral: {api_key: os.environ/PROD_PROVIDER_KEY}\n",
        encoding="utf-8",
    )
    settings = load_settings(config, data_dir=tmp_path)
    environ = {
        "PATH": "/usr/bin",
        "PROD_PROVIDER_KEY": "provider-by-reference",
        "PROD_MASTER": "sk-master-by-reference",
        "UNRELATED": "kept",
    }
    assert secret_free_environ(environ, secret_values(settings)) == {
        "PATH": "/usr/bin",
        "UNRELATED": "kept",
    }


def test_a_worker_app_survives_the_pickle_uvicorn_sends_to_a_worker(tmp_path: Path) -> None:
    settings = load_settings(master_key="sk-master-handed", data_dir=tmp_path)
    app = WorkerApp("passgate.runtime.worker:worker_app", settings, "/run/s.sock", tmp_path)
    copy = pickle.loads(pickle.dumps(app))  # noqa: S301 (our own bytes, as uvicorn's pipe)
    assert copy == app
    assert copy.settings.master_key is not None
    assert copy.settings.master_key.get_secret_value() == "sk-master-handed"
