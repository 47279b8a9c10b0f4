import pytest

from comfy_worker.core import runpod_sdk
from comfy_worker.core.sources import BucketObject, WebFile
from comfy_worker.transfer.downloads import (
    DownloadRefused,
    NoBucket,
    PrivateAddress,
    TooLarge,
    is_public_address,
    open_source,
    refusal,
    refuse_if_proxied,
    resolve,
)
from tests.support.fake_store import FakeStore


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.9", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # the cloud metadata service
        ("100.64.0.1", False),  # shared address space (carrier-grade NAT)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),  # an IPv4-mapped private address
        ("::ffff:8.8.8.8", True),
        ("not-an-address", False),
    ],
)
def test_the_address_check_is_the_workers_own(address, public):
    assert is_public_address(address) is public


def test_the_refusals_are_the_workers_own_not_the_sdks():
    assert not any(kind.__module__.startswith("runpod") for kind in DownloadRefused.__mro__)
    assert issubclass(PrivateAddress, DownloadRefused)
    assert issubclass(TooLarge, DownloadRefused)


def test_a_proxy_is_refused_unless_private_addresses_are_allowed(monkeypatch):
    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(DownloadRefused) as info:
        refuse_if_proxied("https://cdn.example.com/a.png")
    assert "through a proxy" in str(info.value)
    assert "NO_PROXY" in str(info.value)
    monkeypatch.setenv("NO_PROXY", "cdn.example.com")
    refuse_if_proxied("https://cdn.example.com/a.png")  # fetched directly: the check holds
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    refuse_if_proxied("https://cdn.example.com/a.png")


def test_a_source_is_opened_by_its_url_or_through_its_buckets_signer():
    web = open_source(WebFile("https://cdn.example.com/a.png?sig=1"), 10, None)
    assert (web.url, web.private_origin, web.max_bytes) == ("https://cdn.example.com/a.png?sig=1", None, 10)
    bucket = FakeStore()
    bucket.private_origin = "http://minio.internal:9000"
    signed = open_source(BucketObject("inputs", "a/b.png"), 10, bucket)
    assert signed.url == "https://store.invalid/get/inputs/a/b.png"
    assert signed.private_origin == "http://minio.internal:9000"  # the operator's own endpoint may be private
    with pytest.raises(NoBucket):
        open_source(BucketObject("inputs", "a/b.png"), 10, None)


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
