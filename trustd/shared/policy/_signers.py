"""The signature requirement: k signatures by distinct trusted keys (TUF-style counting).

A signer counts when the keystore trusts its key for the image's name (``keystore = true``)
or the scope pins its fingerprint and the time is inside the pin's window; in both cases the
key must be in the keystore and usable now (not revoked, expired or weak). Each primary key
counts once, however many of its fingerprints or subkeys appear.
"""

from __future__ import annotations

from datetime import datetime

from trustd.shared._dataclass import frozen
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.name import DockerName
from trustd.shared.policy.model import PinnedKey, Scope
from trustd.shared.policy.scopes import ImageRef
from trustd.shared.verify import PublicKey, format_fingerprint


@frozen
class SignerState:
    fingerprint: str
    trusted: bool
    via: str  # keystore prefix/root, or "pinned"
    reason: str  # why not trusted, or ""


def keystore_key(keystore: Keystore, fingerprint: str) -> PublicKey | None:
    """The key with this primary fingerprint anywhere in the keystore, unless masked."""
    entries = list(keystore.entries())
    masked = {(e.scope, e.fingerprint) for e in entries if e.mask and e.level == "local"}
    for e in entries:
        if e.key is None or e.key.fingerprint != fingerprint:
            continue
        if e.level == "system" and (e.scope, e.fingerprint) in masked:
            continue
        return e.key
    return None


def _pin(pins: tuple[PinnedKey, ...], fingerprint: str) -> PinnedKey | None:
    return next((p for p in pins if p.fingerprint == fingerprint), None)


def signer_states(
    scope: Scope,
    ref: ImageRef,
    signers: tuple[str, ...],
    keystore: Keystore,
    now: datetime,
    *,
    docker_name: DockerName | None = None,
) -> list[SignerState]:
    """``docker_name``: the image is a converted Docker image whose signers verified for that
    name, so the keyring is its ``docker://`` prefixes' (plus root keys), not the AC name's."""
    req = scope.require
    keyring = keystore.keyring_for(docker_name or ref.name)
    pem = {t.key.key_id: t for t in keystore.pem_keys_for(docker_name)} if docker_name else {}
    out: dict[str, SignerState] = {}
    for raw in dict.fromkeys(s.lower() for s in signers):
        if len(raw) == SIGSTORE_ID_LEN:  # a sigstore key ID: only docker.d PEM keys vouch
            hit = pem.get(raw) if req.keystore else None
            why = "" if hit else f"sigstore key {raw[:16]}… is not trusted for this scope"
            out[raw] = SignerState(
                raw, hit is not None, f"keystore {hit.scope_text}" if hit else "", why
            )
            continue
        found = keyring.find(raw) if req.keystore else None
        fpr = found.key.fingerprint if found else raw
        if fpr in out and out[fpr].trusted:
            continue
        if found is not None:
            refusal = found.key.refusal(now)
            state = SignerState(fpr, refusal is None, f"keystore {found.scope_text}", "")
            if refusal is None:
                out[fpr] = state
                continue
            out[fpr] = SignerState(
                fpr, False, state.via, f"key {format_fingerprint(fpr)} {refusal}"
            )
        pin = _pin(req.fingerprints, fpr)
        if pin is None:
            out.setdefault(
                fpr,
                SignerState(
                    fpr, False, "", f"key {format_fingerprint(fpr)} is not trusted for this scope"
                ),
            )
            continue
        out[fpr] = _pinned_state(pin, keystore, now)
    return list(out.values())


def _pinned_state(pin: PinnedKey, keystore: Keystore, now: datetime) -> SignerState:
    fpr = pin.fingerprint
    shown = format_fingerprint(fpr)
    window = pin.window_problem(now)
    if window:
        return SignerState(fpr, False, "pinned", f"key {shown} {window}")
    key = keystore_key(keystore, fpr)
    if key is None:
        return SignerState(fpr, False, "pinned", f"key {shown} is pinned but not in the keystore")
    refusal = key.refusal(now)
    if refusal:
        return SignerState(fpr, False, "pinned", f"key {shown} {refusal}")
    return SignerState(fpr, True, "pinned", "")


SIGSTORE_ID_LEN = 64


def signer_format(signer: str, docker_name: DockerName | None) -> str:
    """An ACI's signers are OpenPGP; a docker image's are simple-signing (40-hex OpenPGP
    fingerprints) or sigstore (64-hex key IDs)."""
    if docker_name is None:
        return "openpgp"
    return "sigstore" if len(signer) == SIGSTORE_ID_LEN else "simple-signing"


def _fix(scope: Scope, ref: ImageRef, missing: int, docker_name: DockerName | None) -> str:
    req = scope.require
    ways: list[str] = []
    prefix = docker_name or ref.docker_name or ref.name
    if req.keystore:
        ways.append(f'a key trusted for "{prefix}" (rkt trust --prefix "{prefix}" KEY)')
    if req.fingerprints:
        pins = ", ".join(format_fingerprint(p.fingerprint) for p in req.fingerprints)
        ways.append(f"a pinned key ({pins})")
    more = f"{missing} more signature(s)" if req.threshold > 1 else "a signature"
    return f"{more} by distinct keys, each " + " or ".join(ways)


def signature_check(
    scope: Scope,
    ref: ImageRef,
    *,
    signers: tuple[str, ...],
    insecure_image: bool,
    keystore: Keystore,
    now: datetime,
    docker_name: DockerName | None = None,
) -> tuple[bool, str, str]:
    """(passed, reason, fix) of the scope's ``require`` for these signers; only signers in
    a format ``require.formats`` lists count (:func:`signer_format`)."""
    req = scope.require
    if req.type == "reject":
        return (
            False,
            "the scope rejects every image",
            f'add a scope for "{ref.scope_key}" that requires signatures',
        )
    if req.type == "accept-anything":
        return True, "the scope accepts images without signatures", ""
    counted = tuple(s for s in signers if signer_format(s, docker_name) in req.formats)
    refused_formats = sorted({signer_format(s, docker_name) for s in signers} - set(req.formats))
    states = signer_states(scope, ref, counted, keystore, now, docker_name=docker_name)
    trusted = [s for s in states if s.trusted]
    k = req.threshold
    if len(trusted) >= k:
        names = ", ".join(f"{format_fingerprint(s.fingerprint)} ({s.via})" for s in trusted)
        return True, f"{len(trusted)} of {k} required trusted signer(s): {names}", ""
    if insecure_image and "image" in scope.run.insecure_options:
        return (
            True,
            "admitted without signature verification (--insecure-options=image), "
            "which this scope allows",
            "",
        )
    parts = [f"{len(trusted)} of {k} required signature(s) by distinct trusted keys"]
    if refused_formats:
        allowed = ", ".join(req.formats)
        shown = ", ".join(refused_formats)
        parts.append(f"the image is signed in the {shown} format; this scope counts {allowed}")
    if insecure_image:
        parts.append("the image was admitted with --insecure-options=image")
    elif not signers:
        parts.append("the image is unsigned")
    parts += [s.reason for s in states if not s.trusted]
    return False, "; ".join(parts), _fix(scope, ref, k - len(trusted), docker_name)
