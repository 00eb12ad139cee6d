"""The image store through the fetch workflow and ``rkt image``: gate, dedupe, crash safety.

``rkt fetch`` run as root forks an unprivileged child (privsep); that path, and a real
user in group rkt, are tested in tests/integration/test_fetch_privsep.py. Here the workflow
is called in-process so these tests need neither root nor the rkt group.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from tests._aci import build_aci
from tests.conftest import ConfigDirs, Keys, snapshot
from tests.unit.store.conftest import NAME, fetch, rkt
from trustd.shared.appc.aci import copy_uncompressed
from trustd.shared.errors import BadSignatureError, LocalStateError, TrustdError
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.store import ImageStore, readmit


def fetch_id(dirs: ConfigDirs, _capsys: object, *args: str) -> str:
    full = "--full" in args
    key = fetch(dirs, *(a for a in args if a != "--full"))
    return key if full else key[:39]


def test_fetch_verifies_stores_and_records_provenance(
    config_dirs: ConfigDirs, signed: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    short = fetch_id(config_dirs, capsys, str(signed))
    assert short.startswith("sha512-") and len(short) == 7 + 32
    store = ImageStore.open(config_dirs.data)
    (record,) = store.images()
    assert record.name == NAME and record.label("version") == "1.0.0"
    assert record.provenance.signers == (keys.good.lower(),)
    assert record.provenance.insecure is False
    assert store.resolve(short) == record == store.resolve(f"{NAME}:1.0.0")
    uncompressed = io.BytesIO()
    copy_uncompressed(signed, uncompressed)
    assert record.digest == hashlib.sha512(uncompressed.getvalue()).hexdigest()

    assert rkt(config_dirs, "image", "list", "--format=json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["provenance"]["signers"] == [keys.good.upper()] == listed[0]["signers"]
    assert listed[0]["size"] == record.size and isinstance(listed[0]["size"], int)
    assert listed[0]["insecure"] is False


def test_fetching_twice_stores_once(
    config_dirs: ConfigDirs, signed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = fetch_id(config_dirs, capsys, str(signed))
    assert fetch_id(config_dirs, capsys, str(signed)) == first
    assert len(list((config_dirs.data / "cas/blob/sha512").glob("*/*"))) == 1


def test_parallel_fetches_both_succeed_and_store_once(
    config_dirs: ConfigDirs, signed: Path
) -> None:
    keys: list[str] = []
    threads = [
        threading.Thread(target=lambda: keys.append(fetch(config_dirs, str(signed))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 4 and len(set(keys)) == 1
    assert len(ImageStore.open(config_dirs.data).images()) == 1
    assert len(list((config_dirs.data / "cas/blob/sha512").glob("*/*"))) == 1


def _state(dirs: ConfigDirs) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(dirs.data).items() if not k.startswith("cas/db/")}


@pytest.mark.parametrize("case", ["tampered", "unsigned", "untrusted", "hostile"])
def test_refused_images_leave_the_store_unchanged(
    config_dirs: ConfigDirs,
    signed: Path,
    tmp_path: Path,
    keys: Keys,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    fetch_id(config_dirs, capsys, str(signed))
    before, records = _state(config_dirs), ImageStore.open(config_dirs.data).images()
    other = build_aci(tmp_path / "other.aci", NAME, files={"bin/hello": b"evil"})
    keys.gpg.sign(keys.rsa, other, tmp_path / "o.asc")  # rsa is not trusted for example.com
    args = {
        "tampered": [str(other), "--signature", str(signed) + ".asc"],
        "unsigned": [str(other)],
        "untrusted": [str(other), "--signature", str(tmp_path / "o.asc")],
        "hostile": [str(tmp_path / "hostile.aci"), "--signature", str(signed) + ".asc"],
    }[case]
    (tmp_path / "hostile.aci").write_bytes(b"\x1f\x8b" + b"\x00" * 64)
    with pytest.raises(TrustdError):
        fetch(config_dirs, *args)
    assert _state(config_dirs) == before
    assert ImageStore.open(config_dirs.data).images() == records


def test_insecure_import_is_recorded_as_such(
    config_dirs: ConfigDirs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aci = build_aci(tmp_path / "x.aci", "unsigned.example/x")
    fetch(config_dirs, str(aci), insecure=Insecure.IMAGE)
    (record,) = ImageStore.open(config_dirs.data).images()
    assert record.provenance.insecure and record.provenance.signers == ()


def test_killed_import_leftovers_are_invisible_and_cleaned(
    config_dirs: ConfigDirs, signed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ImageStore.open(config_dirs.data, create=True)
    stale = store.layout.tmp / "import-killed"
    stale.mkdir(mode=0o700)  # as a member's killed import leaves it
    (stale / "image.aci").write_bytes(b"half")
    if os.geteuid() == 0:
        os.chown(stale, 65534, -1)
    assert store.images() == []
    key = fetch_id(config_dirs, capsys, "--full", str(signed))
    orphan = store.layout.blob_dir(key)
    store.index.delete(key)  # as if killed after rename(2), before the index insert
    assert orphan.exists() and store.images() == []
    assert fetch_id(config_dirs, capsys, "--full", str(signed)) == key
    assert rkt(config_dirs, "image", "gc", "--grace-period=24h") == 0
    assert not stale.exists() and len(store.images()) == 1


def test_root_recheck_catches_a_rewritten_blob(
    config_dirs: ConfigDirs, signed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fetch_id(config_dirs, capsys, str(signed))
    store = ImageStore.open(config_dirs.data)
    (record,) = store.images()
    original, sig = store.original(record)
    keystore = Keystore(config_dirs.system, config_dirs.local)
    assert readmit(original, sig, keystore, record.digest).info.image_id.endswith(record.digest)
    original.chmod(0o644)
    build_aci(original, NAME, files={"bin/hello": b"swapped by a group member"})
    with pytest.raises(BadSignatureError):
        readmit(original, sig, keystore, record.digest)
    with pytest.raises(LocalStateError, match="not the recorded"):
        readmit(original, None, None, record.digest)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("sha512-", "image ID too short"),
        ("sha512-a", "image ID too short"),
        ("sha512-xyz", "no image IDs found"),
        ("nothere.example/x", "no image named"),
    ],
)
def test_image_id_rules(
    config_dirs: ConfigDirs,
    signed: Path,
    capsys: pytest.CaptureFixture[str],
    ref: str,
    message: str,
) -> None:
    fetch_id(config_dirs, capsys, str(signed))
    assert rkt(config_dirs, "image", "cat-manifest", ref) == 254
    assert message in capsys.readouterr().err


def test_rm_export_and_gc(
    config_dirs: ConfigDirs, signed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = fetch_id(config_dirs, capsys, str(signed))
    out = tmp_path / "export.aci"
    assert rkt(config_dirs, "image", "export", key, str(out)) == 0
    assert hashlib.sha512(out.read_bytes()).hexdigest().startswith(key[7:])
    assert rkt(config_dirs, "image", "export", key, str(out)) == 254
    assert rkt(config_dirs, "image", "gc", "--grace-period=1h") == 0
    assert len(ImageStore.open(config_dirs.data).images()) == 1
    assert rkt(config_dirs, "image", "rm", key) == 0
    assert f'successfully removed aci for image: "{key}' in capsys.readouterr().out
    assert ImageStore.open(config_dirs.data).images() == []
    assert list((config_dirs.data / "cas/blob/sha512").glob("*/*")) == []


def test_fetches_during_gc_all_succeed(config_dirs: ConfigDirs, signed: Path) -> None:
    """gc holds the store lock alone; imports share it: neither sees the other half-done."""
    store = ImageStore.open(config_dirs.data, create=True)
    results: list[str] = []
    errors: list[BaseException] = []

    def fetcher() -> None:
        try:
            results.append(fetch(config_dirs, str(signed)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def collector() -> None:
        for _ in range(5):
            store.gc(timedelta(0))

    threads = [threading.Thread(target=fetcher) for _ in range(3)]
    threads.append(threading.Thread(target=collector))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    for record in store.images():  # whatever survived is whole
        original, sig = store.original(record)
        assert original.stat().st_size == record.size and sig is not None


@pytest.mark.parametrize("what", ["cas/tmp", "cas/db", "cas/lock", "cas/imagelocks"])
def test_store_set_up_follows_no_symlink(
    config_dirs: ConfigDirs, tmp_path: Path, signed: Path, what: str
) -> None:
    """A symlink where a store directory or file should be is refused, naming it; its target
    keeps its mode (no chmod or chown went through it)."""
    fetch(config_dirs, str(signed))
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    (target / "f").write_bytes(b"")
    (target / "f").chmod(0o600)
    path = config_dirs.data / what
    path.rename(path.with_name(path.name + ".aside"))
    path.symlink_to(target / "f" if what == "cas/lock" else target)
    with pytest.raises(LocalStateError, match=path.name):
        fetch(config_dirs, str(signed))
    assert target.stat().st_mode & 0o7777 == 0o700
    assert (target / "f").stat().st_mode & 0o7777 == 0o600
    assert [p.name for p in target.iterdir()] == ["f"]
