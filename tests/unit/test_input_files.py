from comfy_worker.input_files import redact


def test_urls_are_shown_without_credentials_or_query():
    assert redact("https://user:pw@cdn.example.com/a/b.png?X-Amz-Signature=abc") == "https://cdn.example.com/a/b.png"


def test_the_sdk_building_blocks_that_per_host_headers_use_are_there():
    # input_files._safe_get_with_host_headers repeats safe_get's loop with these (runpod pinned in
    # requirements.txt): a new SDK version that renames them fails here, not in a job.
    from runpod.serverless.utils import rp_ssrf

    for name in (
        "_refuse_if_proxied",
        "resolve_and_validate",
        "_get_via_first_reachable_ip",
        "_REDIRECT_STATUS",
        "_close_session_quietly",
        "_bind_session_to_response",
        "_enforce_content_length",
    ):
        assert hasattr(rp_ssrf, name), name
