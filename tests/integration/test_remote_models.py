"""Models by URL, hf:// and s3:// reference against the real ComfyUI: fetched once into the
cache (which ComfyUI reads as model folders), verified, evicted, shared between
processes, and refused when unsafe."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import boto3
import pytest

from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME, LORA_NAME
from tests.support.comfyui_server import COMFYUI_DIR
from tests.support.fake_hub import fake_hub
from tests.support.servers import model_server, moto_s3
from tests.support.workflows import add_lora, decode_image, txt2img

LORA = (COMFYUI_DIR / "models" / "loras" / LORA_NAME).read_bytes()
SHA = hashlib.sha256(LORA).hexdigest()


def other_lora() -> bytes:
    """The tiny LoRA with one byte of its weights changed: another file, still valid."""
    data = bytearray(LORA)
    data[-3] ^= 0x01
    return bytes(data)


def with_lora(lora_name: str, seed: int = 5) -> dict:
    return add_lora(txt2img(seed=seed), lora_name)


def cache_files(comfyui) -> set[str]:
    return {str(p.relative_to(comfyui.model_cache)) for p in comfyui.model_cache.rglob("*") if p.is_file()
            and p.parent.name != ".locks"}  # fmt: skip


@pytest.fixture
def allow_private(monkeypatch):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")


def empty(folder) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.unlink()


@pytest.fixture
def fresh_cache(comfyui):
    """Each test starts with an empty cache. Its folders stay: a running ComfyUI fails to
    list a model folder that disappeared, and on a worker they never do."""
    empty(comfyui.model_cache)
    yield comfyui.model_cache
    empty(comfyui.model_cache)


async def test_a_lora_by_url_is_applied_and_the_second_job_uses_the_cache(
    run_job, allow_private, fresh_cache, comfyui, progress, clean_after
):
    without = await run_job({"workflow": txt2img(seed=5)})
    local = await run_job({"workflow": with_lora(LORA_NAME)})
    with model_server({"/models/style.safetensors": LORA}) as server:
        first = await run_job({"workflow": with_lora(f"{server.url}/models/style.safetensors?sig=abc")})
        second = await run_job({"workflow": with_lora(f"{server.url}/models/style.safetensors?sig=abc")})

    assert "error" not in first, first
    pixels = [decode_image(result["images"][0]).tobytes() for result in (without, local, first, second)]
    assert pixels[0] != pixels[2], "the LoRA changes the image"
    assert pixels[1] == pixels[2] == pixels[3], "exactly as the same LoRA installed locally"
    assert server.count("/models/style.safetensors") == 1, "the second job is served from the cache"
    assert cache_files(comfyui) >= {f"loras/{SHA[:16]}-style.safetensors"}
    assert not any(name.startswith(".partial/") for name in cache_files(comfyui))
    assert any(p.get("status") == "downloading" and "downloading style.safetensors" in p["message"] for p in progress)
    assert "fetch_models_s" in first["timings"]


async def test_an_hf_reference_comes_from_the_hub(run_job, use_settings, fresh_cache, clean_after):
    with fake_hub({"someone/styles/loras/style.safetensors": LORA}) as hub:
        use_settings(HF_ENDPOINT=hub)
        result = await run_job(
            {"workflow": with_lora(f"hf://someone/styles/loras/style.safetensors@main#sha256={SHA}")}
        )
        missing = await run_job({"workflow": with_lora("hf://someone/styles/loras/nope.safetensors")})

    assert "error" not in result, result
    assert missing["error_type"] == "model_download_failed"
    assert missing["details"]["node_id"] == "10"
    assert missing["details"]["input"] == "lora_name"
    assert (
        "node 10 'Style' input 'lora_name': could not fetch hf://someone/styles/loras/nope.safetensors"
        in missing["error"]
    )
    assert "not found on the Hub" in missing["error"]


async def test_a_hash_mismatch_fails_clearly_and_leaves_nothing(run_job, allow_private, fresh_cache, comfyui):
    wrong = "0" * 64
    with model_server({"/style.safetensors": LORA}) as server:
        result = await run_job({"workflow": with_lora(f"{server.url}/style.safetensors#sha256={wrong}")})

    assert result["error_type"] == "model_download_failed"
    assert f"hash mismatch: expected sha256 {wrong}, got {SHA}" in result["error"]
    assert cache_files(comfyui) == set()


@pytest.mark.parametrize(
    ("files", "path", "settings", "expected"),
    [
        ({}, "/gone.safetensors", {}, "HTTP 404"),
        ({"/fake.safetensors": b"<html>login</html>"}, "/fake.safetensors", {}, "not a safetensors file"),
        ({"/big.safetensors": LORA}, "/big.safetensors", {"MODEL_DOWNLOAD_MAX_GB": "0.000001"}, "too large"),
    ],
)
async def test_download_failures_name_the_reason(
    run_job, use_settings, allow_private, fresh_cache, comfyui, files, path, settings, expected
):
    if settings:
        use_settings(**settings)
    with model_server(files) as server:
        result = await run_job({"workflow": with_lora(f"{server.url}{path}")})
    assert result["error_type"] == "model_download_failed"
    assert expected in result["details"]["reason"]
    assert cache_files(comfyui) == set()


async def test_private_addresses_and_pickles_are_refused(run_job, monkeypatch, fresh_cache):
    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)
    with model_server({"/style.safetensors": LORA}) as server:
        private = await run_job({"workflow": with_lora(f"{server.url}/style.safetensors?token=secret")})
        pickle = await run_job({"workflow": with_lora(f"{server.url}/style.ckpt")})

    assert "non-public address 127.0.0.1" in private["error"]
    assert "token=secret" not in private["error"]
    assert server.requests == []
    assert pickle["error_type"] == "invalid_input"
    assert "ALLOW_PICKLE_MODELS" in pickle["details"]["problems"][0]["problem"]


async def test_a_redirect_to_a_private_address_is_refused(run_job, monkeypatch, fresh_cache):
    # 'localhost' passes as a public host here; the redirect to 127.0.0.1 must still be refused.
    from comfy_worker.transfer import downloads

    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)
    original = downloads.resolve
    monkeypatch.setattr(
        downloads,
        "resolve",
        lambda host, port, allow_private=False: ["127.0.0.1"] if host == "localhost" else original(host, port),
    )
    with model_server({"/style.safetensors": LORA}) as server:
        port = server.url.rsplit(":", 1)[1]
        result = await run_job({"workflow": with_lora(f"http://localhost:{port}/to/127.0.0.1/style.safetensors")})

    assert "refused" in result["error"]
    assert "non-public address 127.0.0.1" in result["error"]
    assert [path for path, _ in server.requests] == ["/to/127.0.0.1/style.safetensors"]


async def test_a_credential_goes_only_to_its_host(run_job, allow_private, fresh_cache, clean_after):
    secret = {"Authorization": "Bearer s3cret"}
    with model_server({"/style.safetensors": LORA}, require=secret) as server:
        credentials = {"headers": {"127.0.0.1": secret}}
        ok = await run_job({"workflow": with_lora(f"{server.url}/style.safetensors"), "model_credentials": credentials})
        without = await run_job({"workflow": with_lora(f"{server.url}/style.safetensors?x=1")})
        redirected = await run_job(
            {"workflow": with_lora(f"{server.url}/to/localhost/style.safetensors"), "model_credentials": credentials}
        )

    assert "error" not in ok, ok
    assert "HTTP 401" in without["error"]
    # The redirect's target host (localhost) got no credential, so it refused.
    assert "HTTP 401" in redirected["error"]
    [(_, to_localhost)] = [(p, h) for p, h in server.requests[-2:] if p == "/style.safetensors"]
    assert "Authorization" not in to_localhost
    assert "s3cret" not in json.dumps([ok, without, redirected])


async def test_eviction_under_a_tiny_cap_never_takes_a_file_in_use(
    run_job, use_settings, allow_private, fresh_cache, comfyui, clean_after
):
    use_settings(MODEL_CACHE_MAX_GB=str(1.5 * len(LORA) / 1e9))  # room for one LoRA
    with model_server({"/a.safetensors": LORA, "/b.safetensors": other_lora()}) as server:
        a, b = f"{server.url}/a.safetensors", f"{server.url}/b.safetensors"
        assert "error" not in await run_job({"workflow": with_lora(a)})
        assert "error" not in await run_job({"workflow": with_lora(b)})
        in_cache = {name.split("-", 1)[1] for name in cache_files(comfyui) if name.startswith("loras/")}
        assert in_cache == {"b.safetensors"}, "a, least recently used, made room for b"

        both = add_lora(with_lora(a), b, node_id="11", source="10")
        result = await run_job({"workflow": both})
    # a came back (b, not yet in use, made room); then b came back and a, in use, stayed.
    assert "error" not in result, "both stay while the job uses them, over the cap"
    assert server.count("/a.safetensors") == 2
    assert server.count("/b.safetensors") == 2
    names = {name.split("-", 1)[1] for name in cache_files(comfyui) if name.startswith("loras/")}
    assert names == {"a.safetensors", "b.safetensors"}


async def test_a_corrupt_cached_file_is_fetched_again(run_job, allow_private, fresh_cache, comfyui, clean_after):
    with model_server({"/style.safetensors": LORA}) as server:
        assert "error" not in await run_job({"workflow": with_lora(f"{server.url}/style.safetensors")})
        cached = comfyui.model_cache / "loras" / f"{SHA[:16]}-style.safetensors"
        cached.write_bytes(LORA[:-10])  # truncated on disk
        result = await run_job({"workflow": with_lora(f"{server.url}/style.safetensors")})
    assert "error" not in result, result
    assert server.count("/style.safetensors") == 2
    assert cached.read_bytes() == LORA


FETCH_IN_ANOTHER_PROCESS = """
import asyncio, json, sys
from pathlib import Path
from comfy_worker.models.model_cache import ModelCache
from comfy_worker.models.remote_models import Credentials, ModelFetcher, RemoteModel, parse_reference
from comfy_worker.core.settings import Settings
from comfy_worker.request.workflow import Workflow

settings = Settings.from_env({"MODEL_CACHE_DIR": sys.argv[1], "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS": "true"})
model = RemoteModel("10", "lora_name", "loras", parse_reference(sys.argv[2], False))
messages = []
fetcher = ModelFetcher(settings, ModelCache(settings.model_cache_dir))
workflow = Workflow({"10": {"class_type": "LoraLoader", "inputs": {}}})
cached, hold = asyncio.run(fetcher.fetch(model, workflow, Credentials(), lambda m, f: messages.append(m)))
hold.release()
print(json.dumps({"path": str(cached.path), "messages": messages}))
"""


def test_two_processes_sharing_a_cache_fetch_once(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    with model_server({"/style.safetensors": LORA}, delay_s=1.5) as server:
        url = f"{server.url}/style.safetensors"
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", FETCH_IN_ANOTHER_PROCESS, str(tmp_path), url], stdout=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        results = [json.loads(run.communicate(timeout=120)[0]) for run in runs]

    assert server.count("/style.safetensors") == 1
    assert results[0]["path"] == results[1]["path"]
    assert any("waiting for another worker's download of style.safetensors" in r["messages"] for r in results)


async def test_a_named_workflows_model_parameter_takes_a_url(run_job, allow_private, fresh_cache, clean_after):
    checkpoint = (COMFYUI_DIR / "models" / "checkpoints" / CHECKPOINT_NAME).read_bytes()
    params = {"steps": 2, "width": 64, "height": 64, "seed": 3}
    with model_server({"/sd15.safetensors": checkpoint}) as server:
        by_url = await run_job(
            {"workflow_name": "txt2img", "params": {**params, "checkpoint": f"{server.url}/sd15.safetensors"}}
        )
    installed = await run_job({"workflow_name": "txt2img", "params": {**params, "checkpoint": CHECKPOINT_NAME}})

    assert "error" not in by_url, by_url
    assert decode_image(by_url["images"][0]).tobytes() == decode_image(installed["images"][0]).tobytes()


async def test_an_s3_reference_is_read_with_the_jobs_bucket(run_job, allow_private, fresh_cache, clean_after):
    local = await run_job({"workflow": with_lora(LORA_NAME, seed=7)})
    with moto_s3() as endpoint:
        store = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        store.create_bucket(Bucket="models")
        store.put_object(Bucket="models", Key="loras/style.safetensors", Body=LORA)
        storage = {"endpoint_url": endpoint, "bucket": "models", "access_key_id": "k", "secret_access_key": "s3-key"}
        from_s3 = await run_job(
            {
                "workflow": with_lora("s3://models/loras/style.safetensors", seed=7),
                "storage": storage,
                "output": {"storage": "base64"},
            }
        )
        missing = await run_job({"workflow": with_lora("s3://models/loras/absent.safetensors"), "storage": storage})
    without_bucket = await run_job({"workflow": with_lora("s3://models/loras/style.safetensors")})

    assert "error" not in from_s3, from_s3
    assert decode_image(from_s3["images"][0]).tobytes() == decode_image(local["images"][0]).tobytes()
    assert missing["error_type"] == "model_download_failed", missing
    assert "s3://models/loras/absent.safetensors" in missing["error"]
    assert "HTTP 404" in missing["error"]
    assert "X-Amz" not in json.dumps(missing), "the signed URL stays out of the result"
    assert without_bucket["error_type"] == "invalid_input"
    [problem] = without_bucket["details"]["problems"]
    assert problem["field"] == "input.workflow.10.inputs.lora_name"
    assert "no bucket" in problem["problem"]
