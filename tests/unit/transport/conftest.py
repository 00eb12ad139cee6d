"""Fixtures for the transport tests: a trustme CA and real local HTTP(S) servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._https import LocalServer


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    with LocalServer() as srv:
        yield srv
