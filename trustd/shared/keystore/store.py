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
from trustd.shared.keystore._layout import FINGERPRINT_FILE, scope_dir, scope_of, trustedkeys
from trustd.shared.keystore.model import AddResult, AddStatus, KeyFile, RemoveResult
from trustd.shared.verify import (
    Keyring,
    PublicKey,
    TrustedKey,
    format_fingerprint,
    parse_public_keys,
)
from trustd.shared.verify.model import Level

MAX_KEY_FILE = 1 << 20


def _load(path: Path, scope: ACIdentifier | None, level: Level) -> KeyFile:
    fpr = path.name
    record = KeyFile(path=path, scope=scope, level=level, fingerprint=fpr)
    if not FINGERPRINT_FILE.match(fpr):
        return replace(record, problem="not named by a 40-hex lowercase fingerprint")
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
        self._loaded: dict[tuple[Level, ACIdentifier | None], list[KeyFile]] | None = None

    def preload(self) -> None:
        """Read every key file now, with the caller's rights, and answer from memory from
        then on. Root calls this before its fetch child drops privileges, so a child that
        cannot read root-only config dirs (0700, as test harnesses make them) still judges
        with root's keys, and gets no way to write them (the files stay root's)."""
        loaded: dict[tuple[Level, ACIdentifier | None], list[KeyFile]] = {}
        for level, base in self._dirs.items():
            loaded[(level, None)] = self._read(level, None)
            prefix_root = trustedkeys(base) / "prefix.d"
            for directory, _dirs, _files in sorted(os.walk(prefix_root)):
                if Path(directory) != prefix_root:
                    scope = scope_of(base, Path(directory))
                    loaded[(level, scope)] = self._read(level, scope)
        self._loaded = loaded

    def _scan(self, level: Level, scope: ACIdentifier | None) -> list[KeyFile]:
        if self._loaded is not None:
            return list(self._loaded.get((level, scope), ()))
        return self._read(level, scope)

    def _reload(self, scope: ACIdentifier | None) -> None:
        """After add/remove: the preloaded view of ``scope`` is read again."""
        if self._loaded is not None:
            for level in self._dirs:
                self._loaded[(level, scope)] = self._read(level, scope)

    def _read(self, level: Level, scope: ACIdentifier | None) -> list[KeyFile]:
        directory = scope_dir(self._dirs[level], scope)
        try:
            names = sorted(e.name for e in os.scandir(directory) if not e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise LocalStateError(f"cannot read keystore directory {directory}: {exc}") from exc
        return [_load(directory / n, scope, level) for n in names if not n.startswith(".")]

    def scope_files(self, scope: ACIdentifier | None) -> list[KeyFile]:
        """System then local files of exactly one scope."""
        return self._scan("system", scope) + self._scan("local", scope)

    def keyring_for(self, name: ACIdentifier) -> Keyring:
        """The keys trusted for ``name``: root keys plus every whole-segment ancestor's."""
        keys: dict[str, TrustedKey] = {}
        problems: list[str] = []
        for scope in (None, *reversed(name.ancestors())):
            files = self.scope_files(scope)
            masked = {f.fingerprint for f in files if f.mask and f.level == "local"}
            for f in files:
                if f.problem:
                    problems.append(f"{f.path}: {f.problem}")
                elif f.key and not (f.level == "system" and f.fingerprint in masked):
                    keys.setdefault(f.fingerprint, TrustedKey(f.key, scope, f.level, f.path))
        return Keyring(subject=name, keys=tuple(keys.values()), problems=tuple(problems))

    def has_prefix_keys(self, name: ACIdentifier) -> bool:
        """rkt's TOFU guard: a key exists for ``name`` or an ancestor (root keys don't count)."""
        keyring = self.keyring_for(name)
        return any(k.scope is not None for k in keyring.keys)

    def entries(self) -> Iterator[KeyFile]:
        """Every key file of every scope, for ``rkt trust list``."""
        if self._loaded is not None:
            for files in self._loaded.values():
                yield from files
            return
        for level, base in self._dirs.items():
            yield from self._scan(level, None)
            prefix_root = trustedkeys(base) / "prefix.d"
            for directory, _dirs, _files in sorted(os.walk(prefix_root)):
                if Path(directory) != prefix_root:
                    yield from self._scan(level, scope_of(base, Path(directory)))

    def add(self, key: PublicKey, scope: ACIdentifier | None) -> AddResult:
        """Trust ``key`` for ``scope`` (None: root) in the local config; refuse unusable keys."""
        refusal = key.refusal(datetime.now(UTC))
        if refusal:
            raise RefusedKeyError(
                f"not trusting key {format_fingerprint(key.fingerprint)}: it {refusal}",
                hint="ask the publisher for a current key",
            )
        directory = scope_dir(self._dirs["local"], scope)
        path = directory / key.fingerprint
        data = key.armored.encode()
        status: AddStatus = "added"
        if path.is_file() and path.stat().st_size > 0:
            if path.read_bytes() == data:
                return AddResult(path=path, status="already-trusted", key=key)
            status = "updated"
        try:
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            atomic_write(path, data, mode=0o644)
        except OSError as exc:
            raise LocalStateError(
                f"cannot write {path}: {exc.strerror}",
                hint="run as root or as a member of group rkt-admin",
            ) from exc
        self._reload(scope)
        return AddResult(path=path, status=status, key=key)

    def remove(self, fingerprint: str, scope: ACIdentifier | None) -> RemoveResult:
        """Stop trusting a key: delete the local file, mask a system one with a zero-byte file."""
        fpr = fingerprint.replace(" ", "").lower()
        if not FINGERPRINT_FILE.match(fpr):
            raise UserError(f"{fingerprint!r} is not a 40-hex fingerprint")
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
