"""A Docker image config, as an appc image manifest (docker2aci's mapping, squashed form).

exec = Entrypoint + Cmd; ``User`` "u:g" splits into user and group (a lone user is also the
group, as docker2aci does); Env, WorkingDir; ExposedPorts become ports named ``8080-tcp``;
Volumes become mountPoints named ``volume-<path>``; Labels become userLabels; the
``appc.io/docker/*`` annotations record where the image came from.

Deliberate differences from docker2aci: a relative exec[0] (``CMD ["sh"]``), which appc
refuses, is looked up on the image's PATH in the squashed tree; environment entries whose
name appc cannot carry are dropped with a warning; a ``created`` date that is not RFC 3339
is left out rather than failing the conversion.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final

from trustd.shared._dataclass import frozen
from trustd.shared.appc.aci import AciInfo, Compression
from trustd.shared.appc.manifest import VALID_OS_ARCH, parse_image_manifest
from trustd.shared.docker._squash import AciAccount, LayerRefused, Squasher, SquashLimits
from trustd.shared.docker.documents import DocumentError, ImageConfig, parse_config
from trustd.shared.errors import RemoteLiedError

AC_VERSION: Final = "0.8.11"
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_RFC3339: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
# Docker (GOARCH, variant) -> appc arch (appc's ToAppcOSArch)
_ARCH: Final = {
    ("amd64", ""): "amd64",
    ("386", ""): "i386",
    ("arm64", ""): "aarch64",
    ("arm64", "v8"): "aarch64",
    ("arm", "v6"): "armv6l",
    ("arm", "v7"): "armv7l",
    ("arm", ""): "armv7l",
    ("ppc64le", ""): "ppc64le",
    ("ppc64", ""): "ppc64",
    ("s390x", ""): "s390x",
}


@frozen
class Origin:
    """Where the image came from: the ACI name and the ``appc.io/docker/*`` facts."""

    name: str  # already a valid AC identifier
    tag: str | None
    registry_url: str = ""
    repository: str = ""
    original_name: str = ""
    image_id: str = ""  # docker image ID (config digest hex, or a legacy layer ID)
    parent_image_id: str = ""
    manifest_hash: str = ""


def sanitize_identifier(value: str) -> str:
    """appc's SanitizeACIdentifier: lowercase, anything else becomes ``-``, edges trimmed."""
    out = re.sub(r"[^a-z0-9\-._~/]+", "-", value.lower())
    out = re.sub(r"/{2,}", "/", out)
    return out.strip("-._~/")


def sanitize_name(value: str) -> str:
    """appc's SanitizeACName: ``[a-z0-9]+(-[a-z0-9]+)*``."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")


def appc_arch(config: ImageConfig, source: str) -> tuple[str, str]:
    arch = _ARCH.get((config.architecture, config.variant)) or _ARCH.get((config.architecture, ""))
    if config.os not in VALID_OS_ARCH or arch not in VALID_OS_ARCH[config.os]:
        raise DocumentError(
            source,
            "architecture",
            f"{config.os}/{config.architecture}{'/' + config.variant if config.variant else ''}"
            " has no appc os/arch equivalent",
        )
    return config.os, arch


def _user_group(user: str) -> tuple[str, str]:
    if not user:
        return "0", "0"
    name, sep, group = user.partition(":")
    return name, group if sep else name


def _environment(env: tuple[str, ...]) -> list[dict[str, str]]:
    out: dict[str, str] = {}
    for item in env:
        name, sep, value = item.partition("=")
        if not sep:
            continue
        if not _ENV_NAME.match(name):
            print(
                f"image: dropping environment variable {name!r}: not a valid name", file=sys.stderr
            )
            continue
        out[name] = value
    return [{"name": k, "value": v} for k, v in out.items()]


def _ports(exposed: tuple[str, ...], source: str) -> list[dict[str, Any]]:
    ports = []
    for spec in exposed:
        number, _, proto = spec.partition("/")
        if not number.isdigit() or not 1 <= int(number) <= 65535:
            raise DocumentError(source, "config.ExposedPorts", f"{spec!r} is not a port")
        ports.append(
            {
                "name": sanitize_name(spec),
                "protocol": proto or "tcp",
                "port": int(number),
                "count": 1,
                "socketActivated": False,
            }
        )
    return sorted(ports, key=lambda p: str(p["name"]))


def _mount_points(volumes: tuple[str, ...]) -> list[dict[str, str]]:
    seen: dict[str, int] = {}
    out = []
    for path in volumes:
        name = sanitize_name("volume/" + path.strip("/")) or "volume"
        if name in seen:
            seen[name] += 1
            name = f"{name}-{seen[name] - 1}"
        else:
            seen[name] = 1
        out.append({"name": name, "path": path})
    return sorted(out, key=lambda m: m["name"])


def resolve_exec(
    argv: list[str], env: list[dict[str, str]], exists: Callable[[str], bool]
) -> list[str]:
    """Make exec[0] absolute by looking it up on PATH in the image, as a shell would."""
    if not argv or argv[0].startswith("/"):
        return argv
    path = next((e["value"] for e in env if e["name"] == "PATH"), DEFAULT_PATH)
    for directory in path.split(":"):
        candidate = f"{directory.rstrip('/')}/{argv[0]}"
        if directory.startswith("/") and exists(candidate.lstrip("/")):
            return [candidate, *argv[1:]]
    raise RemoteLiedError(
        f"the image's command {argv[0]!r} is not an absolute path and is not found on its "
        f"PATH ({path})",
        hint="appc needs an absolute exec path; run it with --exec=/absolute/path",
    )


def build_manifest(
    config: ImageConfig, origin: Origin, exists: Callable[[str], bool], source: str
) -> bytes:
    """The appc image manifest (JSON bytes), checked by trustd's strict manifest parser."""
    os_name, arch = appc_arch(config, source)
    labels = [{"name": "os", "value": os_name}, {"name": "arch", "value": arch}]
    if origin.tag:
        labels.append({"name": "version", "value": origin.tag})
    env = _environment(config.env)
    user, group = _user_group(config.user)
    app: dict[str, Any] = {
        "exec": resolve_exec([*config.entrypoint, *config.cmd], env, exists) or None,
        "user": user,
        "group": group,
    }
    if config.working_dir:
        app["workingDirectory"] = "/" + config.working_dir.lstrip("/")
    if env:
        app["environment"] = env
    if config.volumes:
        app["mountPoints"] = _mount_points(config.volumes)
    if config.exposed_ports:
        app["ports"] = _ports(config.exposed_ports, source)
    if config.labels:
        app["userLabels"] = dict(config.labels)
    manifest = {
        "acKind": "ImageManifest",
        "acVersion": AC_VERSION,
        "name": origin.name,
        "labels": labels,
        "app": app,
        "annotations": _annotations(config, origin),
    }
    data = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    parse_image_manifest(data, source=f"{source} (converted manifest)")
    return data


def _annotations(config: ImageConfig, origin: Origin) -> list[dict[str, str]]:
    pairs = [
        ("authors", config.author),
        ("created", config.created if _RFC3339.match(config.created) else ""),
        ("appc.io/docker/originalname", origin.original_name),
        ("appc.io/docker/registryurl", origin.registry_url),
        ("appc.io/docker/repository", origin.repository),
        ("appc.io/docker/imageid", origin.image_id),
        ("appc.io/docker/parentimageid", origin.parent_image_id),
        ("appc.io/docker/manifesthash", origin.manifest_hash),
        (
            "appc.io/docker/entrypoint",
            json.dumps(list(config.entrypoint), separators=(",", ":")) if config.entrypoint else "",
        ),
        (
            "appc.io/docker/cmd",
            json.dumps(list(config.cmd), separators=(",", ":")) if config.cmd else "",
        ),
        ("appc.io/docker/tag", origin.tag or ""),
    ]
    return [{"name": k, "value": v} for k, v in pairs if v]


@frozen
class Converted:
    """The ACI :func:`convert` wrote, as it was written: its account and manifest bytes."""

    account: AciAccount
    manifest: bytes

    @property
    def image_id(self) -> str:
        return "sha512-" + self.account.sha512

    def info(self, source: str) -> AciInfo:
        """What :func:`~trustd.shared.appc.aci.inspect_aci` of the written ACI would say,
        from the account (the fetch side admits its own conversion without reading it back;
        root inspects its private copy before it renders anything)."""
        account = self.account
        return AciInfo(
            image_id=self.image_id,
            manifest=parse_image_manifest(self.manifest, source=f"{source}:manifest"),
            manifest_bytes=self.manifest,
            uncompressed_size=account.size,
            entry_count=account.entry_count,
            compression=Compression.NONE,
            has_setuid=bool(account.setuid_paths),
            setuid_paths=account.setuid_paths,
        )


def convert(
    pulled_layers: tuple[Callable[[], BinaryIO], ...],
    config_bytes: bytes,
    origin: Origin,
    out: BinaryIO,
    *,
    label: str,
    diff_ids: tuple[str, ...] = (),
    limits: SquashLimits | None = None,
) -> Converted:
    """Squash the layers and write the ACI (manifest first) to ``out``; say what was
    written (hashed and counted on its way out, not read back)."""
    config = parse_config(config_bytes, f"{label} (config)")
    expected = diff_ids or config.diff_ids
    name = getattr(out, "name", None)
    scratch = Path(name).parent if isinstance(name, str) else None  # beside the ACI: cas/tmp
    try:
        squash = Squasher(list(pulled_layers), limits, scratch)
    except LayerRefused as exc:  # too many layers
        raise _refused(label, exc) from exc
    try:
        return _squash(squash, out, expected=expected, label=label, config=config, origin=origin)
    finally:
        squash.close()


def _squash(
    squash: Squasher,
    out: BinaryIO,
    *,
    expected: tuple[str, ...],
    label: str,
    config: ImageConfig,
    origin: Origin,
) -> Converted:
    try:
        squash.read_layers()
        if expected and len(expected) == len(squash.diff_ids):
            for i, (want, got) in enumerate(zip(expected, squash.diff_ids, strict=True)):
                if want != got:
                    raise RemoteLiedError(
                        f"{label}: layer {i} does not match the config's diff_id: expected "
                        f"{want}, got {got}",
                        hint="the image's layers were altered; nothing was stored",
                    )
        squash.add_stdio_links()
        squash.check_symlinks()
    except LayerRefused as exc:
        raise _refused(label, exc) from exc
    manifest = build_manifest(config, origin, squash.exists, label)
    try:
        return Converted(squash.write(out, manifest), manifest)
    except LayerRefused as exc:
        raise _refused(label, exc) from exc


def _refused(label: str, exc: LayerRefused) -> RemoteLiedError:
    where = "" if exc.layer is None else f" layer {exc.layer}:"
    entry = f" entry {exc.entry!r}:" if exc.entry else ""
    return RemoteLiedError(
        f"docker image {label}:{where}{entry} {exc.reason} [{exc.rule}]",
        hint="do not run this image; a safe image never breaks this rule",
    )
