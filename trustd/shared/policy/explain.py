"""``rkt policy explain``: offline, for a name or a stored image, what the policy says and why."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from trustd.shared.keystore import Keystore
from trustd.shared.keystore.model import TrustedPem
from trustd.shared.policy._profiles import digest_for, unconfined_digest
from trustd.shared.policy._signers import keystore_key
from trustd.shared.policy.decide import Decision, decide_fetch
from trustd.shared.policy.model import Policy
from trustd.shared.policy.scopes import ImageRef, resolve
from trustd.shared.store.model import ImageRecord
from trustd.shared.verify import PublicKey, format_fingerprint


def _key(
    fpr: str, via: str, key: PublicKey | None, not_after: datetime | None, now: datetime
) -> dict[str, str]:
    state = "usable"
    if key is None:
        state = "missing from the keystore"
    elif refusal := key.refusal(now):
        state = refusal
    elif not_after is not None and not_after <= now:
        state = "pin expired"
    expires = key.expires.isoformat() if key and key.expires else ""
    return {"fingerprint": format_fingerprint(fpr), "via": via, "state": state, "expires": expires}


def _pem(pem: TrustedPem) -> dict[str, str]:
    return {
        "fingerprint": pem.key.key_id,
        "via": f"keystore {pem.scope_text} (sigstore {pem.key.algorithm})",
        "state": "usable",
        "expires": "",
    }


def _seccomp_digests(policy: Policy, entries: tuple[str, ...]) -> dict[str, str]:
    """Each allowed filter's spec digest: what the run gate compares and the TPM event records
    (``any`` has none; ``unconfined`` is the empty filter's)."""
    out: dict[str, str] = {}
    for entry in entries:
        digest, problem = digest_for(policy, entry)
        if entry == "unconfined":
            digest = unconfined_digest()
        out[entry] = digest or problem or "(any filter)"
    return out


def explain(
    policy: Policy,
    ref: ImageRef,
    keystore: Keystore,
    now: datetime,
    record: ImageRecord | None = None,
) -> dict[str, Any]:
    """Everything ``explain`` prints, as one JSON-able document."""
    res = resolve(policy, ref)
    scope = policy.scope(res.scope)
    keys: list[dict[str, str]] = []
    if scope.require.type == "signed":
        if scope.require.keystore:
            docker = ref.docker_name
            ring = keystore.keyring_for(docker if docker is not None else ref.name)
            for t in ring.keys:
                keys.append(_key(t.key.fingerprint, f"keystore {t.scope_text}", t.key, None, now))
            for pem in keystore.pem_keys_for(docker) if docker is not None else ():
                keys.append(_pem(pem))
        for pin in scope.require.fingerprints:
            found = keystore_key(keystore, pin.fingerprint)
            keys.append(_key(pin.fingerprint, "pinned", found, pin.not_after, now))
    doc: dict[str, Any] = {
        "image": ref.typed,
        "docker_name": str(ref.docker_name or ""),
        "policy": {"source": policy.source, "digest": policy.digest},
        "scope": res.scope,
        "shadows": list(res.shadowed),
        "mode": scope.mode,
        "exception": None
        if scope.exception is None
        else {
            "owner": scope.exception.owner,
            "expires": scope.exception.expires.isoformat(),
            "reason": scope.exception.reason,
            "active": scope.exception_active(now),
        },
        "require": {
            "type": scope.require.type,
            "threshold": scope.require.threshold,
            "keystore": scope.require.keystore,
            "formats": list(scope.require.formats),
            "signed_identity": scope.require.signed_identity.to_json(),
            "keys": keys,
        },
        "run": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(scope.run).items()},
        "seccomp_digests": _seccomp_digests(policy, scope.run.seccomp),
        "measure": scope.measure,
    }
    if record is not None:
        prov = record.provenance
        decision: Decision = decide_fetch(
            policy,
            ref,
            prov.signers,
            keystore,
            now,
            insecure_image=prov.insecure,
            image_id=record.key,
            docker_name=ref.docker,
            manifest_digest=record.provenance.source_digest,
        )
        doc["stored"] = {
            "id": record.key,
            "signers": [format_fingerprint(s) for s in prov.signers],
            "insecure": prov.insecure,
            "verified_at": prov.verified_at,
            "verdict": decision.verdict,
            "why": decision.explain(),
            "checks": decision.to_json()["checks"],
        }
    return doc
