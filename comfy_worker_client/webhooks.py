"""Checking that a progress webhook's POST came from your endpoint.

The worker signs every POST to a job's `progress_webhook` with the endpoint's
PROGRESS_WEBHOOK_SECRET, as Stripe signs its webhooks:

    Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

`verify_webhook(secret, body, header)` returns the parsed body, or raises
`WebhookRejected` saying why (no or malformed header, wrong signature, too old: a
replayed POST). Pass the raw bytes of the body, before any JSON parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

DEFAULT_TOLERANCE_S = 300


class WebhookRejected(ValueError):
    """The POST is not a genuine, fresh webhook from the endpoint."""


def verify_webhook(
    secret: str,
    body: bytes,
    header: str | None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    if not header:
        raise WebhookRejected("no Webhook-Signature header")
    parts = dict(part.strip().partition("=")[::2] for part in header.split(","))
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or not given:
        raise WebhookRejected("the Webhook-Signature header is not 't=<seconds>,v1=<hex>'")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise WebhookRejected("the signature does not match (another secret, or the body was changed)")
    if abs(now() - int(timestamp)) > tolerance_s:
        raise WebhookRejected(f"the signature is older than {tolerance_s:g} s (a replayed POST?)")
    parsed: dict[str, Any] = json.loads(body)
    return parsed
