"""Which CNI network configurations root trusts, and where their plugins come from.

Built in (rkt Documentation/networking/overview.md): ``default`` (ptp, host-local IPAM on
172.16.28.0/24, default route, IP masquerading) and ``default-restricted`` (ptp, 172.17.0.0/16,
no route beyond the pod network, no masquerading). Named networks come from
``<local-config>/net.d/*.conf`` then ``<system-config>/net.d/*.conf`` (a name found in the
local dir wins; within a dir, lexicographic order, first wins; a file there may override a
built-in, as rkt allowed).

Root runs these plugins as root, so a config file is trusted only when it and its directory
(and every directory above) are root's and not group/other-writable; it is read by fd with no
symlink followed and a size cap. A plugin ``type`` is a bare name looked up only in the
root-owned ``/usr/lib/cni`` (never in net.d, where rkt also looked: ADR 0019).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from trustd.privileged import _dirfd
from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError, UserError

PLUGIN_DIR = Path("/usr/lib/cni")
STATE_ROOT = Path("/run/trustd")  # root-only; netns files and the host-wide IPAM leases
IPAM_DIR = STATE_ROOT / "cni" / "networks"
CNI_VERSION = "1.0.0"
MAX_CONFIG_BYTES = 64 << 10
_TYPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")

_BUILTIN: dict[str, dict[str, Any]] = {
    "default": {
        "cniVersion": CNI_VERSION,
        "name": "default",
        "type": "ptp",
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "subnet": "172.16.28.0/24",
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    },
    "default-restricted": {
        "cniVersion": CNI_VERSION,
        "name": "default-restricted",
        "type": "ptp",
        "ipMasq": False,
        "ipam": {"type": "host-local", "subnet": "172.17.0.0/16"},
    },
}


@frozen
class NetConf:
    """One network's configuration as root will send it to its plugin."""

    name: str
    type: str
    config: dict[str, Any]
    source: str  # "built-in" or the file it came from

    @property
    def version(self) -> str:
        return str(self.config["cniVersion"])

    def digest(self) -> str:
        return "sha256-" + hashlib.sha256(canonical(self.config)).hexdigest()


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _with_ipam_dir(config: dict[str, Any]) -> dict[str, Any]:
    """host-local keeps its leases under root's /run/trustd, never a shared default."""
    ipam = config.get("ipam")
    if isinstance(ipam, dict) and ipam.get("type") == "host-local" and "dataDir" not in ipam:
        config = {**config, "ipam": {**ipam, "dataDir": str(IPAM_DIR)}}
    return config


def _check(config: Any, source: str) -> NetConf:
    hint = f"fix {source}: a JSON object with string name and type, cniVersion 0.3.0 or later"
    if not isinstance(config, dict):
        raise LocalStateError(f"{source}: a network configuration must be a JSON object", hint=hint)
    name, kind = config.get("name"), config.get("type")
    if not isinstance(name, str) or not isinstance(kind, str) or not _TYPE.fullmatch(kind):
        raise LocalStateError(f"{source}: bad or missing name/type {name!r}/{kind!r}", hint=hint)
    config.setdefault("cniVersion", CNI_VERSION)
    if config["cniVersion"] not in _SUPPORTED_VERSIONS:
        raise LocalStateError(
            f"{source}: cniVersion {config['cniVersion']!r} is not supported", hint=hint
        )
    return NetConf(name, kind, _with_ipam_dir(config), source)


def _read_dir(directory: Path) -> list[NetConf]:
    try:
        dirfd = _dirfd.check_root_owned(directory)
    except FileNotFoundError:
        return []
    try:
        confs = []
        for entry in sorted(os.listdir(dirfd)):  # noqa: PTH208 - by fd, as checked
            if not entry.endswith(".conf") or entry.startswith("."):
                continue
            source = str(directory / entry)
            fd = _dirfd.open_beneath(dirfd, entry, os.O_RDONLY | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if st.st_uid != 0 or st.st_mode & 0o022 or not stat.S_ISREG(st.st_mode):
                raise LocalStateError(
                    f"{source} is owned by uid {st.st_uid} with mode "
                    f"{stat.S_IMODE(st.st_mode):o}: root runs CNI plugins from it, so it must "
                    "be a regular file owned by root and not writable by group or others",
                    hint=f"chown root {source} && chmod go-w {source}, or remove it",
                )
            data = _dirfd.read_beneath(dirfd, entry, MAX_CONFIG_BYTES)
            try:
                doc = json.loads(data)
            except ValueError as exc:
                raise LocalStateError(f"{source}: not JSON: {exc}", hint=f"fix {source}") from exc
            confs.append(_check(doc, source))
        return confs
    finally:
        os.close(dirfd)


def configured(local_config: Path, system_config: Path) -> dict[str, NetConf]:
    """Every network root may join: built-ins, overridden by system, then local files."""
    found: dict[str, NetConf] = {n: _check(dict(c), "built-in") for n, c in _BUILTIN.items()}
    for directory in (system_config / "net.d", local_config / "net.d"):
        seen: set[str] = set()
        for conf in _read_dir(directory):
            if conf.name not in seen:  # first in a dir wins; the local dir beats the system
                seen.add(conf.name)
                found[conf.name] = conf
    return found


def resolve(names: list[str], local_config: Path, system_config: Path) -> list[NetConf]:
    """The configurations for ``names`` (``all``: every configured one), in join order."""
    known = configured(local_config, system_config)
    if "all" in names:
        rest = [n for n in names if n != "all"]
        names = rest + sorted(n for n in known if n not in rest and n not in _BUILTIN)
        names += [n for n in ("default",) if n not in names and "default-restricted" not in names]
    missing = [n for n in names if n not in known]
    if missing:
        raise UserError(
            f"stage1: failed to setup network: network {missing[0]!r} not found in "
            f"{local_config / 'net.d'} or {system_config / 'net.d'}",
            hint="add a <name>.conf there (root-owned; *.conflist is not read, as in rkt), "
            "or use --net=default",
        )
    return [known[n] for n in names]


def plugin(kind: str) -> Path:
    """The plugin binary for ``type``: root's, not group/other-writable, in PLUGIN_DIR."""
    if not _TYPE.fullmatch(kind):
        raise LocalStateError(f"CNI plugin type {kind!r} is not a plain name")
    dirfd = _dirfd.check_root_owned(PLUGIN_DIR)
    try:
        try:
            st = os.stat(kind, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            raise UserError(
                f"stage1: failed to setup network: no CNI plugin {kind!r} in {PLUGIN_DIR}",
                hint="install containernetworking-plugins",
            ) from None
    finally:
        os.close(dirfd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise LocalStateError(
            f"{PLUGIN_DIR / kind} is not a regular file owned by root and not writable by "
            "group or others; root will not run it",
            hint="reinstall containernetworking-plugins",
        )
    return PLUGIN_DIR / kind


def ensure_state_dir(path: Path) -> None:
    """``path`` (under /run/trustd) exists, root's, mode 0700 all the way down."""
    for part in [p for p in reversed(path.parents) if STATE_ROOT in (p, *p.parents)] + [path]:
        with contextlib.suppress(FileExistsError):
            part.mkdir(0o700)
        st = os.lstat(part)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
            raise LocalStateError(
                f"{part} must be a directory owned by root, mode 0700",
                hint=f"remove {part}; trustd recreates it",
            )
