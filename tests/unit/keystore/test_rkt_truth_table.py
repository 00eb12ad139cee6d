"""rkt's keystore truth table (keystore_test.go TestCheckSignature), ported.

The table speaks of which keys are in the keyring for an image name; we check that at the
keyring level for every case, then verify the real signature. Three of rkt's test keys carry
only SHA-1 self-signatures: where the table says "trusted" for one of those, trustd refuses
it as weak instead, and this test says so explicitly rather than dropping the case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ConfigDirs
from trustd.shared.appc import ACIdentifier
from trustd.shared.errors import RefusedKeyError, UntrustedSignerError
from trustd.shared.keystore import Keystore
from trustd.shared.verify import verify_detached

VECTORS = Path(__file__).parents[2] / "vectors/rkt/keystoretest"
TABLE: dict[str, Any] = json.loads((VECTORS / "keystore_cases.json").read_text())
KEYS: dict[str, Any] = json.loads((VECTORS / "keys.json").read_text())


def _fpr(name: str) -> str:
    return str(KEYS[name]["fingerprint"]).lower()


def _pub(name: str) -> bytes:
    return (VECTORS / f"{name.replace('/', '_')}.pub.asc").read_bytes()


@pytest.fixture
def keystore(config_dirs: ConfigDirs) -> Keystore:
    setup = TABLE["setup"]
    for prefix, keyname in setup["local_prefix_keys"].items():
        d = config_dirs.local / "trustedkeys/prefix.d" / prefix
        d.mkdir(parents=True)
        (d / _fpr(keyname)).write_bytes(_pub(keyname))
    for level, names in (
        (config_dirs.local, setup["local_root_keys"]),
        (config_dirs.system, setup["system_root_keys"]),
    ):
        d = level / "trustedkeys/root.d"
        d.mkdir(parents=True, exist_ok=True)
        for keyname in names:
            (d / _fpr(keyname)).write_bytes(_pub(keyname))
    for keyname in setup["masked_in_local_root"]:
        (config_dirs.local / "trustedkeys/root.d" / _fpr(keyname)).write_bytes(b"")
    return Keystore(config_dirs.system, config_dirs.local)


@pytest.mark.parametrize(
    "case", TABLE["cases"], ids=lambda c: f"{c['image_name']}<-{c['signed_by']}"
)
def test_truth_table(keystore: Keystore, case: dict[str, Any]) -> None:
    ring = keystore.keyring_for(ACIdentifier(case["image_name"]))
    signer = _fpr(case["signed_by"])
    in_ring = ring.find(signer)
    assert (in_ring is not None) is case["trusted"]

    sig = (VECTORS / f"message.data.sig-{case['signed_by'].replace('/', '_')}.asc").read_bytes()
    data = (VECTORS / "message.data").read_bytes()
    if not case["trusted"]:
        with pytest.raises(UntrustedSignerError):
            verify_detached(data, sig, ring)
    elif in_ring is not None and in_ring.key.weak_reason:
        assert "SHA-1" in in_ring.key.weak_reason
        with pytest.raises(RefusedKeyError, match="too weak"):
            verify_detached(data, sig, ring)
    else:
        assert verify_detached(data, sig, ring).signer == signer
