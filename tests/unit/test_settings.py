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
