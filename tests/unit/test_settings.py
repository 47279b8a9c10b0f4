import re
from pathlib import Path

import pytest

from comfy_worker.core.settings import Settings


def test_defaults():
    settings = Settings.from_env({})
    assert settings.comfy_host == "127.0.0.1:8188"
    assert settings.comfy_http_url == "http://127.0.0.1:8188"
    assert settings.comfyui_path == Path("/comfyui")
    assert settings.ready_poll_interval_s == 0.01


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
    assert (settings.comfy_host, settings.comfyui_path, settings.comfy_pid_file) == (
        "localhost:9000",
        Path("/srv/comfy"),
        Path("/run/c.pid"),
    )
    assert (settings.ready_poll_interval_s, settings.ready_timeout_s) == (0.5, 30.0)


@pytest.mark.parametrize(
    "name, value",
    [
        ("COMFY_HOST", "no-port"),
        ("COMFY_READY_TIMEOUT_S", "-1"),
        ("COMFY_READY_POLL_INTERVAL_S", "fast"),
        ("JOB_TIMEOUT_S", "nan"),
        ("BUCKET_ENDPOINT_URL", "ftp://x"),
        ("BUCKET_URL_EXPIRY_S", "604801"),
        ("MAX_RESPONSE_BYTES", "0"),
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
    assert settings.bucket_configured
    assert settings.bucket_name == "my-bucket"
    assert "very-secret" not in repr(settings)
    assert not Settings.from_env({}).bucket_configured


def test_default_timeout_may_not_exceed_the_maximum():
    with pytest.raises(ValueError, match="JOB_TIMEOUT_S must not exceed JOB_TIMEOUT_MAX_S"):
        Settings.from_env({"JOB_TIMEOUT_S": "100", "JOB_TIMEOUT_MAX_S": "50"})


REPO_ROOT = Path(__file__).resolve().parents[2]


def readme_table(heading: str) -> dict[str, str]:
    """Variable -> default cell of the first table under `heading` in docs/deploy.md."""
    section = (REPO_ROOT / "docs" / "deploy.md").read_text().split(f"\n{heading}\n", 1)[1]
    rows = {}
    for line in section.splitlines():
        if line.startswith("#"):  # the next heading ends the section
            break
        match = re.match(r"\| `([A-Z0-9_]+)` \| ([^|]+) \|", line)
        if match:
            rows[match.group(1)] = match.group(2).strip()
    return rows


def documented(default: object) -> str:
    if default is None:
        return "unset"
    if default == "":
        return "empty"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


def test_readme_settings_table_lists_every_setting_with_its_default():
    table = readme_table("### Worker settings")
    variables = Settings.variables()
    assert sorted(table) == sorted(variables), "docs/deploy.md's worker settings table and Settings disagree"
    wrong = {
        name: (table[name], documented(default))
        for name, default in variables.items()
        if not table[name].startswith(documented(default))
    }
    assert not wrong, wrong


def test_start_sh_defaults_are_the_workers():
    start_sh = (REPO_ROOT / "start.sh").read_text()
    defaults = dict(re.findall(r"export ([A-Z_]+)=\$\{\1:-([^}]+)\}", start_sh))
    assert defaults, "start.sh exports the settings it shares with the worker"
    variables = Settings.variables()
    assert {name: str(variables[name]) for name in defaults} == defaults


def test_start_sh_settings_in_readme_are_read_by_start_sh():
    """By start.sh itself, or by the start-up steps it runs (the read-ahead, the prefetch, the model-cache links)."""
    start_sh = (REPO_ROOT / "start.sh").read_text()
    steps = (REPO_ROOT / "comfy_worker" / "models" / "prefetch.py").read_text()
    steps += (REPO_ROOT / "comfy_worker" / "models" / "boot_readahead.py").read_text()
    steps += (REPO_ROOT / "scripts" / "image" / "link_cached_models.py").read_text()
    table = readme_table("### start.sh settings")
    unread = [name for name in table if f"${{{name}" not in start_sh and f'"{name}"' not in steps]
    assert table, unread
    assert not unread, unread
