import pytest

from comfy_worker.core import runpod_sdk
from comfy_worker.transfer.downloads import PrivateAddress, TooLarge, redact, refusal, resolve


def test_urls_are_shown_without_credentials_or_query():
    assert redact("https://user:pw@cdn.example.com/a/b.png?X-Amz-Signature=abc") == "https://cdn.example.com/a/b.png"


def test_the_sdk_names_the_worker_uses_are_there():
    # runpod is pinned in requirements.txt: a new SDK version that renames them fails here and
    # at the worker's start (runpod_sdk.check), not in a job.
    runpod_sdk.check()


def test_a_missing_sdk_name_is_named_with_the_version_to_install(monkeypatch):
    monkeypatch.setitem(runpod_sdk._NAMES, ("runpod.serverless.utils.rp_ssrf", "_gone_in_2_0"), "gone")
    with pytest.raises(runpod_sdk.SDKMismatch) as info:
        runpod_sdk.check()
    assert "runpod.serverless.utils.rp_ssrf._gone_in_2_0" in str(info.value)
    assert "runpod 1.12.0" in str(info.value)


def test_refusals_are_told_apart_by_type_not_by_message(monkeypatch):
    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)
    with pytest.raises(PrivateAddress) as info:
        resolve("127.0.0.1", 80)
    assert refusal(info.value).endswith("(set RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=true to allow private addresses)")
    assert "RUNPOD_ALLOW_PRIVATE" not in refusal(TooLarge("the body is over the cap of 10 bytes"))
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    assert resolve("127.0.0.1", 80) == ["127.0.0.1"]
