from pathlib import Path

import pytest

from comfy_worker.job_files import JobFiles
from comfy_worker.outputs import files_in_history
from comfy_worker.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    for folder in ("input", "output", "temp"):
        (tmp_path / folder).mkdir()
    return Settings(comfyui_path=tmp_path)


def job_files(settings):
    return JobFiles([settings.input_dir, settings.output_dir, settings.temp_dir])


def test_lists_every_file_output_and_registers_output_and_temp(settings):
    history = {
        "outputs": {
            "9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]},
            "10": {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}], "text": ["hello"]},
            "11": {"gifs": [{"filename": "v.mp4", "subfolder": "vid", "type": "output", "format": "video/h264-mp4"}]},
            "12": {"images": [{"filename": "in.png", "subfolder": "", "type": "input"}]},
        }
    }
    files = job_files(settings)
    found = files_in_history(history, settings, files)
    assert [(f.node_id, f.folder_type, f.path) for f in found] == [
        ("9", "output", settings.output_dir / "a.png"),
        ("10", "temp", settings.temp_dir / "p.png"),
        ("11", "output", settings.output_dir / "vid" / "v.mp4"),
        ("12", "input", settings.input_dir / "in.png"),
    ]
    for f in found:
        f.path.parent.mkdir(exist_ok=True)
        f.path.write_bytes(b"x")
    files.remove_all()
    assert [f.path.exists() for f in found] == [False, False, False, True]


@pytest.mark.parametrize("subfolder, filename", [("..", "secret"), ("", "../../etc/passwd"), ("/etc", "passwd")])
def test_paths_outside_the_job_folders_are_refused(settings, subfolder, filename):
    history = {"outputs": {"1": {"images": [{"filename": filename, "subfolder": subfolder, "type": "output"}]}}}
    with pytest.raises(ValueError, match="outside"):
        files_in_history(history, settings, job_files(settings))


def test_add_refuses_foreign_paths(settings):
    with pytest.raises(ValueError):
        job_files(settings).add(Path("/etc/passwd"))
