import pytest

from comfy_worker.comfyui.history import OutputFile
from comfy_worker.core.errors import InvalidJobInput, OutputTooLarge, OutputUnreadable
from comfy_worker.core.job_files import JobFiles, JobFolders
from comfy_worker.request.job_input import OutputOptions
from comfy_worker.transfer.delivery import QUICK_DELIVERY_BYTES, choose_storage, deliver_outputs, inline_size, is_quick
from tests.support.fake_store import FakeStore

BUCKET = FakeStore()  # choose_storage only passes it on


@pytest.fixture
def file_of_3000_bytes(tmp_path) -> OutputFile:
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 3000)
    return OutputFile("9", "a.png", "", "output", path, "image/png")


def test_inline_size_counts_base64_and_overhead(file_of_3000_bytes):
    assert inline_size([file_of_3000_bytes], [{"node_id": "1", "text": "abc"}]) == 4000 + 512 + 3 + 512


@pytest.mark.parametrize(
    "storage, bucket, limit, expected",
    [
        ("auto", None, 10_000, None),  # no bucket, small: inline
        ("auto", BUCKET, 10_000, BUCKET),  # a bucket is configured: upload
        ("base64", BUCKET, 10_000, None),  # asked inline and it fits
        ("base64", BUCKET, 100, BUCKET),  # asked inline but too large: the bucket takes it
        ("s3", BUCKET, 10_000, BUCKET),
    ],
)
def test_choose_storage(file_of_3000_bytes, storage, bucket, limit, expected):
    assert choose_storage(OutputOptions(storage=storage), bucket, [file_of_3000_bytes], [], limit) is expected


def test_too_large_without_bucket_names_size_limit_and_ways_out(file_of_3000_bytes):
    with pytest.raises(OutputTooLarge) as info:
        choose_storage(OutputOptions(), None, [file_of_3000_bytes], [], 1000)
    assert info.value.details == {"size_bytes": 4512, "limit_bytes": 1000}
    assert "BUCKET_ENDPOINT_URL" in info.value.message
    assert '"format": "webp"' in info.value.message


def test_s3_without_bucket_is_an_input_error(file_of_3000_bytes):
    with pytest.raises(InvalidJobInput, match="input.output.storage"):
        choose_storage(OutputOptions(storage="s3"), None, [file_of_3000_bytes], [], 10_000)


def test_a_vanished_output_is_named_in_the_error(tmp_path):
    gone = OutputFile("9", "gone.png", "", "output", tmp_path / "gone.png", "image/png")
    with pytest.raises(OutputUnreadable, match="output gone.png of node 9 cannot be read") as info:
        deliver_outputs([gone], [], OutputOptions(), None, 10_000, "job", JobFiles(JobFolders.of(tmp_path)))
    assert info.value.details == {"node_id": "9", "filename": "gone.png"}


def test_previews_are_left_out_unless_asked(tmp_path, file_of_3000_bytes):
    preview = OutputFile("7", "p.png", "", "temp", file_of_3000_bytes.path, "image/png")
    files = JobFiles(JobFolders.of(tmp_path))
    plain = deliver_outputs([file_of_3000_bytes, preview], [], OutputOptions(), None, 10**6, "j", files)
    both = deliver_outputs(
        [file_of_3000_bytes, preview], [], OutputOptions(include_previews=True), None, 10**6, "j", files
    )
    assert [e["node_id"] for e in plain["images"]] == ["9"]
    assert [e["node_id"] for e in both["images"]] == ["9", "7"]


def test_same_names_in_different_subfolders_get_different_keys(tmp_path):
    store = FakeStore()
    files = []
    for subfolder in ("a", "b"):
        (tmp_path / subfolder).mkdir()
        path = tmp_path / subfolder / "x.png"
        path.write_bytes(subfolder.encode())
        files.append(OutputFile("9", "x.png", subfolder, "output", path, "image/png"))

    result = deliver_outputs(files, [], OutputOptions(), store, 10**6, "job", JobFiles(JobFolders.of(tmp_path)))

    assert sorted(store.objects) == ["job/a/x.png", "job/b/x.png"]
    assert [entry["data"] for entry in result["images"]] == [
        "https://store.invalid/job/a/x.png",
        "https://store.invalid/job/b/x.png",
    ]


def test_only_small_png_outputs_without_a_bucket_are_delivered_in_the_event_loop(tmp_path):
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    small.write_bytes(b"x" * 1000)
    big.write_bytes(b"x" * (QUICK_DELIVERY_BYTES + 1))

    def output(path):
        return OutputFile("9", path.name, "", "output", path, "image/png")

    assert is_quick([output(small)], OutputOptions(), None)
    assert not is_quick([output(small), output(big)], OutputOptions(), None), "too much to read"
    assert not is_quick([output(small)], OutputOptions(format="webp"), None), "a conversion"
    assert not is_quick([output(small)], OutputOptions(), store=object()), "an upload may follow"
    assert not is_quick([output(tmp_path / "gone.png")], OutputOptions(), None)


def test_issue20_6_a_small_limit_reads_in_kilobytes_not_zero_megabytes(file_of_3000_bytes):
    with pytest.raises(OutputTooLarge) as info:
        choose_storage(OutputOptions(), None, [file_of_3000_bytes], [], 1000)
    assert "the outputs are 4.5 kB as base64, over the 1.0 kB limit" in info.value.message
    assert "0.0 MB" not in info.value.message


def test_issue20_6_no_files_out_comes_with_a_hint(tmp_path, file_of_3000_bytes):
    files = JobFiles(JobFolders.of(tmp_path))
    preview = OutputFile("7", "p.png", "", "temp", file_of_3000_bytes.path, "image/png")
    only_previews = deliver_outputs([preview], [], OutputOptions(), None, 10**6, "j", files)
    nothing = deliver_outputs([], [], OutputOptions(), None, 10**6, "j", files)
    assert only_previews["images"] == []
    assert '"include_previews": true' in only_previews["hint"]
    assert "saved no files" in nothing["hint"]
    assert "SaveImage" in nothing["hint"]
    with_files = deliver_outputs([file_of_3000_bytes], [], OutputOptions(), None, 10**6, "j", files)
    assert "hint" not in with_files
