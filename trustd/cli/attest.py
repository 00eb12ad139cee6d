"""``rkt attest status | ak | quote | verify | replay | stop-tpm`` (issues #5, #11; ADR 0007)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trustd.cli._common import add_format_flag, is_json, print_json, read_input
from trustd.cli._handoff import exec_root
from trustd.shared.errors import RemoteLiedError, UserError
from trustd.shared.request import AttestKey, AttestQuote, AttestStatus, AttestStopTpm


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
    v.add_argument("--ak", type=Path, required=True)
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


def run_quote(args: argparse.Namespace) -> int:
    pcrs = tuple(args.pcrs) if args.pcrs else None
    request = AttestQuote("attest-quote", args.nonce.hex(), pcrs, str(args.out.absolute()))
    exec_root(args.options, "quote", request)


def run_verify(args: argparse.Namespace) -> int:
    from trustd.shared.attest import QuoteBundle, load_ak_pem, pod_starts, verify_bundle  # noqa: PLC0415
    from trustd.shared.attest.policy import VerifierPolicy, evaluate  # noqa: PLC0415

    ak = load_ak_pem(read_input(args.ak, "the attestation key (--ak)"), source=str(args.ak))
    attestation = verify_bundle(QuoteBundle.load(args.bundle), ak, args.nonce)
    starts = pod_starts(attestation)
    violations = evaluate(VerifierPolicy.load(args.policy), starts) if args.policy else []
    if is_json(args.format):
        print_json(
            {"verified": True, "policy_violations": violations, "pod_starts": starts}, args.format
        )
    else:
        print(
            f"quote verified: signature, nonce, PCR selection, digest and event-log replay "
            f"agree ({len(starts)} pod start(s))"
        )
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
