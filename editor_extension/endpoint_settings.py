"""The editor's endpoint settings, kept by ComfyUI's server in its user folder (file mode 600).

`EndpointSettings(path)` holds the endpoint ID, the base URL (instead of an ID, e.g. the
local endpoint's) and the API keys, each under the endpoint URL it was saved with, so a key
is never sent to a URL the user did not give together with it. The page sees only
`public()`: whether a key is set, never the key. A wrong value raises `ValueError` saying
what to change.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .endpoint_client import client

ENDPOINT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


class EndpointSettings:
    def __init__(self, path: Path):
        self.path = path
        self._stored: dict[str, Any] | None = None  # the file, read once

    def read(self) -> dict[str, Any]:
        """`endpoint_id`, `base_url`, and `keys` (endpoint URL -> key). A file of an older
        version, with one `api_key`, reads as that key for the endpoint it was saved beside."""
        if self._stored is None:
            try:
                stored = json.loads(self.path.read_text())
            except (OSError, ValueError):
                stored = {}
            stored = stored if isinstance(stored, dict) else {}
            settings: dict[str, Any] = {key: str(stored[key]) for key in ("endpoint_id", "base_url") if stored.get(key)}
            keys: dict[str, Any] = stored["keys"] if isinstance(stored.get("keys"), dict) else {}
            settings["keys"] = {str(url): str(key) for url, key in keys.items() if key}
            if stored.get("api_key") and endpoint_url(settings):
                settings["keys"].setdefault(endpoint_url(settings), str(stored["api_key"]))
            self._stored = settings
        return {**self._stored, "keys": dict(self._stored["keys"])}

    def public(self) -> dict[str, Any]:
        stored = self.read()
        return {
            "endpoint_id": stored.get("endpoint_id", ""),
            "base_url": stored.get("base_url", ""),
            "has_key": endpoint_url(stored) in stored["keys"],
        }

    def save(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Saves the changes; `public()` after them. A change of endpoint without a key
        leaves the new endpoint keyless."""
        stored = self.read()
        for key in ("endpoint_id", "base_url"):
            if key in changes:
                value = str(changes[key] or "").strip()
                if value:
                    stored[key] = value
                else:
                    stored.pop(key, None)
        if stored.get("base_url") and not stored["base_url"].startswith(("http://", "https://")):
            raise ValueError("the base URL must start with http:// or https://")
        if stored.get("endpoint_id") and not ENDPOINT_ID.fullmatch(stored["endpoint_id"]):
            raise ValueError("the endpoint ID is letters, digits, '-' and '_' only (RunPod's console shows it)")
        if "api_key" in changes:
            api_key = str(changes["api_key"] or "").strip()
            if not endpoint_url(stored):
                if api_key:
                    raise ValueError(
                        "set the endpoint ID (or a base URL) before its API key: a key is kept for one endpoint"
                    )
            elif api_key:
                stored["keys"][endpoint_url(stored)] = api_key
            else:
                stored["keys"].pop(endpoint_url(stored), None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(stored, file)
        self._stored = stored
        return self.public()

    def endpoint(self) -> tuple[str, str | None]:
        """The endpoint's URL and the key saved with this very URL, if any; `ValueError` if none is set."""
        stored = self.read()
        base = endpoint_url(stored)
        if not base:
            raise ValueError("no endpoint set: give the endpoint ID (or a base URL) in Settings > RunPod")
        return base, stored["keys"].get(base)


def endpoint_url(settings: Mapping[str, Any]) -> str:
    """The endpoint the settings name: the base URL, else RunPod's URL of the endpoint ID; "" if neither."""
    if settings.get("base_url"):
        return str(settings["base_url"]).rstrip("/")
    if settings.get("endpoint_id"):
        return f"{client.RUNPOD_API}/{settings['endpoint_id']}"
    return ""
