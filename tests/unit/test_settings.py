from pathlib import Path

import pytest

from comfy_worker.settings import Settings


def test_defaults():
    settings = Settings.from_env({})
    assert settings.comfy_host == "127.0.0.1:8188"
    assert settings.comfy_http_url == "http://127.0.0.1:8188"
    assert settings.output_dir == Path("/comfyui/output")
    assert settings.ready_poll_interval_s == 0.1


def test_reads_each_variable():
    settings = Settings.from_env(
        {
            "COMFY_HOST": "localhost:9000",
            "COMFYUI_PATH": "/srv/comfy",
            "COMFY_PID_FILE": "/run/c.pid",
            "COMFY_READY_POLL_INTERVAL_S": "0.5",
            "COMFY_READY_TIMEOUT_S": "30",
        }
    )
    assert (settings.comfy_host, settings.input_dir, settings.comfy_pid_file) == (
        "localhost:9000",
        Path("/srv/comfy/input"),
        Path("/run/c.pid"),
    )
    assert (settings.ready_poll_interval_s, settings.ready_timeout_s) == (0.5, 30.0)


@pytest.mark.parametrize(
    "name, value",
    [
        ("COMFY_HOST", "no-port"),
        ("COMFY_READY_TIMEOUT_S", "-1"),
        ("COMFY_READY_POLL_INTERVAL_S", "fast"),
    ],
)
def test_invalid_values_name_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_bucket_settings_and_secret_not_in_repr():
    settings = Settings.from_env(
        {
            "BUCKET_ENDPOINT_URL": "https://my-bucket.s3.us-east-1.amazonaws.com",
            "BUCKET_ACCESS_KEY_ID": "AKIA",
            "BUCKET_SECRET_ACCESS_KEY": "very-secret",
        }
    )
    assert settings.bucket_configured and settings.bucket_name == "my-bucket"
    assert "very-secret" not in repr(settings)
    assert not Settings.from_env({}).bucket_configured


@pytest.mark.parametrize(
    "name, value",
    [
        ("BUCKET_ENDPOINT_URL", "ftp://x"),
        ("BUCKET_URL_EXPIRY_S", "604801"),
        ("MAX_RESPONSE_BYTES", "0"),
    ],
)
def test_invalid_output_settings(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_default_timeout_may_not_exceed_the_maximum():
    with pytest.raises(ValueError, match="JOB_TIMEOUT_S must not exceed JOB_TIMEOUT_MAX_S"):
        Settings.from_env({"JOB_TIMEOUT_S": "100", "JOB_TIMEOUT_MAX_S": "50"})
