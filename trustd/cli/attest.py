"""``rkt attest status | ak | quote | verify | replay | stop-tpm`` (issues #5, #11; ADR 0007),
and AK enrolment ``identity | challenge | activate | enroll`` (issue #11; ADR 0013)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trustd.cli._common import add_format_flag, is_json, print_json, read_input
from trustd.cli._handoff import exec_root
from trustd.shared.errors import RemoteLiedError, UserError
from trustd.shared.request import (
    AttestActivate,
    AttestIdentity,
    AttestKey,
    AttestQuote,
    AttestStatus,
    AttestStopTpm,
)


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            f"attest-{name}", parents=parents, prog=f"rkt attest {name}", help=help_
        )
        return p

    st = add("status", "which TPM backend measures pod starts, and why")
    st.set_defaults(func=run_status)
    ak = add("ak", "export the attestation key's public part")
    ak.add_argument("--out", type=Path, required=True)
    ak.set_defaults(func=run_ak)
    q = add("quote", "quote PCRs over a nonce and write a verifiable bundle")
    q.add_argument("--nonce", required=True, type=_hex)
    q.add_argument(
        "--pcrs", default=None, type=_pcrs, help="comma list (default: the measurement PCR)"
    )
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=run_quote)
    v = add("verify", "verify a quote bundle offline (no TPM needed)")
    v.add_argument("bundle", type=Path)
    who = v.add_mutually_exclusive_group(required=True)
    who.add_argument("--ak", type=Path, help="the pinned AK (PEM)")
    who.add_argument("--registry", type=Path, help="accept only an AK enrolled in this registry")
    v.add_argument("--nonce", required=True, type=_hex)
    v.add_argument("--policy", type=Path)
    add_format_flag(v)
    v.set_defaults(func=run_verify)
    r = add("replay", "replay an event log (CEL-JSON or TCG binary firmware log)")
    r.add_argument("log", type=Path)
    add_format_flag(r)
    r.set_defaults(func=run_replay)
    stop = add("stop-tpm", "stop the data dir's embedded swtpm (the next use starts a new one)")
    stop.set_defaults(func=run_stop_tpm)
    ident = add("identity", "write the EK, its NV certificate and the AK, for enrolment")
    ident.add_argument("--out", type=Path, required=True)
    ident.set_defaults(func=run_identity)
    ch = add("challenge", "verifier: check an identity, write a credential challenge for it")
    ch.add_argument("identity", type=Path, help="the directory rkt attest identity wrote")
    ch.add_argument("--registry", type=Path, required=True)
    anchor = ch.add_mutually_exclusive_group(required=True)
    anchor.add_argument("--ca", type=Path, help="PEM: the CA(s) the EK certificate must chain to")
    anchor.add_argument(
        "--tofu",
        action="store_true",
        help="enrol without an EK certificate check (trust on first use)",
    )
    ch.add_argument("--out", type=Path, required=True, help="the challenge (credential blob)")
    ch.set_defaults(func=run_challenge)
    act = add("activate", "activate a verifier's challenge in the TPM (TPM2_ActivateCredential)")
    act.add_argument("challenge", type=Path)
    act.add_argument("--out", type=Path, required=True, help="the recovered secret")
    act.set_defaults(func=run_activate)
    en = add("enroll", "verifier: enrol the AK whose TPM answered the challenge")
    en.add_argument("challenge", type=Path)
    en.add_argument("secret", type=Path, help="what rkt attest activate wrote")
    en.add_argument("--registry", type=Path, required=True)
    add_format_flag(en)
    en.set_defaults(func=run_enroll)


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise UserError(f"{text!r} is not hex") from exc


def _pcrs(text: str) -> list[int]:
    try:
        pcrs = [int(p) for p in text.split(",")]
    except ValueError as exc:
        raise UserError(f"--pcrs {text!r} is not a comma list of PCR numbers") from exc
    if any(not 0 <= p <= 23 for p in pcrs):
        raise UserError(f"--pcrs {text!r}: a PCR number is 0 to 23")
    return pcrs


def run_status(args: argparse.Namespace) -> int:
    exec_root(args.options, "status", AttestStatus("attest-status"))


def run_ak(args: argparse.Namespace) -> int:
    exec_root(args.options, "ak", AttestKey("attest-ak", str(args.out.absolute())))


def run_stop_tpm(args: argparse.Namespace) -> int:
    exec_root(args.options, "stop-tpm", AttestStopTpm("attest-stop-tpm"))


def run_identity(args: argparse.Namespace) -> int:
    exec_root(args.options, "identity", AttestIdentity("attest-identity", str(args.out.absolute())))


def run_activate(args: argparse.Namespace) -> int:
    blob = read_input(args.challenge, "the challenge", limit=2048)
    request = AttestActivate("attest-activate", blob.hex(), str(args.out.absolute()))
    exec_root(args.options, "activate", request)


def run_challenge(args: argparse.Namespace) -> int:
    from trustd.shared._fsutil import atomic_write  # noqa: PLC0415
    from trustd.shared.attest.registry import Identity, Registry, load_anchors  # noqa: PLC0415

    identity = Identity.load(args.identity)
    anchors = None
    if args.ca is not None:
        anchors = load_anchors(read_input(args.ca, "the CA (--ca)"), str(args.ca))
    challenge_id, credential = Registry(args.registry).challenge(identity, anchors)
    atomic_write(args.out, credential.to_file())
    how = "TOFU: no EK certificate check" if anchors is None else "EK certificate chains to --ca"
    print(f"challenge {challenge_id[:16]} written to {args.out} ({how})")
    print(f"on the machine: rkt attest activate {args.out} --out SECRET")
    return 0


def run_enroll(args: argparse.Namespace) -> int:
    from trustd.shared.attest.registry import Registry  # noqa: PLC0415

    challenge = read_input(args.challenge, "the challenge", limit=2048)
    secret = read_input(args.secret, "the secret", limit=64)
    record = Registry(args.registry).enroll(challenge, secret)
    if is_json(args.format):
        print_json(
            {
                "enrolled": True,
                "ak_name": record.ak_name,
                "anchor": record.anchor,
                "ek_issuer": record.ek_issuer,
            },
            args.format,
        )
    else:
        print(f"AK {record.ak_name[:20]} enrolled in {args.registry}: {record.describe()}")
    return 0


def run_quote(args: argparse.Namespace) -> int:
    pcrs = tuple(args.pcrs) if args.pcrs else None
    request = AttestQuote("attest-quote", args.nonce.hex(), pcrs, str(args.out.absolute()))
    exec_root(args.options, "quote", request)


def run_verify(args: argparse.Namespace) -> int:
    from trustd.shared.attest import QuoteBundle, load_ak_pem, pod_starts, verify_bundle  # noqa: PLC0415
    from trustd.shared.attest.policy import VerifierPolicy, evaluate  # noqa: PLC0415

    pinned = None
    if args.ak is not None:
        pinned = load_ak_pem(read_input(args.ak, "the attestation key (--ak)"), source=str(args.ak))
    bundle = QuoteBundle.load(args.bundle)
    enrolled = None
    if pinned is not None:
        ak = pinned
    else:
        from trustd.shared.attest import load_ak_tpm  # noqa: PLC0415
        from trustd.shared.attest.credential import strip_tpm2b  # noqa: PLC0415
        from trustd.shared.attest.registry import Registry  # noqa: PLC0415

        if bundle.ak is None:
            raise UserError(f"{args.bundle} carries no ak.pem", hint="pass --ak AK.pem")
        enrolled = Registry(args.registry).lookup(bundle.ak.public_key)
        # the registered key verifies the quote, never the bundle's own copy
        public = strip_tpm2b(bytes.fromhex(enrolled.ak_public), str(args.registry))
        ak = load_ak_tpm(public, source=f"{args.registry} (enrolled AK)")
    attestation = verify_bundle(bundle, ak, args.nonce)
    if enrolled is not None:
        enrolled.check_signer(attestation.quote.attest.qualified_signer)
    starts = pod_starts(attestation)
    violations = evaluate(VerifierPolicy.load(args.policy), starts) if args.policy else []
    if is_json(args.format):
        doc: dict[str, Any] = {
            "verified": True,
            "policy_violations": violations,
            "pod_starts": starts,
        }
        if enrolled is not None:
            doc["ak_enrolment"] = {"anchor": enrolled.anchor, "ek_issuer": enrolled.ek_issuer}
        print_json(doc, args.format)
    else:
        print(
            f"quote verified: signature, nonce, PCR selection, digest and event-log replay "
            f"agree ({len(starts)} pod start(s))"
        )
        if enrolled is not None:
            print(f"AK enrolled: {enrolled.describe()}")
        for start in starts:
            kinds = ", ".join(e["kind"] for e in start["events"])
            who = f"pod {start['pod']}" if start["pod"] else "TPM epoch"
            print(f"  {who} (PCR {start['pcr']}): {kinds}")
    if violations:
        raise RemoteLiedError(
            "the attested pod starts break the policy: " + "; ".join(violations),
            hint="the machine ran something the policy does not allow",
        )
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from trustd.shared.attest import parse_cel, parse_firmware_log, replay  # noqa: PLC0415

    data = read_input(args.log, "the event log")
    text_like = data.lstrip()[:1] in (b"[", b"{")
    log = parse_cel(data, source=str(args.log)) if text_like else parse_firmware_log(data)
    banks = replay(log)
    result = {
        alg.label: {str(pcr): value.hex() for pcr, value in sorted(values.items())}
        for alg, values in banks.items()
    }
    if is_json(args.format):
        print_json(result, args.format)
    else:
        for alg, values in result.items():
            print(f"{alg}:")
            for pcr, value in values.items():
                print(f"  {pcr:>2}: 0x{value.upper()}")
    return 0
