"""Running one CNI plugin as the CNI spec says (SPEC.md, "Execution Protocol").

The plugin is executed (never a shell) with an environment built from nothing: ``PATH`` and
the ``CNI_*`` variables (``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``,
``CNI_ARGS``, ``CNI_PATH``); the network configuration is its stdin. Its stdout is read with a
size cap and a deadline, and decoded strictly: a result must be a JSON object whose known
fields have the spec's types, an error is ``{code, msg, details}``.
"""

from __future__ import annotations

import json
import os
import selectors
import time
from typing import TYPE_CHECKING, Any, Literal

from trustd.privileged.net._config import PLUGIN_DIR, NetConf, canonical, plugin
from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError
from trustd.shared.request import ROOT_PATH

if TYPE_CHECKING:
    import subprocess

Command = Literal["ADD", "DEL", "CHECK"]
MAX_OUTPUT = 256 << 10
TIMEOUT_SECONDS = 60.0


@frozen
class IPConfig:
    address: str  # CIDR
    gateway: str | None


@frozen
class Result:
    """The parts of a CNI result trustd uses; ``raw`` is passed on as ``prevResult``."""

    ips: tuple[IPConfig, ...]
    host_interfaces: tuple[str, ...]  # interfaces the plugin made outside the pod (no sandbox)
    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    domain: str | None
    options: tuple[str, ...]
    raw: dict[str, Any]


def _strs(doc: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LocalStateError(f"{where}: {key!r} must be a list of strings")
    return tuple(value)


def _objects(doc: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise LocalStateError(f"{where}: {key!r} must be a list of objects")
    return value


def _opt_str(doc: dict[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise LocalStateError(f"{where}: {key!r} must be a string")
    return value


def parse_result(data: bytes, where: str) -> Result:
    """A plugin's ADD result, strictly: every field trustd reads is type-checked."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise LocalStateError(f"{where}: the result is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise LocalStateError(f"{where}: the result must be a JSON object")
    ips = []
    for ip in _objects(doc, "ips", where):
        address = _opt_str(ip, "address", where)
        if address is None:
            raise LocalStateError(f"{where}: an ips entry has no address")
        ips.append(IPConfig(address, _opt_str(ip, "gateway", where)))
    host = tuple(
        str(i["name"])
        for i in _objects(doc, "interfaces", where)
        if isinstance(i.get("name"), str) and not i.get("sandbox")
    )
    dns = doc.get("dns", {})
    if not isinstance(dns, dict):
        raise LocalStateError(f"{where}: 'dns' must be an object")
    return Result(
        ips=tuple(ips),
        host_interfaces=host,
        nameservers=_strs(dns, "nameservers", where),
        search=_strs(dns, "search", where),
        domain=_opt_str(dns, "domain", where),
        options=_strs(dns, "options", where),
        raw=doc,
    )


def _error(data: bytes, status: int) -> str:
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("msg"), str):
        details = doc.get("details")
        extra = f": {details}" if isinstance(details, str) and details else ""
        return f"{doc['msg'][:500]}{extra[:500]} (CNI error code {doc.get('code')})"
    return f"exit status {status}, output {data[:300]!r}"


def _communicate(proc: subprocess.Popen[bytes], stdin: bytes) -> tuple[bytes, bytes]:
    """stdout and stderr, each capped at MAX_OUTPUT, within TIMEOUT_SECONDS; else killed."""
    assert proc.stdin and proc.stdout and proc.stderr  # noqa: S101 - all three are pipes
    proc.stdin.write(stdin)
    proc.stdin.close()
    out: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    sizes = dict.fromkeys(out, 0)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    with selectors.DefaultSelector() as sel:
        for f in (proc.stdout, proc.stderr):
            sel.register(f, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait()
                raise LocalStateError(f"CNI plugin {proc.args!r} ran over {TIMEOUT_SECONDS:.0f}s")
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                sizes[key.fd] += len(chunk)
                if sizes[key.fd] > MAX_OUTPUT:
                    proc.kill()
                    proc.wait()
                    raise LocalStateError(f"CNI plugin {proc.args!r} wrote over {MAX_OUTPUT} bytes")
                out[key.fd].append(chunk)
    proc.wait()
    return b"".join(out[proc.stdout.fileno()]), b"".join(out[proc.stderr.fileno()])


def execute(
    command: Command,
    conf: NetConf,
    config: dict[str, Any],
    *,
    container_id: str,
    netns: str,
    ifname: str,
    cni_args: str = "",
) -> bytes:
    """Run ``conf``'s plugin with ``config`` on stdin; its stdout, or LocalStateError."""
    path = plugin(str(config["type"]))
    env = {
        "PATH": ROOT_PATH,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": str(PLUGIN_DIR),
    }
    if cni_args:
        env["CNI_ARGS"] = cni_args
    import subprocess  # noqa: PLC0415 - only with CNI networks (issue #14)

    proc = subprocess.Popen(  # noqa: S603 - a root-owned binary in PLUGIN_DIR, no shell
        [str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd="/",
        close_fds=True,
    )
    stdout, stderr = _communicate(proc, canonical(config))
    if proc.returncode != 0:
        raise LocalStateError(
            f"stage1: failed to setup network: network {conf.name!r}: {command} "
            f"{path.name}: {_error(stdout or stderr, proc.returncode)}",
            hint=f"check the network's configuration ({conf.source})",
        )
    return stdout
