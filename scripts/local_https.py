#!/usr/bin/env python3
"""Serve a directory over real HTTPS as named hosts, in a private network namespace, and run
a command there: the appc discovery walk (``https://<name>?ac-discovery=1`` on port 443)
against real TLS, real DNS-by-/etc/hosts and a real server, touching nothing on the host.

    scripts/local_https.py --root DIR --host demo.trustd.test [--defer-signatures]
        [--conditional] [--max-age SECONDS] -- CMD...

Needs root (it unshares the network and mount namespaces, binds 127.0.0.1:443 inside and
bind-mounts its own /etc/hosts). ``DIR/<host>/<path>`` is served for each host; a request
with ``?ac-discovery=1`` for a path that is a directory gets that directory's ``index.html``.
The command runs with SSL_CERT_FILE pointing at the throw-away CA (world-readable, so an
unprivileged fetch child can read it). With ``--defer-signatures`` the first GET of each
``.asc`` answers 202 (rkt's deferred-signature protocol). Every file is sent with an ETag;
with ``--conditional`` a request naming it in If-None-Match gets 304 Not Modified, and with
``--max-age`` each file comes with ``Cache-Control: max-age=SECONDS`` (HTTP caching).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def _handler(
    root: Path, defer: bool, conditional: bool, max_age: int | None
) -> type[BaseHTTPRequestHandler]:
    deferred: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").split(":")[0]
            path = urlsplit(self.path).path.lstrip("/")
            target = (root / host / path).resolve()
            if not str(target).startswith(str(root.resolve())):
                self.send_error(403)
                return
            if target.is_dir():
                target = target / "index.html"
            if defer and path.endswith(".asc") and path not in deferred:
                deferred.add(path)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not target.is_file():
                self.send_error(404)
                return
            body = target.read_bytes()
            etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'  # the same in every run
            unchanged = conditional and self.headers.get("If-None-Match") == etag
            self.send_response(304 if unchanged else 200)
            self.send_header("Content-Length", "0" if unchanged else str(len(body)))
            self.send_header("ETag", etag)
            if max_age is not None:
                self.send_header("Cache-Control", f"max-age={max_age}")
            self.end_headers()
            if not unchanged:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    return Handler


def _inside(args: argparse.Namespace) -> int:
    import trustme  # noqa: PLC0415 - dev dependency, present in the venv

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(tempfile.mkdtemp(prefix="trustd-https-"))
    work.chmod(0o755)
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {h}\n" for h in args.host))
    hosts.chmod(0o644)
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    ca = trustme.CA()
    bundle = work / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    bundle.chmod(0o644)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*args.host).configure_cert(ctx)
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 443),
        _handler(Path(args.root), args.defer_signatures, args.conditional, args.max_age),
    )
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "SSL_CERT_FILE": str(bundle)}
        return subprocess.run(args.command, env=env, check=False).returncode
    finally:
        httpd.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", action="append", required=True)
    parser.add_argument("--defer-signatures", action="store_true")
    parser.add_argument("--conditional", action="store_true")
    parser.add_argument("--max-age", type=int)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if args.inside:
        return _inside(args)
    if os.geteuid() != 0:
        print("local_https.py: needs root (network and mount namespaces)", file=sys.stderr)
        return 254
    return subprocess.run(
        [
            "unshare",
            "--net",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            __file__,
            "--inside",
            *sys.argv[1:],
        ],
        check=False,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
