"""Fixtures for the URL sources: moto's S3 and a web server, both on 127.0.0.1 and started here.

Every test that reads a URL gets an environment pointing at them only (``AWS_ENDPOINT_URL``), with
credentials set, so that no client looks for others on the network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.source.servers import FileServer, S3Server, running_s3

CLOUD_VARIABLES = ("AWS_", "GOOGLE_", "AZURE_")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """moto's S3, and an environment that points at it (and at nothing else)."""
    for name in list(os.environ):
        if name.startswith(CLOUD_VARIABLES):
            monkeypatch.delenv(name)
    for name, value in s3_server.environ.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def web() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server
