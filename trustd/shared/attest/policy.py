"""What a verifier requires of an attested machine (``rkt attest verify --policy FILE``).

A small TOML file, decoded strictly: an unknown key, a wrong type or a bad value is an error
naming the key (a typo must not weaken it), and so is an empty file (it would allow anything).
Its JSON Schema: ``rkt attest policy-schema`` (:func:`json_schema`)::

    signers = ["<40-hex fingerprint>", ...]   # every image signed by one of these
    images = ["sha512-...", ...]              # optional allow-list of image IDs
    allow_insecure_images = false
    flavors = ["container"]
    require_seccomp = true
    require_no_new_privs = true
    require_hardware_tpm = false              # refuse a software TPM and an unverified claim

    [boot]                                    # optional: appraise the firmware log
    bank = "sha256"                           # the bank the reference values are in
    secure_boot = "any"                       # "enabled" | "disabled" | "any"
    golden_log = "/path/to/binary_bios_measurements"  # its replay is the reference ...
    [boot.pcrs]                               # ... and/or reference values of PCRs 0-7
    "0" = "<hex>"

With ``[boot]`` the quote must cover PCRs 0-7 in ``bank``, the firmware log must replay to
them, and they must equal the references. ``secure_boot`` is read from the log's
EV_EFI_VARIABLE_DRIVER_CONFIG ``SecureBoot`` event: a policy that asks for a state refuses a
log that does not show one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field, replace
from pathlib import Path
from typing import Any, Literal

from trustd.shared._dataclass import frozen
from trustd.shared.codec import DecodeError, read_toml
from trustd.shared.vocab import Flavor

_FINGERPRINT = re.compile(r"[0-9a-fA-F]{40}")
_IMAGE_ID = re.compile(r"sha512-[0-9a-f]{1,128}")
_HINT = "see the format: pydoc trustd.shared.attest.policy"


def _fingerprints(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if not _FINGERPRINT.fullmatch(v)]
    return f"{bad[0]!r} is not a 40-hex fingerprint" if bad else None


def _images(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if not _IMAGE_ID.fullmatch(v)]
    return f"{bad[0]!r} is not an image ID (sha512-<hex>)" if bad else None


_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){20,64}")
BOOT_PCRS = range(8)


def _reference_pcrs(value: Mapping[str, str]) -> str | None:
    for key, digest in value.items():
        if not (key.isdigit() and int(key) in BOOT_PCRS and str(int(key)) == key):
            return f"{key!r} is not a firmware PCR (0-7)"
        if not _HEX.fullmatch(digest):
            return f"PCR {key}: {digest!r} is not a hex digest"
    return None


@frozen
class BootPolicy:
    """What the boot environment (firmware PCRs 0-7) must be."""

    bank: Literal["sha1", "sha256", "sha384", "sha512"] = field(
        default="sha256", metadata={"doc": "the PCR bank the references are in"}
    )
    pcrs: Mapping[str, str] = field(
        default_factory=dict,
        metadata={"check": _reference_pcrs, "doc": "reference values of PCRs 0-7, hex"},
    )
    golden_log: str | None = field(
        default=None,
        metadata={"doc": "a binary firmware log whose replay gives the reference PCRs 0-7"},
    )
    secure_boot: Literal["enabled", "disabled", "any"] = field(
        default="any", metadata={"doc": "the SecureBoot variable the log must show"}
    )


@frozen
class VerifierPolicy:
    """What a verifier requires of an attested machine's boot and of its pod starts."""

    signers: tuple[str, ...] = field(
        default=(),
        metadata={"check": _fingerprints, "doc": "every image signed by one of these keys"},
    )
    images: tuple[str, ...] = field(
        default=(), metadata={"check": _images, "doc": "an allow-list of image IDs"}
    )
    allow_insecure_images: bool = False
    flavors: tuple[Flavor, ...] = ("container",)
    require_seccomp: bool = True
    require_no_new_privs: bool = True
    require_hardware_tpm: bool = field(
        default=False,
        metadata={"doc": "refuse a software TPM, and a backend only the attester claims"},
    )
    boot: BootPolicy | None = None

    @classmethod
    def load(cls, path: Path) -> VerifierPolicy:
        """Strict: an unknown key, a wrong type (a string where a list belongs), a bad value
        or an empty file is a DecodeError naming the file and the key."""
        policy = read_toml(path, cls, hint=_HINT)
        if _is_empty(path):
            raise DecodeError(
                str(path),
                (),
                "the verifier policy is empty, which would allow any machine",
                hint="say what to require, e.g. signers = [...]; " + _HINT,
            )
        boot = policy.boot
        if boot is not None and not (boot.pcrs or boot.golden_log or boot.secure_boot != "any"):
            raise DecodeError(
                str(path),
                ("boot",),
                "[boot] requires nothing: no pcrs, no golden_log, secure_boot = any",
                hint=_HINT,
            )
        return replace(policy, signers=tuple(s.lower() for s in policy.signers))


def _is_empty(path: Path) -> bool:
    import tomllib  # noqa: PLC0415 - read_toml has already decoded it

    return not tomllib.loads(path.read_text("utf-8"))


def hardware_problems(policy: VerifierPolicy, backend: str, enrolment: str) -> list[str]:
    """``require_hardware_tpm``: the claimed backend must be hardware and the enrolment must
    prove it (an EK certificate from a TPM maker). A pinned AK proves nothing about the TPM."""
    if not policy.require_hardware_tpm:
        return []
    if not backend.startswith("hardware"):
        return [f"the TPM is {backend}; the policy requires a hardware TPM"]
    if enrolment != "CA-anchored":
        return [
            f"the hardware TPM is only claimed: the AK is {enrolment.lower()}, not enrolled "
            "against an EK certificate from a TPM maker"
        ]
    return []


def _image_problems(policy: VerifierPolicy, data: dict[str, Any]) -> list[str]:
    where = f"app {data.get('app')!r} image {str(data.get('image_id'))[:39]}"
    problems = []
    signers = [str(s).lower() for s in data.get("signers", [])]
    if data.get("insecure") and not policy.allow_insecure_images:
        problems.append(f"{where} was not signature-verified")
    elif policy.signers and not set(signers) & set(policy.signers):
        problems.append(f"{where} is signed by {', '.join(signers)}, none of them allowed")
    if policy.images and str(data.get("image_id")) not in policy.images:
        problems.append(f"{where} is not an allowed image")
    return problems


def _isolation_problems(policy: VerifierPolicy, data: dict[str, Any]) -> list[str]:
    where = f"app {data.get('app')!r}"
    problems = []
    if data.get("flavor") not in policy.flavors:
        problems.append(f"{where} ran in stage1 flavor {data.get('flavor')!r}")
    if policy.require_seccomp and data.get("seccomp") == "disabled":
        problems.append(f"{where} ran without seccomp")
    if policy.require_no_new_privs and not data.get("no_new_privs"):
        problems.append(f"{where} ran without no_new_privs")
    return problems


def evaluate(policy: VerifierPolicy, starts: list[dict[str, Any]]) -> list[str]:
    """Every violation, as ``pod <uuid>: <problem>``; empty when the policy is met."""
    violations = []
    for start in starts:
        for event in start["events"]:
            check = {"image": _image_problems, "isolation": _isolation_problems}.get(event["kind"])
            for problem in check(policy, event["data"]) if check else []:
                violations.append(f"pod {start['pod']}: {problem}")
    return violations


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the verifier policy, generated from the dataclasses."""
    from trustd.shared.jsonschema import SchemaBuilder  # noqa: PLC0415

    title = "trustd verifier policy (rkt attest verify --policy)"
    doc = SchemaBuilder(defaults=True).document(VerifierPolicy, title=title)
    return {**doc, "minProperties": 1}  # an empty policy is an error
