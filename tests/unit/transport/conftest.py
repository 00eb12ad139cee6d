"""Fixtures for the transport tests: a trustme CA and real local HTTP(S) servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests._https import LOCAL_NAMES, LocalServer, trust_ca


@pytest.fixture(scope="session")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def trusted(ca: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """SSL_CERT_FILE points at the trustme CA for the duration of the test."""
    return trust_ca(monkeypatch, ca, tmp_path)


@pytest.fixture
def https_server(ca: Any, trusted: Path) -> Iterator[LocalServer]:
    with LocalServer(tls=ca.issue_cert(*LOCAL_NAMES)) as srv:
        yield srv


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    with LocalServer() as srv:
        yield srv
