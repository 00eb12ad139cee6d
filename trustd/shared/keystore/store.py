"""The keystore: rkt's directory layout, whole-segment prefix matching, local masking.

The keyring for an image name is the union of the root keys and the keys of every ancestor
prefix of the name, matched on whole path segments (docs/adr/0002), system level then local
level. A zero-byte local file named by a fingerprint masks the system key of that
fingerprint in the same scope. Broken key files are skipped and reported: skipping can only
remove trust, never add it, and it keeps one bad file from breaking unrelated prefixes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from trustd.shared._fsutil import atomic_write, read_capped
from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import LocalStateError, RefusedKeyError, TrustdError, UserError
from trustd.shared.keystore._layout import (
    FINGERPRINT_FILE,
    KEY_ID_FILE,
    Scope,
    docker_scope_of,
    scope_dir,
    scope_of,
    trustedkeys,
)
from trustd.shared.keystore.model import AddResult, AddStatus, KeyFile, RemoveResult, TrustedPem
from trustd.shared.ocisig.name import DockerName
from trustd.shared.ocisig.sigstore import PemKey, parse_pem_key
from trustd.shared.verify import (
    Keyring,
    PublicKey,
    TrustedKey,
    format_fingerprint,
    parse_public_keys,
)
from trustd.shared.verify.model import Level

MAX_KEY_FILE = 1 << 20


def _load_pem(record: KeyFile, data: bytes) -> KeyFile:
    try:
        pem = parse_pem_key(data, source=str(record.path))
    except TrustdError as exc:
        return replace(record, problem=exc.message)
    if pem.key_id != record.fingerprint:
        return replace(record, problem=f"key ID mismatch: file holds {pem.key_id}")
    return replace(record, pem=pem)


def _load_sigstore(record: KeyFile) -> KeyFile:
    try:
        data = read_capped(record.path, MAX_KEY_FILE)
    except (OSError, ValueError) as exc:
        return replace(record, problem=f"unreadable: {exc}")
    return replace(record, mask=True) if not data else _load_pem(record, data)


def _load(path: Path, scope: Scope, level: Level) -> KeyFile:
    fpr = path.name
    record = KeyFile(path=path, scope=scope, level=level, fingerprint=fpr)
    if isinstance(scope, DockerName) and KEY_ID_FILE.match(fpr):
        return _load_sigstore(record)
    if not FINGERPRINT_FILE.match(fpr):
        return replace(record, problem="not named by a 40-hex lowercase fingerprint")
    return _load_openpgp(record)


def _load_openpgp(record: KeyFile) -> KeyFile:
    path, fpr = record.path, record.fingerprint
    try:
        data = read_capped(path, MAX_KEY_FILE)
    except (OSError, ValueError) as exc:
        return replace(record, problem=f"unreadable: {exc}")
    if not data:
        return replace(record, mask=True)
    try:
        keys = parse_public_keys(data, source=str(path))
    except TrustdError as exc:
        return replace(record, problem=exc.message)
    key = next((k for k in keys if k.fingerprint == fpr), None)
    if key is None:
        return replace(record, problem=f"fingerprint mismatch: file holds {keys[0].fingerprint}")
    return replace(record, key=key)


class Keystore:
    """Trusted keys under ``<system-config>`` (read-only to us) and ``<local-config>``."""

    def __init__(self, system_config: Path, local_config: Path) -> None:
        self._dirs: dict[Level, Path] = {"system": system_config, "local": local_config}
        # After preload(): every scope directory as read then; a scope not in it has no keys.
        self._loaded: dict[tuple[Level, Scope], list[KeyFile]] | None = None

    def preload(self) -> None:
        """Read every key file now, with the caller's rights, and answer from memory from
        then on. Root calls this before its fetch child drops privileges, so a child that
        cannot read root-only config dirs (0700, as test harnesses make them) still judges
        with root's keys, and gets no way to write them (the files stay root's)."""
        loaded: dict[tuple[Level, Scope], list[KeyFile]] = {}
        for level, base in self._dirs.items():
            for scope in self._scopes(base):
                loaded[(level, scope)] = self._read(level, scope)
        self._loaded = loaded

    @property
    def config_dirs(self) -> tuple[Path, Path]:
        """(local, system) config directories, most specific first (for registries.d)."""
        return self._dirs["local"], self._dirs["system"]

    def _scan(self, level: Level, scope: Scope) -> list[KeyFile]:
        if self._loaded is not None:
            return list(self._loaded.get((level, scope), ()))
        return self._read(level, scope)

    def _reload(self, scope: Scope) -> None:
        """After add/remove: the preloaded view of ``scope`` is read again."""
        if self._loaded is not None:
            for level in self._dirs:
                self._loaded[(level, scope)] = self._read(level, scope)

    def _read(self, level: Level, scope: Scope) -> list[KeyFile]:
        directory = scope_dir(self._dirs[level], scope)
        try:
            names = sorted(e.name for e in os.scandir(directory) if not e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise LocalStateError(f"cannot read keystore directory {directory}: {exc}") from exc
        return [_load(directory / n, scope, level) for n in names if not n.startswith(".")]

    def scope_files(self, scope: Scope) -> list[KeyFile]:
        """System then local files of exactly one scope."""
        return self._scan("system", scope) + self._scan("local", scope)

    def keyring_for(self, name: ACIdentifier | DockerName) -> Keyring:
        """The keys trusted for ``name``: root keys plus every whole-segment ancestor's
        (for a Docker name, the ``docker.d`` prefixes: ``docker://host/ns`` and so on)."""
        keys: dict[str, TrustedKey] = {}
        problems: list[str] = []
        ancestors: tuple[Scope, ...] = name.ancestors()
        for scope in (None, *reversed(ancestors)):
            files = self.scope_files(scope)
            masked = {f.fingerprint for f in files if f.mask and f.level == "local"}
            for f in files:
                if f.problem:
                    problems.append(f"{f.path}: {f.problem}")
                elif f.key and not (f.level == "system" and f.fingerprint in masked):
                    keys.setdefault(f.fingerprint, TrustedKey(f.key, scope, f.level, f.path))
        return Keyring(subject=name, keys=tuple(keys.values()), problems=tuple(problems))

    def pem_keys_for(self, name: DockerName) -> tuple[TrustedPem, ...]:
        """The sigstore keys trusted for ``name``: every whole-segment ``docker://`` ancestor's."""
        keys: dict[str, TrustedPem] = {}
        for scope in reversed(name.ancestors()):
            files = self.scope_files(scope)
            masked = {f.fingerprint for f in files if f.mask and f.level == "local"}
            for f in files:
                if f.pem and not (f.level == "system" and f.fingerprint in masked):
                    keys.setdefault(f.fingerprint, TrustedPem(f.pem, scope, f.level, f.path))
        return tuple(keys.values())

    def add_pem(self, key: PemKey, scope: DockerName) -> AddResult:
        """Trust a sigstore public key for a ``docker://`` prefix (local config)."""
        directory = scope_dir(self._dirs["local"], scope)
        result = self._write(directory / key.key_id, key.pem.encode(), None, key)
        self._reload(scope)
        return result

    def has_prefix_keys(self, name: ACIdentifier | DockerName) -> bool:
        """rkt's TOFU guard: a key exists for ``name`` or an ancestor (root keys don't count)."""
        keyring = self.keyring_for(name)
        return any(k.scope is not None for k in keyring.keys)

    def entries(self) -> Iterator[KeyFile]:
        """Every key file of every scope, for ``rkt trust list``."""
        for level, base in self._dirs.items():
            for scope in self._scopes(base):
                yield from self._scan(level, scope)

    @staticmethod
    def _scopes(base: Path) -> Iterator[Scope]:
        """Every scope with a directory under ``base``: root, ACI prefixes, docker names."""
        yield None
        prefix_root = trustedkeys(base) / "prefix.d"
        for directory, _dirs, _files in sorted(os.walk(prefix_root)):
            if Path(directory) != prefix_root:
                yield scope_of(base, Path(directory))
        docker_root = trustedkeys(base) / "docker.d"
        for directory, _dirs, _files in sorted(os.walk(docker_root)):
            if Path(directory) != docker_root:
                scope = docker_scope_of(base, Path(directory))
                if scope is not None:
                    yield scope

    def add(self, key: PublicKey, scope: Scope) -> AddResult:
        """Trust ``key`` for ``scope`` (None: root) in the local config; refuse unusable keys."""
        refusal = key.refusal(datetime.now(UTC))
        if refusal:
            raise RefusedKeyError(
                f"not trusting key {format_fingerprint(key.fingerprint)}: it {refusal}",
                hint="ask the publisher for a current key",
            )
        directory = scope_dir(self._dirs["local"], scope)
        result = self._write(directory / key.fingerprint, key.armored.encode(), key, None)
        self._reload(scope)
        return result

    @staticmethod
    def _write(path: Path, data: bytes, key: PublicKey | None, pem: PemKey | None) -> AddResult:
        status: AddStatus = "added"
        if path.is_file() and path.stat().st_size > 0:
            if path.read_bytes() == data:
                return AddResult(path=path, status="already-trusted", key=key, pem=pem)
            status = "updated"
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            atomic_write(path, data, mode=0o644)
        except OSError as exc:
            raise LocalStateError(
                f"cannot write {path}: {exc.strerror}",
                hint="run as root or as a member of group rkt-admin",
            ) from exc
        return AddResult(path=path, status=status, key=key, pem=pem)

    def remove(self, fingerprint: str, scope: Scope) -> RemoveResult:
        """Stop trusting a key: delete the local file, mask a system one with a zero-byte file."""
        fpr = fingerprint.replace(" ", "").lower()
        pem_id = isinstance(scope, DockerName) and KEY_ID_FILE.match(fpr)
        if not (FINGERPRINT_FILE.match(fpr) or pem_id):
            raise UserError(
                f"{fingerprint!r} is not a 40-hex fingerprint (or, for a docker:// prefix, "
                "a 64-hex sigstore key ID)"
            )
        local = scope_dir(self._dirs["local"], scope) / fpr
        system = scope_dir(self._dirs["system"], scope) / fpr
        system_key = system.is_file() and system.stat().st_size > 0
        local_key = local.is_file() and local.stat().st_size > 0
        if not (system_key or local_key):
            where = "root" if scope is None else f'prefix "{scope}"'
            raise UserError(
                f"key {format_fingerprint(fpr)} is not trusted for {where}",
                hint="list trusted keys with: rkt trust list",
            )
        try:
            if system_key:
                local.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                atomic_write(local, b"", mode=0o644)
            else:
                local.unlink()
        except OSError as exc:
            raise LocalStateError(
                f"cannot change {local}: {exc.strerror}",
                hint="run as root or as a member of group rkt-admin",
            ) from exc
        self._reload(scope)
        return RemoveResult(path=local, masked_system_key=system_key)
