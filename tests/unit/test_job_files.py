import asyncio
from pathlib import Path

import pytest

from comfy_worker.core.errors import UnsafePath
from comfy_worker.core.job_files import JobFiles, JobFolders, writing


@pytest.fixture
def folders(tmp_path) -> JobFolders:
    for folder in ("input", "output", "temp"):
        (tmp_path / folder).mkdir()
    return JobFolders.of(tmp_path)


@pytest.mark.parametrize("subfolder, filename", [("..", "secret"), ("", "../../etc/passwd"), ("/etc", "passwd")])
def test_paths_outside_a_folder_are_refused(folders, subfolder, filename):
    with pytest.raises(UnsafePath, match="outside its output/ folder"):
        folders.resolve(folders.output, subfolder, filename)


def test_resolve_keeps_subfolders(folders):
    assert folders.resolve(folders.input, "clips/a", "x.mp4") == folders.input / "clips" / "a" / "x.mp4"
    assert folders.folder("temp") == folders.temp
    assert folders.folder("elsewhere") is None


def test_add_refuses_foreign_paths(folders):
    with pytest.raises(UnsafePath):
        JobFiles(folders).add(Path("/etc/passwd"))


def test_remove_all_removes_the_files_and_only_the_folders_the_job_made(folders):
    existing = folders.output / "existing"  # made before the job: stays, even emptied
    existing.mkdir()
    kept = folders.output / "shared" / "kept.png"
    kept.parent.mkdir()
    kept.write_bytes(b"not the job's")
    files = JobFiles(folders)
    files.make_folders(folders.input / "job" / "deep")
    made = [existing / "a.png", folders.output / "shared" / "b.png", folders.input / "job" / "deep" / "c.png"]
    for path in made:
        path.write_bytes(b"x")
        files.add(path)
    files.add(folders.temp / "never-written.png")  # a missing file is not an error

    files.remove_all()

    assert not any(path.exists() for path in made)
    assert kept.exists()
    assert existing.is_dir()
    assert not (folders.input / "job").exists()
    assert folders.input.exists()


def test_make_folders_refuses_foreign_places(folders):
    with pytest.raises(UnsafePath):
        JobFiles(folders).make_folders(folders.input.parent.parent / "elsewhere")


def test_add_outputs_marks_the_outputs_as_registered(folders):
    files = JobFiles(folders)
    assert not files.has_outputs
    files.add_outputs([folders.output / "a.png"])
    assert files.has_outputs


async def test_a_file_still_being_written_is_waited_for_then_removed(folders):
    """A background saver renames `<name>.writing` to `<name>` when done: removing earlier
    would leave the finished file behind."""
    job = JobFiles(folders)
    path = folders.output / "late_00001_.png"
    writing(path).write_bytes(b"half a png")
    job.add_outputs([path])

    async def finish_writing():
        await asyncio.sleep(0.05)
        writing(path).replace(path)

    finishing = asyncio.ensure_future(finish_writing())
    await job.remove_all_async()
    await finishing

    assert not path.exists()
    assert not writing(path).exists()


async def test_waiting_for_a_writer_that_never_finishes_is_bounded(folders, caplog):
    job = JobFiles(folders)
    path = folders.output / "stuck_00001_.png"
    writing(path).write_bytes(b"")

    await job.written([path], wait_s=0.05)

    assert "still being written" in caplog.text


def test_removal_leaves_a_name_the_next_prompt_is_writing(folders):
    """Once the job's file is gone ComfyUI may give its name to the next prompt (its counter
    counts files that exist): that prompt's `<name>.writing` is not the job's to remove."""
    job = JobFiles(folders)
    path = folders.output / "shared_00106_.png"
    path.write_bytes(b"the job's image")
    job.add_outputs([path])
    writing(path).write_bytes(b"the next prompt's image, being written")

    job.remove_all()

    assert not path.exists()
    assert writing(path).exists()


def test_a_file_registered_twice_is_removed_once(folders, monkeypatch):
    """The prompt's events and its outputs both register a file. Removing it twice would take
    the file of the next prompt that ComfyUI gave the freed name in between."""
    job = JobFiles(folders)
    path = folders.output / "twice_00106_.png"
    path.write_bytes(b"the job's image")
    job.add(path)  # from the `executed` event
    job.add_outputs([path])  # from the outputs
    unlinked: list[Path] = []
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        unlinked.append(self)
        if self == path and len(unlinked) == 1:
            real_unlink(self, missing_ok=missing_ok)
            self.write_bytes(b"the next prompt's image, same name")  # ComfyUI reuses the name
            return
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    job.remove_all()

    assert unlinked.count(path) == 1, unlinked  # (and its `.failed` note, never there here)
    assert path.read_bytes() == b"the next prompt's image, same name"
