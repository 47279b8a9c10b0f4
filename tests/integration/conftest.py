"""One local endpoint with a worker, on the shared ComfyUI, for the tests that drive it from outside."""

from __future__ import annotations

import pytest

from client import EndpointClient
from tests.support.local_endpoint import API_KEY, running_endpoint


@pytest.fixture(scope="session")
def endpoint(comfyui, tmp_path_factory):
    """(base URL, log file) of the local endpoint; clients need API_KEY."""
    log_file = tmp_path_factory.mktemp("endpoint") / "endpoint.log"
    with running_endpoint(comfyui.env(), log_file) as base_url:
        yield base_url, log_file


@pytest.fixture
def client(endpoint) -> EndpointClient:
    return EndpointClient(endpoint[0], API_KEY)
