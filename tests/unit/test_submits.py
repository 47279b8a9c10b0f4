"""Submit once: a job sent again with its idempotency key returns the first job's result, against a
scripted ComfyUI, an in-memory bucket and a records folder; time behind an injected clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from comfy_worker.core.errors import StorageError
from comfy_worker.request.job_input import input_fingerprint
from comfy_worker.transfer.submits import FolderShelf, SubmitRecord, SubmitRecords, record_name
from tests.support.fake_comfy import Run
from tests.support.fake_store import FakeStore

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
}


class Clock:
    """Wall-clock time that moves only when the waiting job sleeps."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0.001)  # lets the job it waits on run


@pytest.fixture
def clock() -> Clock:
    return Clock()


def keyed(key: str = "order-1", **more) -> dict:
    return {"workflow": WORKFLOW, "idempotency_key": key, **more}


def with_records(worker, clock: Clock, folder=None):
    worker.submits = SubmitRecords(folder, clock=clock, sleep=clock.sleep)
    return worker


async def test_a_submit_sent_again_returns_the_first_result_without_running(make_worker, comfy, clock):
    store = FakeStore()
    worker = with_records(make_worker(store), clock)

    first = await worker.handle({"id": "job-a", "input": keyed()})
    again = await worker.handle({"id": "job-b", "input": keyed()})

    assert len(comfy.prompts) == 1, "the second job ran no prompt"
    assert "error" not in first, first
    assert again["repeat_of"] == "job-a"
    [image], [repeated] = first["images"], again["images"]
    assert repeated["filename"] == image["filename"]
    assert repeated["type"] == "s3_url"
    assert repeated["data"] != image["data"], "the repeat's URL is signed afresh"
    assert repeated["data"].startswith(f"https://store.invalid/job-a/{image['filename']}")
    assert again["seeds"] == first["seeds"]
    assert again["timings"] == first["timings"]
    assert [SubmitRecord.decode(body).state for body in store.records.values()] == ["done"]  # type: ignore[union-attr]


async def test_keys_are_kept_in_the_records_folder_without_a_bucket(make_worker, comfy, clock, tmp_path):
    worker = with_records(make_worker(), clock, tmp_path / "records")

    first = await worker.handle({"id": "job-a", "input": keyed()})
    again = await worker.handle({"id": "job-b", "input": keyed()})
    other = await worker.handle({"id": "job-c", "input": keyed("order-2")})

    assert again == {**first, "repeat_of": "job-a"}  # inline outputs come back as they were
    assert first["images"][0]["type"] == "base64"
    assert "repeat_of" not in other
    assert len(comfy.prompts) == 2
    assert sorted(path.name for path in (tmp_path / "records" / "submits").iterdir()) == sorted(
        record_name(key).removeprefix("submits/") for key in ("order-1", "order-2")
    ), "one record per key, nothing written aside is left"


async def test_a_second_job_waits_for_the_first_then_returns_its_result(make_worker, comfy, clock, progress):
    comfy.runs.append(Run.success(node_s=0.05))
    worker = with_records(make_worker(FakeStore(), jobs_in_flight=2), clock)

    first, second = await asyncio.gather(
        worker.handle({"id": "job-a", "input": keyed()}),
        worker.handle({"id": "job-b", "input": keyed()}),
    )

    assert len(comfy.prompts) == 1
    assert "error" not in first
    assert second["repeat_of"] == "job-a"
    assert clock.slept, "the second job waited on the record"
    waiting = [update for update in progress if update.get("status") == "waiting"]
    assert [update["message"] for update in waiting] == ["the same submit runs as job job-a: waiting for its result"]


async def test_a_failed_first_job_lets_the_submit_run_again(make_worker, comfy, clock):
    comfy.runs.append(Run.failure("2", "SaveImage", "disk on fire"))
    store = FakeStore()
    worker = with_records(make_worker(store), clock)

    failed = await worker.handle({"id": "job-a", "input": keyed()})
    assert failed["error_type"] == "execution_failed"
    assert store.records == {}, "the failed job released its key"
    again = await worker.handle({"id": "job-b", "input": keyed()})

    assert "error" not in again
    assert "repeat_of" not in again
    assert len(comfy.prompts) == 2


async def test_a_cancelled_first_job_releases_its_key(make_worker, comfy, clock):
    comfy.runs.append(Run.success(hang=True))
    store = FakeStore()
    worker = with_records(make_worker(store), clock)
    job = asyncio.create_task(worker.handle({"id": "job-a", "input": keyed()}))
    while comfy.running is None:  # noqa: ASYNC110 (the fake sets it synchronously)
        await asyncio.sleep(0)
    assert len(store.records) == 1

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job

    assert store.records == {}


async def test_the_same_key_with_another_input_is_refused(make_worker, comfy, clock):
    worker = with_records(make_worker(FakeStore()), clock)
    await worker.handle({"id": "job-a", "input": keyed()})

    other = await worker.handle({"id": "job-b", "input": keyed(output={"format": "webp"})})

    assert other["error_type"] == "invalid_input"
    assert other["details"]["problems"] == [
        {"field": "input.idempotency_key", "problem": "was sent with another input (job job-a); use a new key"}
    ]
    assert len(comfy.prompts) == 1


async def test_the_same_input_in_another_key_order_is_the_same_submit(make_worker, comfy, clock):
    worker = with_records(make_worker(FakeStore()), clock)
    await worker.handle({"id": "job-a", "input": {"idempotency_key": "k", "timeout_s": 60, "workflow": WORKFLOW}})

    again = await worker.handle(
        {"id": "job-b", "input": {"workflow": WORKFLOW, "timeout_s": 60, "idempotency_key": "k"}}
    )

    assert again["repeat_of"] == "job-a"


async def test_a_job_waiting_past_its_timeout_fails_naming_the_running_one(make_worker, comfy, clock):
    store = FakeStore()
    worker = with_records(make_worker(store), clock)
    request = keyed(timeout_s=5.0)
    store.records[record_name("order-1")] = SubmitRecord(
        "running", "job-a", input_fingerprint(request), clock() + 3600
    ).encode()

    result = await worker.handle({"id": "job-b", "input": request})

    assert result["error_type"] == "submit_pending"
    assert result["details"] == {"job_id": "job-a"}
    assert "job job-a" in result["error"]
    assert clock.slept == [1.0] * 5, "it read the record once a second until its timeout"
    assert comfy.prompts == {}


async def test_a_running_record_past_its_expiry_is_taken_over(make_worker, comfy, clock, caplog):
    store = FakeStore()
    worker = with_records(make_worker(store), clock)
    store.records[record_name("order-1")] = SubmitRecord(
        "running", "job-dead", input_fingerprint(keyed()), clock() - 1
    ).encode()

    with caplog.at_level(logging.WARNING):
        result = await worker.handle({"id": "job-b", "input": keyed()})

    assert "error" not in result
    assert "repeat_of" not in result
    assert "takes over the key of job job-dead" in caplog.text
    assert len(comfy.prompts) == 1
    assert SubmitRecord.decode(store.records[record_name("order-1")]).job_id == "job-b"  # type: ignore[union-attr]


async def test_without_a_bucket_or_folder_the_key_is_not_kept_and_says_so_once(make_worker, comfy, clock, caplog):
    worker = with_records(make_worker(), clock)

    with caplog.at_level(logging.WARNING):
        await worker.handle({"id": "job-a", "input": keyed()})
        again = await worker.handle({"id": "job-b", "input": keyed()})

    assert "repeat_of" not in again
    assert len(comfy.prompts) == 2
    assert caplog.text.count("idempotency keys are not kept") == 1


async def test_result_of_answers_from_the_record(make_worker, comfy, clock):
    store = FakeStore()
    worker = with_records(make_worker(store), clock)
    first = await worker.handle({"id": "job-a", "input": keyed()})

    found = await worker.handle({"id": "look", "input": {"result_of": "order-1"}})
    unknown = await worker.handle({"id": "look2", "input": {"result_of": "never-sent"}})

    assert found["repeat_of"] == "job-a"
    assert found["seeds"] == first["seeds"]
    assert unknown["error_type"] == "unknown_submit"
    assert "bucket 'fake'" in unknown["error"]
    assert len(comfy.prompts) == 1


async def test_result_of_a_running_submit_names_its_job(make_worker, comfy, clock):
    store = FakeStore()
    store.records[record_name("k")] = SubmitRecord("running", "job-a", "f", clock() + 60).encode()
    worker = with_records(make_worker(store), clock)

    result = await worker.handle({"id": "look", "input": {"result_of": "k"}})

    assert result["error_type"] == "submit_pending"
    assert result["details"] == {"job_id": "job-a"}


async def test_a_record_that_cannot_be_kept_leaves_the_result_alone(make_worker, comfy, clock, caplog):
    class Unkept(FakeStore):
        def write_object(self, name: str, body: bytes) -> None:
            raise StorageError("submits/x.json in bucket 'fake': access denied")

    store = Unkept()
    worker = with_records(make_worker(store), clock)

    with caplog.at_level(logging.WARNING):
        result = await worker.handle({"id": "job-a", "input": keyed()})

    assert "error" not in result
    assert "not recorded for its idempotency key" in caplog.text
    assert store.records == {}, "the running record was released: a repeat runs again rather than waiting"


def test_the_folder_shelf_creates_once_and_leaves_nothing_aside(tmp_path):
    shelf = FolderShelf(tmp_path / "records")

    assert shelf.create_object("submits/a.json", b"1") is True
    assert shelf.create_object("submits/a.json", b"2") is False
    assert shelf.read_object("submits/a.json") == b"1"
    shelf.write_object("submits/a.json", b"3")
    assert shelf.read_object("submits/a.json") == b"3"
    shelf.delete_object("submits/a.json")
    shelf.delete_object("submits/a.json")  # gone already: no error
    assert shelf.read_object("submits/a.json") is None
    assert list((tmp_path / "records" / "submits").iterdir()) == []


def test_a_folder_that_cannot_be_written_is_a_storage_error_without_its_path(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    shelf = FolderShelf(tmp_path / "file")

    with pytest.raises(StorageError) as raised:
        shelf.create_object("submits/a.json", b"1")

    assert str(tmp_path) not in raised.value.message
    assert "submits/a.json in the records folder (SUBMIT_RECORDS_DIR)" in raised.value.message


def test_a_damaged_or_foreign_record_is_not_read():
    assert SubmitRecord.decode(b"{not json") is None
    assert SubmitRecord.decode(b'{"version": 2, "state": "done"}') is None
    record = SubmitRecord("done", "job-a", "f", 1.0, {"images": []})
    assert SubmitRecord.decode(record.encode()) == record
