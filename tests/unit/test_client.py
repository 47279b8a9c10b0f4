import base64

from client.api import save_outputs
from client.cli import ProgressBar
from tests.support.servers import http_file_server


def test_save_outputs_writes_base64_and_downloads_urls(tmp_path):
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "clip.webm").write_bytes(b"webm bytes")
    with http_file_server(tmp_path / "served") as base_url:
        output = {
            "images": [
                {"filename": "a.png", "type": "base64", "data": base64.b64encode(b"png bytes").decode(), "node_id": "9"}
            ],
            "videos": [{"filename": "clip.webm", "type": "s3_url", "data": f"{base_url}/clip.webm", "node_id": "12"}],
            "timings": {"total_s": 1},
        }
        saved = save_outputs(output, tmp_path / "out", "job-1")
        again = save_outputs({"images": output["images"]}, tmp_path / "out", "job-2")
    assert [p.name for p in saved] == ["job-1-9-a.png", "job-1-12-clip.webm"]
    assert [p.read_bytes() for p in saved] == [b"png bytes", b"webm bytes"]
    assert again[0].name == "job-2-9-a.png" and saved[0].exists(), "a second job does not overwrite the first"


def test_file_names_from_the_worker_cannot_escape_the_folder(tmp_path):
    image = {
        "filename": "../../escape.png",
        "type": "base64",
        "data": base64.b64encode(b"x").decode(),
        "node_id": "a/b",
    }
    [saved] = save_outputs({"images": [image]}, tmp_path / "out", "../../job")
    assert saved.parent == tmp_path / "out" and saved.name == "b-escape.png"


def test_progress_bar_follows_the_payload():
    bar = ProgressBar()
    bar.update({"status": "IN_QUEUE"})
    bar.update(
        {"status": "IN_PROGRESS", "output": {"progress": 0.4267, "message": "KSampler: step 3/20", "eta_s": 4.2}}
    )
    assert bar.bar.n == 42.7 and bar.bar.desc.startswith("KSampler: step 3/20") and bar.seen_progress
    assert bar.bar.postfix == "about 4 s left"
    bar.update({"status": "COMPLETED", "output": {"images": []}})
    assert bar.bar.n == 100
    bar.close()
