from comfy_worker.input_files import redact


def test_urls_are_shown_without_credentials_or_query():
    assert redact("https://user:pw@cdn.example.com/a/b.png?X-Amz-Signature=abc") == "https://cdn.example.com/a/b.png"
