"""What a verifier requires of the pod starts a verified log proves (``rkt attest verify
--policy FILE``). A small TOML file; unknown keys are an error (a typo must not weaken it)::

    signers = ["<40-hex fingerprint>", ...]   # every image signed by one of these
    images = ["sha512-...", ...]              # optional allow-list of image IDs
    allow_insecure_images = false
    flavors = ["container"]
    require_seccomp = true
    require_no_new_privs = true
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trustd.shared.codec import read_toml
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


@dataclass(frozen=True, slots=True)
class VerifierPolicy:
    signers: tuple[str, ...] = field(default=(), metadata={"check": _fingerprints})
    images: tuple[str, ...] = field(default=(), metadata={"check": _images})
    allow_insecure_images: bool = False
    flavors: tuple[Flavor, ...] = ("container",)
    require_seccomp: bool = True
    require_no_new_privs: bool = True

    @classmethod
    def load(cls, path: Path) -> VerifierPolicy:
        """Strict: an unknown key, a wrong type (a string where a list belongs) or a bad
        value is a DecodeError naming the file and the key."""
        policy = read_toml(path, cls, hint=_HINT)
        return replace(policy, signers=tuple(s.lower() for s in policy.signers))


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
