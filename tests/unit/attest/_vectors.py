"""Paths to the attestation vectors and small readers for their expected outputs."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from trustd.shared.attest import (
    CelLog,
    HashAlg,
    PcrValues,
    QuoteBundle,
    parse_pcr_file,
    parse_signature,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
SWTPM = VECTORS / "swtpm-quote"
GO = VECTORS / "go-attestation"
TOOLS = VECTORS / "tpm2-tools"
TSS = VECTORS / "tpm2-tss"
SWTPM_NONCE = bytes.fromhex("0011223344556677")


def yaml_pcrs(path: Path) -> dict[HashAlg, dict[int, bytes]]:
    """The final ``pcrs:`` map of a ``tpm2_eventlog`` YAML file."""
    text = path.read_text()
    out: dict[HashAlg, dict[int, bytes]] = {}
    bank: dict[int, bytes] = {}
    for line in text[text.index("\npcrs:") + 1 :].splitlines()[1:]:
        if m := re.fullmatch(r"  (\w+):\s*", line):
            alg = HashAlg.from_label(m[1])
            assert alg is not None
            bank = out.setdefault(alg, {})
        elif m := re.match(r"    (\d+)\s*: 0x([0-9a-fA-F]+)", line):
            bank[int(m[1])] = bytes.fromhex(m[2])
        elif line.strip():
            break
    return out


def swtpm_bundle(**changes: Any) -> QuoteBundle:
    parts: dict[str, Any] = {
        "attest": (SWTPM / "quote.attest.bin").read_bytes(),
        "signature": parse_signature((SWTPM / "quote.sig.tpmt_signature.bin").read_bytes()),
        "pcrs": parse_pcr_file((SWTPM / "quote.pcrs.bin").read_bytes()),
        "event_log": CelLog(()),
    }
    parts.update(changes)
    return QuoteBundle(**parts)


def go_vector() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GO / "windows_gcp_shielded_vm.json").read_text())
    return data


def go_bundle() -> QuoteBundle:
    vector = go_vector()
    values = {
        HashAlg.SHA1: {p["Index"]: base64.b64decode(p["Digest"]) for p in vector["Log"]["PCRs"]}
    }
    return QuoteBundle(
        attest=base64.b64decode(vector["Quote"]["Quote"]),
        signature=parse_signature(base64.b64decode(vector["Quote"]["Signature"])),
        pcrs=PcrValues.from_mapping(values),
        event_log=CelLog(()),
    )
