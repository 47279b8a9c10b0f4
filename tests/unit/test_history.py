from pathlib import Path

import pytest

from comfy_worker.comfyui.history import OutputFile, files_in_history, mime_type_of, texts_in_history
from comfy_worker.core.errors import UnsafePath
from comfy_worker.core.job_files import JobFolders


@pytest.fixture
def folders(tmp_path) -> JobFolders:
    return JobFolders.of(tmp_path)


def test_lists_every_file_of_every_output_key_without_touching_disk(folders):
    history = {
        "outputs": {
            "9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]},
            "10": {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}], "text": ["hello"]},
            "11": {"gifs": [{"filename": "v.mp4", "subfolder": "vid", "type": "output", "format": "video/h264-mp4"}]},
            "12": {"images": [{"filename": "in.png", "subfolder": "", "type": "input"}]},
            "13": {"images": [{"filename": "odd.png", "type": "elsewhere"}], "animated": [False]},
        }
    }
    found = files_in_history(history, folders)
    assert [(f.node_id, f.folder_type, f.path, f.created_by_job) for f in found] == [
        ("9", "output", folders.output / "a.png", True),
        ("10", "temp", folders.temp / "p.png", True),
        ("11", "output", folders.output / "vid" / "v.mp4", True),
        ("12", "input", folders.input / "in.png", False),
    ]
    assert found[2].mime_type == "video/mp4"
    assert found[2].media == "video"


def test_a_path_outside_the_folders_is_refused(folders):
    history = {"outputs": {"1": {"images": [{"filename": "x.png", "subfolder": "../..", "type": "output"}]}}}
    with pytest.raises(UnsafePath):
        files_in_history(history, folders)


@pytest.mark.parametrize(
    "item, expected",
    [
        ({"filename": "a.png"}, "image/png"),
        ({"filename": "a.webp"}, "image/webp"),
        ({"filename": "a.webm"}, "video/webm"),
        ({"filename": "a.FLAC"}, "audio/flac"),
        ({"filename": "a.mp4", "format": "video/h264-mp4"}, "video/mp4"),
        ({"filename": "a.gif", "format": "image/gif"}, "image/gif"),
        ({"filename": "a.bin", "format": "video/h265-mp4"}, "video/h265-mp4"),
        ({"filename": "a.unknownext"}, "application/octet-stream"),
    ],
)
def test_mime_types(item, expected):
    assert mime_type_of(item) == expected


def test_media_kind_from_mime():
    kinds = [
        OutputFile("1", "f", "", "output", Path("f"), mime).media
        for mime in ("image/png", "video/mp4", "audio/flac", "application/json")
    ]
    assert kinds == ["image", "video", "audio", "file"]


def test_texts_in_history():
    history = {"outputs": {"4": {"text": ["hello", 5]}, "9": {"images": []}}}
    assert texts_in_history(history) == [{"node_id": "4", "text": "hello"}]
