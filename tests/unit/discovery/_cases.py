"""The appc discovery vectors (tests/vectors/appc-spec/, see the README there)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trustd.unprivileged.discovery import ACIEndpoint
from trustd.unprivileged.transport import Response

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "appc-spec"
PAGES = VECTORS / "discovery" / "testdata"
#: A fixed value for the "per-host auth header" case (the vector leaves it open).
AUTH_VALUE = "Basic dHJ1c3RkOnRlc3Q="


@dataclass(frozen=True)
class Case:
    desc: str
    pages: dict[str, str]
    app: str
    labels: dict[str, str]
    aci_ok: bool
    keys_ok: bool
    aci: list[ACIEndpoint] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    auth: dict[str, str] = field(default_factory=dict)  # host -> Authorization value

    def page_for(self, path: str) -> bytes | None:
        """What the appc test server serves at ``path`` on example.com, or None (404)."""
        page = self.pages.get(path.rstrip("/"))
        return None if page is None else (PAGES / page).read_bytes()


def _case(raw: dict[str, Any]) -> Case:
    auth_hosts = raw.get("auth_header_for_host", {})
    return Case(
        desc=raw["desc"],
        pages=raw["pages"],
        app=raw["app"],
        labels=raw["labels"],
        aci_ok=raw["aci_ok"],
        keys_ok=raw["keys_ok"],
        aci=[ACIEndpoint(aci=a, asc=s) for a, s in raw.get("aci", [])],
        keys=list(raw.get("keys", [])),
        auth=dict.fromkeys(auth_hosts, AUTH_VALUE),
    )


def load_cases() -> list[Case]:
    data = json.loads((VECTORS / "discovery_cases.json").read_text())
    return [_case(raw) for raw in data["cases"]]


def serve(case: Case, url: str, headers: dict[str, str]) -> Response:
    """Answer ``url`` as the vector's server would (404 elsewhere, 401 on wrong auth)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in case.auth and headers.get("authorization") != case.auth[host]:
        return Response(url, 401, {}, b"")
    body = case.page_for(parts.path) if host == "example.com" else None
    if body is None:
        return Response(url, 404, {}, b"not found")
    return Response(url, 200, {"content-type": "text/html"}, body)
