"""The verifier's HTTPS client: one challenge to one attester, bounded in size and time."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

from trustd.shared.errors import RemoteLiedError, UserError

MAX_ANSWER = 160 << 20  # logs up to 64 MiB, base64 and JSON around them
TIMEOUT = 60.0
API = "v2.1"


def tls_client(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def challenge(url: str, nonce: bytes, pcrs: list[int], context: ssl.SSLContext) -> dict[str, Any]:
    """``GET /v2.1/quotes/integrity`` on ``url``; the ``results`` document, not yet trusted."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise UserError(f"{url!r} is not an https:// URL", hint="rkt attest serve speaks HTTPS")
    mask = sum(1 << p for p in pcrs)
    target = f"{parts.path.rstrip('/')}/{API}/quotes/integrity?nonce={nonce.hex()}&mask={mask:#x}"
    conn = http.client.HTTPSConnection(
        parts.hostname, parts.port or 9002, timeout=TIMEOUT, context=context
    )
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        body = response.read(MAX_ANSWER + 1)
    except ssl.SSLError as exc:
        raise UserError(
            f"TLS with {url} failed: {exc.reason or exc}",
            hint="pass the attester's CA with --ca (and --client-cert/--client-key for mutual TLS)",
        ) from None
    except OSError as exc:
        raise UserError(f"cannot reach the attester {url}: {exc}") from None
    finally:
        conn.close()
    if len(body) > MAX_ANSWER:
        raise RemoteLiedError(f"the attester {url} sent more than {MAX_ANSWER} bytes")
    try:
        doc = json.loads(body)
    except ValueError:
        raise RemoteLiedError(
            f"the attester {url} answered with something other than JSON"
        ) from None
    if not isinstance(doc, dict):
        raise RemoteLiedError(f"the attester {url} answered with a JSON {type(doc).__name__}")
    if response.status != 200:
        raise UserError(f"the attester {url} refused: {response.status} {doc.get('status')}")
    results = doc.get("results")
    if not isinstance(results, dict):
        raise RemoteLiedError(f"the attester {url} sent no results object")
    return results
