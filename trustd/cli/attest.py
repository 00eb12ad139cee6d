"""``rkt attest status | ak | quote | verify | verify-fleet | replay | stop-tpm | serve |
policy-schema`` (issues #5, #11; ADR 0007, ADR 0014). Enrolment: :mod:`.attest_enrol`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trustd.cli._common import add_format_flag, is_json, print_json, read_input
from trustd.shared.errors import RemoteLiedError, UserError

# The verbs that go to root load the hand-off and the request vocabulary when they run:
# ``verify`` (offline, unprivileged) loads neither.

DEFAULT_PORT = 9002  # Keylime's agent port


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            f"attest-{name}", parents=parents, prog=f"rkt attest {name}", help=help_
        )
        return p

    st = add("status", "which TPM backend measures pod starts, and why")
    st.set_defaults(func=run_status)
    ak = add("ak", "export the attestation key's public part")
    ak.add_argument(
        "--out", type=Path, required=True, help="file to write the attestation key's public part to"
    )
    ak.set_defaults(func=run_ak)
    q = add("quote", "quote PCRs over a nonce and write a verifiable bundle")
    q.add_argument("--nonce", required=True, type=_hex, help="the verifier's nonce, in hex")
    q.add_argument(
        "--pcrs", default=None, type=_pcrs, help="comma list (default: the measurement PCR)"
    )
    q.add_argument("--out", type=Path, required=True, help="file to write the quote bundle to")
    q.set_defaults(func=run_quote)
    v = add("verify", "verify a quote bundle offline, or challenge an attester (--remote URL)")
    v.add_argument("bundle", type=Path, nargs="?", help="the quote bundle to verify")
    who = v.add_mutually_exclusive_group(required=True)
    who.add_argument("--ak", type=Path, help="the pinned AK (PEM)")
    who.add_argument("--registry", type=Path, help="accept only an AK enrolled in this registry")
    v.add_argument("--nonce", type=_hex, help="the nonce of an offline bundle")
    v.add_argument("--remote", metavar="URL", help="https://HOST:PORT of rkt attest serve")
    v.add_argument("--policy", type=Path, help="the attestation policy file to verify against")
    _tls_flags(v)
    add_format_flag(v)
    v.set_defaults(func=run_verify)
    f = add("verify-fleet", "challenge every attester of NODES.json; one report")
    f.add_argument("nodes", type=Path, help='[{"url": "https://...", "ak": "AK.pem"}, ...]')
    f.add_argument("--registry", type=Path, help="check each node's AK in this registry (no ak)")
    f.add_argument("--policy", type=Path, help="the attestation policy file to verify against")
    _tls_flags(f)
    add_format_flag(f)
    f.set_defaults(func=run_verify_fleet)
    sv = add("serve", "answer verifiers' quote challenges over HTTPS (root quotes; ADR 0014)")
    sv.add_argument("--listen", default=f"127.0.0.1:{DEFAULT_PORT}", help="HOST:PORT")
    sv.add_argument("--cert", type=Path, required=True, help="the server's PEM certificate")
    sv.add_argument("--key", type=Path, required=True, help="its PEM private key")
    sv.add_argument("--client-ca", type=Path, help="mutual TLS: require client certs from it")
    sv.add_argument(
        "--quotes-per-minute",
        type=int,
        default=60,
        help="the most quotes answered a minute (1 to 600; default 60)",
    )
    sv.set_defaults(func=run_serve)
    ps = add("policy-schema", "print the verifier policy's JSON Schema")
    ps.set_defaults(func=run_policy_schema)
    r = add("replay", "replay an event log (CEL-JSON or TCG binary firmware log)")
    r.add_argument("log", type=Path, help="the event log to replay")
    add_format_flag(r)
    r.set_defaults(func=run_replay)
    stop = add("stop-tpm", "stop the data dir's embedded swtpm (the next use starts a new one)")
    stop.set_defaults(func=run_stop_tpm)


def _tls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ca", type=Path, help="CA bundle the attester's certificate chains to")
    p.add_argument("--client-cert", type=Path, help="mutual TLS: this verifier's certificate")
    p.add_argument("--client-key", type=Path, help="its private key (if not in --client-cert)")


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
    from trustd.cli._handoff import exec_root  # noqa: PLC0415
    from trustd.shared.request import AttestStatus  # noqa: PLC0415

    exec_root(args.options, "status", AttestStatus("attest-status"))


def run_ak(args: argparse.Namespace) -> int:
    from trustd.cli._handoff import exec_root  # noqa: PLC0415
    from trustd.shared.request import AttestKey  # noqa: PLC0415

    exec_root(args.options, "ak", AttestKey("attest-ak", str(args.out.absolute())))


def run_stop_tpm(args: argparse.Namespace) -> int:
    from trustd.cli._handoff import exec_root  # noqa: PLC0415
    from trustd.shared.request import AttestStopTpm  # noqa: PLC0415

    exec_root(args.options, "stop-tpm", AttestStopTpm("attest-stop-tpm"))


def run_quote(args: argparse.Namespace) -> int:
    from trustd.cli._handoff import exec_root  # noqa: PLC0415
    from trustd.shared.request import AttestQuote  # noqa: PLC0415

    pcrs = tuple(args.pcrs) if args.pcrs else None
    request = AttestQuote("attest-quote", args.nonce.hex(), pcrs, str(args.out.absolute()))
    exec_root(args.options, "quote", request)


def run_serve(args: argparse.Namespace) -> int:
    from trustd.cli._handoff import exec_root  # noqa: PLC0415
    from trustd.shared.request import AttestServe  # noqa: PLC0415

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--listen {args.listen!r} is not HOST:PORT")
    request = AttestServe(
        "attest-serve",
        host.strip("[]"),
        int(port),
        str(args.cert.absolute()),
        str(args.key.absolute()),
        str(args.client_ca.absolute()) if args.client_ca else None,
        args.quotes_per_minute,
    )
    exec_root(args.options, "serve", request)


def run_policy_schema(args: argparse.Namespace) -> int:
    from trustd.shared.attest.policy import json_schema  # noqa: PLC0415

    print_json(json_schema(), "json-pretty")
    return 0


def _challenge_node(
    url: str, ak_path: Path | None, policy: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """One node's report; a refusal is a report too (``accepted`` false, ``refused``)."""
    import secrets  # noqa: PLC0415

    from trustd.shared.attest import load_ak_pem  # noqa: PLC0415
    from trustd.shared.attest.remote import BOOT_MASK, refused, verify_answer  # noqa: PLC0415
    from trustd.shared.attest.verifier import NONCE_BYTES  # noqa: PLC0415
    from trustd.shared.errors import TrustdError  # noqa: PLC0415
    from trustd.unprivileged.attest.client import challenge, tls_client  # noqa: PLC0415

    try:
        nonce = secrets.token_bytes(NONCE_BYTES)
        context = tls_client(args.ca, args.client_cert, args.client_key)
        answer = challenge(url, nonce, list(BOOT_MASK), context)
        if ak_path is None:  # --registry: the enrolled AK, never the answer's own copy
            return _verify_enrolled(answer, url, nonce, policy, args.registry)
        ak = load_ak_pem(read_input(ak_path, "the attestation key (--ak)"), source=str(ak_path))
        return verify_answer(
            answer, source=url, ak=ak, nonce=nonce, requested=BOOT_MASK, policy=policy
        )
    except (TrustdError, OSError) as exc:
        return refused(url, exc)


def _verify_enrolled(
    answer: Any, url: str, nonce: bytes, policy: Any, registry: Path
) -> dict[str, Any]:
    """A remote answer checked against the AK the registry enrolled: the report names the
    enrolment (CA-anchored or TOFU) and, for a CA-anchored one, what the EK certificate says
    the TPM is (the swtpm's local CA, or another maker's)."""
    from trustd.shared.attest import load_ak_tpm, parse_attest  # noqa: PLC0415
    from trustd.shared.attest.credential import strip_tpm2b  # noqa: PLC0415
    from trustd.shared.attest.keys import load_ak_pem  # noqa: PLC0415
    from trustd.shared.attest.registry import Registry  # noqa: PLC0415
    from trustd.shared.attest.remote import (  # noqa: PLC0415
        BOOT_MASK,
        answer_bundle,
        decode_answer,
        verify_answer,
    )

    decoded = decode_answer(answer, url)
    claimed = load_ak_pem(decoded.pubkey.encode(), source=f"{url} pubkey")
    enrolled = Registry(registry).lookup(claimed.public_key)
    public = strip_tpm2b(bytes.fromhex(enrolled.ak_public), str(registry))
    ak = load_ak_tpm(public, source=f"{registry} (enrolled AK)")
    attest = parse_attest(answer_bundle(decoded, url).attest)
    enrolled.check_signer(attest.qualified_signer)
    if enrolled.anchor == "tofu":
        enrolment, evidence = "TOFU", f"{decoded.backend}, unverified claim (TOFU enrolment)"
    else:
        issuer = enrolled.ek_issuer or "?"
        kind = "software (swtpm)" if "swtpm" in issuer.lower() else "hardware"
        enrolment, evidence = "CA-anchored", f"{kind}, EK certificate issued by {issuer}"
    return verify_answer(
        answer,
        source=url,
        ak=ak,
        nonce=nonce,
        requested=BOOT_MASK,
        policy=policy,
        enrolment=enrolment,
        backend_evidence=evidence,
    )


def _print_reports(reports: list[dict[str, Any]], fmt: str) -> None:
    if is_json(fmt):
        print_json(reports if len(reports) != 1 else reports[0], fmt)
        return
    print(f"{'NODE':<32} {'ACCEPTED':<8} {'BACKEND':<36} {'ENROLMENT':<10} {'BOOT':<12} PODS")
    for r in reports:
        boot = r.get("boot") or {}
        boot_word = boot.get("secure_boot", "appraised") if boot.get("appraised") else "no log"
        pods = str(sum(1 for s in r["pod_starts"] if s["pod"])) if "pod_starts" in r else "-"
        print(
            f"{r['node']:<32} {'yes' if r['accepted'] else 'no':<8} "
            f"{r.get('backend', '-'):<36} {r.get('enrolment', '-'):<10} {boot_word:<12} {pods}"
        )
        for problem in r.get("policy_violations", []):
            print(f"  policy: {problem}")
        if "error" in r:
            print(f"  refused ({r['refused']}): {r['error']}")


def _remote(args: argparse.Namespace, nodes: list[tuple[str, Path | None]]) -> int:
    from trustd.shared.attest.policy import VerifierPolicy  # noqa: PLC0415

    policy = VerifierPolicy.load(args.policy) if args.policy else None
    reports = [_challenge_node(url, ak, policy, args) for url, ak in nodes]
    _print_reports(reports, args.format)
    bad = [r["node"] for r in reports if not r["accepted"]]
    if bad:
        raise RemoteLiedError(
            f"not accepted: {', '.join(bad)}",
            hint="the report names each refused check and policy violation",
        )
    return 0


def run_verify_fleet(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    try:
        doc = json.loads(read_input(args.nodes, "the node list"))
        nodes: list[tuple[str, Path | None]] = [
            (str(n["url"]), None if args.registry else args.nodes.parent / str(n["ak"]))
            for n in doc
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(
            f'{args.nodes}: not a JSON list of {{"url": ..., "ak": ...}} objects ({exc})'
        ) from None
    if not nodes:
        raise UserError(f"{args.nodes} lists no node")
    return _remote(args, nodes)


def _enrolled_key(args: argparse.Namespace, bundle: Any) -> tuple[Any, Any]:
    """The AK the registry enrolled (never the bundle's own copy) and its enrolment record."""
    from trustd.shared.attest import load_ak_tpm  # noqa: PLC0415
    from trustd.shared.attest.credential import strip_tpm2b  # noqa: PLC0415
    from trustd.shared.attest.registry import Registry  # noqa: PLC0415

    if bundle.ak is None:
        raise UserError(f"{args.bundle} carries no ak.pem", hint="pass --ak AK.pem")
    enrolled = Registry(args.registry).lookup(bundle.ak.public_key)
    public = strip_tpm2b(bytes.fromhex(enrolled.ak_public), str(args.registry))
    return load_ak_tpm(public, source=f"{args.registry} (enrolled AK)"), enrolled


def _print_verified(args: argparse.Namespace, starts: Any, violations: Any, enrolled: Any) -> None:
    if is_json(args.format):
        doc: dict[str, Any] = {
            "verified": True,
            "policy_violations": violations,
            "pod_starts": starts,
        }
        if enrolled is not None:
            doc["ak_enrolment"] = {"anchor": enrolled.anchor, "ek_issuer": enrolled.ek_issuer}
        print_json(doc, args.format)
        return
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


def _verify_remote(args: argparse.Namespace) -> int:
    if args.bundle is not None or args.nonce is not None:
        raise UserError(
            "--remote generates its own fresh nonce and takes no bundle",
            hint="rkt attest verify --remote URL --ak AK.pem [--policy FILE]",
        )
    return _remote(args, [(args.remote, args.ak)])  # --ak None: the --registry's AK


def run_verify(args: argparse.Namespace) -> int:
    if args.remote is not None:
        return _verify_remote(args)
    if args.bundle is None or args.nonce is None:
        raise UserError(
            "verify needs a bundle and its --nonce, or --remote URL",
            hint="rkt attest verify BUNDLE --ak AK.pem --nonce HEX",
        )
    from trustd.shared.attest import QuoteBundle, load_ak_pem, pod_starts, verify_bundle  # noqa: PLC0415
    from trustd.shared.attest.policy import VerifierPolicy, evaluate  # noqa: PLC0415

    pinned = None  # a pinned key is read first: a missing --ak is named before the bundle
    if args.ak is not None:
        pinned = load_ak_pem(read_input(args.ak, "the attestation key (--ak)"), source=str(args.ak))
    bundle = QuoteBundle.load(args.bundle)
    ak, enrolled = (pinned, None) if pinned is not None else _enrolled_key(args, bundle)
    attestation = verify_bundle(bundle, ak, args.nonce)
    if enrolled is not None:
        enrolled.check_signer(attestation.quote.attest.qualified_signer)
    starts = pod_starts(attestation)
    violations = evaluate(VerifierPolicy.load(args.policy), starts) if args.policy else []
    _print_verified(args, starts, violations, enrolled)
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
