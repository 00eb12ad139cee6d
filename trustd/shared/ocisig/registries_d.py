"""Where simple signatures live: containers/image's ``registries.d`` (containers-registries.d(5)).

Every ``*.yaml`` file of the directory is read (in name order) and merged: ``default-docker``
may be set by one file only, and each ``docker`` namespace by one file only (a second one is
an error, as upstream). A namespace is ``host[:port][/path]``; the most specific namespace
that contains the image on whole segments applies, else ``default-docker``. Its ``lookaside``
(or the older name ``sigstore``) is the read URL; ``lookaside-staging`` (``sigstore-staging``)
is where signers write, and is used for reading when no read URL is set (as upstream).
``use-sigstore-attachments`` turns on reading cosign signatures from the registry.

The signature URLs are ``<base>/<path>@<algo>=<hex>/signature-<n>`` for n = 1, 2, ... (the
path is the repository without its registry), read until the first missing one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError, TrustdError, excerpt
from trustd.shared.ocisig.name import DockerName

MAX_FILE = 1 << 20
_ENTRY_KEYS = frozenset(
    {"lookaside", "lookaside-staging", "sigstore", "sigstore-staging", "use-sigstore-attachments"}
)
_SCHEMES = ("http", "https", "file")


@frozen
class Lookaside:
    """One namespace's signature storage settings."""

    read: str | None = None
    write: str | None = None
    attachments: bool = False


@frozen
class RegistriesD:
    default: Lookaside = field(default_factory=Lookaside)
    namespaces: dict[DockerName, Lookaside] = field(default_factory=dict)

    def for_name(self, name: DockerName) -> Lookaside:
        """The most specific namespace's settings for ``name`` (whole segments), or default."""
        for candidate in name.ancestors():
            if candidate in self.namespaces:
                return self.namespaces[candidate]
        return self.default


def _bad(source: str, where: str, why: str) -> LocalStateError:
    return LocalStateError(
        f"{source}: {where} {why}",
        hint="fix the file (containers-registries.d(5): lookaside URLs per namespace)",
    )


def _url(value: object, source: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(source, where, "is not a URL string")
    scheme, sep, _rest = value.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme not in _SCHEMES:
        raise _bad(source, where, f"has scheme {excerpt(scheme)} (http, https or file)")
    return value.rstrip("/")


def _entry(value: object, source: str, where: str) -> Lookaside:
    if value is None:
        return Lookaside()
    if not isinstance(value, dict):
        raise _bad(source, where, "is not a mapping")
    unknown = sorted(str(k) for k in value if k not in _ENTRY_KEYS)
    if unknown:
        raise _bad(source, where, f"has the unknown key {excerpt(unknown[0])}")
    urls = {
        k: _url(v, source, f"{where}.{k}")
        for k, v in value.items()
        if k in _ENTRY_KEYS - {"use-sigstore-attachments"}
    }
    attachments = value.get("use-sigstore-attachments", False)
    if not isinstance(attachments, bool):
        raise _bad(source, f"{where}.use-sigstore-attachments", "is not true or false")
    write = urls.get("lookaside-staging") or urls.get("sigstore-staging")
    read = urls.get("lookaside") or urls.get("sigstore") or write
    return Lookaside(read=read, write=write, attachments=attachments)


def _namespace(key: object, source: str) -> DockerName:
    if not isinstance(key, str):
        raise _bad(source, "docker", f"has the non-string key {excerpt(str(key))}")
    try:
        return DockerName.parse(key)
    except TrustdError as exc:
        raise _bad(source, f"docker.{excerpt(key)}", f"is not a namespace: {exc.message}") from exc


def parse_registries_file(
    text: str, source: str
) -> tuple[Lookaside | None, dict[DockerName, Lookaside]]:
    """One file's ``default-docker`` (None when absent) and ``docker`` namespaces."""
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _bad(source, "the file", f"is not YAML: {str(exc).splitlines()[0]}") from exc
    if doc is None:
        return None, {}
    if not isinstance(doc, dict):
        raise _bad(source, "the file", "is not a mapping")
    default = (
        _entry(doc["default-docker"], source, "default-docker") if "default-docker" in doc else None
    )
    docker = doc.get("docker") or {}
    if not isinstance(docker, dict):
        raise _bad(source, "docker", "is not a mapping")
    namespaces: dict[DockerName, Lookaside] = {}
    for key, value in docker.items():
        name = _namespace(key, source)
        if name in namespaces:
            raise _bad(source, f"docker.{excerpt(str(key))}", "is configured twice")
        namespaces[name] = _entry(value, source, f"docker.{key}")
    return default, namespaces


def merge(files: Iterable[tuple[str, str]]) -> RegistriesD:
    """Merge ``(source, text)`` pairs; a setting made by two files is an error naming both."""
    default: Lookaside | None = None
    default_from = ""
    namespaces: dict[DockerName, Lookaside] = {}
    origin: dict[DockerName, str] = {}
    for source, text in files:
        file_default, file_namespaces = parse_registries_file(text, source)
        if file_default is not None:
            if default is not None:
                raise _bad(source, "default-docker", f"is also set in {default_from}")
            default, default_from = file_default, source
        for name, entry in file_namespaces.items():
            if name in namespaces:
                raise _bad(source, f"docker.{name.text}", f"is also configured in {origin[name]}")
            namespaces[name], origin[name] = entry, source
    return RegistriesD(default or Lookaside(), namespaces)


def load_registries_d(directories: Iterable[Path]) -> RegistriesD:
    """The first of ``directories`` that exists (local config replaces system config, like
    policy.toml), every ``*.yaml`` in it; none: no lookaside anywhere."""
    for directory in directories:
        if not directory.is_dir():
            continue
        files = []
        for path in sorted(directory.glob("*.yaml")):
            try:
                with path.open("rb") as f:
                    data = f.read(MAX_FILE + 1)
            except OSError as exc:
                raise LocalStateError(f"cannot read {path}: {exc.strerror}") from exc
            if len(data) > MAX_FILE:
                raise _bad(str(path), "the file", f"is larger than {MAX_FILE} bytes")
            try:
                files.append((str(path), data.decode("utf-8")))
            except UnicodeDecodeError as exc:
                raise _bad(str(path), "the file", "is not UTF-8") from exc
        return merge(files)
    return RegistriesD()


def signature_url(base: str, name: DockerName, manifest_digest: str, index: int) -> str:
    """containers/image's lookaside layout; ``index`` counts from 1."""
    algo, _, hexdigest = manifest_digest.partition(":")
    return f"{base}/{name.path}@{algo}={hexdigest}/signature-{index}"
