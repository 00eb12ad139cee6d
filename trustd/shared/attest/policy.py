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

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from trustd.shared.errors import UserError


@dataclass(frozen=True, slots=True)
class VerifierPolicy:
    signers: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    allow_insecure_images: bool = False
    flavors: tuple[str, ...] = ("container",)
    require_seccomp: bool = True
    require_no_new_privs: bool = True

    @classmethod
    def load(cls, path: Path) -> VerifierPolicy:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read verifier policy {path}: {exc}") from exc
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(raw) - known):
            raise UserError(
                f"verifier policy {path}: unknown key(s) {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted(known))}",
            )
        values: dict[str, Any] = {
            k: tuple(str(x).lower() for x in v) if isinstance(v, list) else v
            for k, v in raw.items()
        }
        return cls(**values)


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
