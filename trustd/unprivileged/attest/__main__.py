"""``python -I -m trustd.unprivileged.attest --config-fd=3 --listen-fd=4 --challenge-fd=5
--answer-fd=6``: the attester's HTTPS server.

Started by root (trustd/privileged/executor/_attestd.py) as ``rkt-attest`` with no
capabilities. fd 3 carries the TLS certificate, key and optional client CA as one JSON
document; fd 4 is the listening socket; fds 5 and 6 are the pipes to root's quoter. Non-dumpable
before it reads the key.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

from trustd.shared.isolation import set_undumpable
from trustd.unprivileged.attest.server import AttesterServer, Bridge, tls_context
from trustd.unprivileged.mds.__main__ import _confined, _read_all


def main(argv: list[str] | None = None) -> int:
    set_undumpable()
    if (why := _confined()) is not None:
        print(f"attester: refusing to serve: {why}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="trustd.unprivileged.attest")
    for name in ("config", "listen", "challenge", "answer"):
        parser.add_argument(f"--{name}-fd", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        config = json.loads(_read_all(args.config_fd))
        context = tls_context(config["cert"], config["key"], config["client_ca"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        print(f"attester: bad TLS configuration: {exc}", file=sys.stderr)
        return 2
    bridge = Bridge(os.fdopen(args.challenge_fd, "wb"), os.fdopen(args.answer_fd, "rb"))
    server = AttesterServer(socket.socket(fileno=args.listen_fd), context, bridge)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
