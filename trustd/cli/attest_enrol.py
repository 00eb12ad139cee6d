"""``rkt attest identity | challenge | activate | enroll``: AK enrolment (issue #11; ADR 0013).

``identity`` and ``activate`` touch the TPM (root, through the root program); ``challenge``
and ``enroll`` are the verifier's, offline, against its registry.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trustd.cli._common import add_format_flag, is_json, print_json, read_input
from trustd.cli._handoff import exec_root
from trustd.shared.request import AttestActivate, AttestIdentity


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            f"attest-{name}", parents=parents, prog=f"rkt attest {name}", help=help_
        )
        return p

    ident = add("identity", "write the EK, its NV certificate and the AK, for enrolment")
    ident.add_argument(
        "--out",
        type=Path,
        required=True,
        help="directory to write the EK, its certificate and the AK into",
    )
    ident.set_defaults(func=run_identity)
    ch = add("challenge", "verifier: check an identity, write a credential challenge for it")
    ch.add_argument("identity", type=Path, help="the directory rkt attest identity wrote")
    ch.add_argument(
        "--registry", type=Path, required=True, help="the verifier's registry of enrolled hosts"
    )
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
    act.add_argument("challenge", type=Path, help="the verifier's credential challenge file")
    act.add_argument("--out", type=Path, required=True, help="the recovered secret")
    act.set_defaults(func=run_activate)
    en = add("enroll", "verifier: enrol the AK whose TPM answered the challenge")
    en.add_argument("challenge", type=Path, help="the challenge the host answered")
    en.add_argument("secret", type=Path, help="what rkt attest activate wrote")
    en.add_argument(
        "--registry", type=Path, required=True, help="the verifier's registry of enrolled hosts"
    )
    add_format_flag(en)
    en.set_defaults(func=run_enroll)


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
