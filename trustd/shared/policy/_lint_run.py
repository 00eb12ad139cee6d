"""Lint rules about what runs: seccomp profiles (TD-POL-009) and the run rules each scope
allows beyond [default] (TD-POL-013..023)."""

from __future__ import annotations

from collections.abc import Iterator

from trustd.shared.policy import _profiles
from trustd.shared.policy._lint_keys import where
from trustd.shared.policy.findings import Finding, finding
from trustd.shared.policy.model import SECCOMP_BUILTINS, SECCOMP_DIGEST, Policy
from trustd.shared.policy.scopes import DEFAULT


def seccomp(policy: Policy) -> Iterator[Finding]:
    for name in (DEFAULT, *policy.scopes):
        for entry in policy.scope(name).run.seccomp:
            if entry in SECCOMP_BUILTINS or SECCOMP_DIGEST.fullmatch(entry):
                continue
            _digest, problem = _profiles.digest_for(policy, entry)
            if problem:
                yield finding(
                    "TD-POL-009",
                    name,
                    f"seccomp profile {entry!r}: {problem}",
                    "fix the profile file or the name in run.seccomp",
                    key_path=where(name, "run", "seccomp"),
                    value=entry,
                )


# Capabilities that break container isolation on their own (mount, modules, ptrace of other
# processes, network configuration, raw devices, open_by_handle_at, MAC, BPF, clock, reboot).
DANGEROUS_CAPS: tuple[str, ...] = (
    "CAP_SYS_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_SYS_PTRACE",
    "CAP_NET_ADMIN",
    "CAP_SYS_RAWIO",
    "CAP_DAC_READ_SEARCH",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_BPF",
    "CAP_SYS_BOOT",
    "CAP_SYS_TIME",
)
_TRANSPORT_BITS = ("tls", "http", "pubkey")
_ISOLATION_BITS = ("capabilities", "paths", "seccomp")
_INHERITS = " (and every scope that does not set it)"


def _new(
    name: str, mine: tuple[str, ...], default: tuple[str, ...], wanted: tuple[str, ...]
) -> list[str]:
    """The ``wanted`` items scope ``name`` allows that [default] does not already (the default's
    own finding covers what a scope inherits)."""
    base = () if name == DEFAULT else default
    return [w for w in wanted if w in mine and w not in base]


def _run_rules(policy: Policy, name: str) -> Iterator[Finding]:
    scope, base = policy.scope(name), policy.default
    run, brun = scope.run, base.run
    tail = _INHERITS if name == DEFAULT else ""
    is_default = name == DEFAULT
    if scope.measure != "required" and (is_default or scope.measure != base.measure):
        off = scope.measure == "off"
        yield finding(
            "TD-POL-013",
            name,
            f'measure = "{scope.measure}"{tail}: pod starts '
            + ("are never measured into the TPM" if off else "are unmeasured when no TPM answers")
            + ", so an attestation cannot show what ran",
            'set measure = "required" (and configure a TPM backend)',
            "medium" if off else "low",
            key_path=where(name, "measure"),
        )
    if _new(name, run.seccomp, brun.seccomp, ("unconfined",)):
        yield finding(
            "TD-POL-014",
            name,
            f'run.seccomp allows "unconfined"{tail}: apps may run with no syscall filter',
            'remove "unconfined" from run.seccomp; list rkt-default or a named profile',
            key_path=where(name, "run", "seccomp"),
            value="unconfined",
        )
    if _new(name, run.seccomp, brun.seccomp, ("any",)):
        yield finding(
            "TD-POL-015",
            name,
            f'run.seccomp allows "any"{tail}: any loaded filter passes, including a permissive '
            "profile file given at run time",
            'replace "any" with the profiles you vetted (rkt-default, moby-default, sha256-...)',
            key_path=where(name, "run", "seccomp"),
            value="any",
        )
    caps = _new(name, run.capabilities, brun.capabilities, DANGEROUS_CAPS)
    if caps:
        yield finding(
            "TD-POL-016",
            name,
            f"run.capabilities allows {', '.join(caps)}{tail}: each one lets an app break out "
            "of its container or reconfigure the host",
            f"remove {', '.join(caps)} from run.capabilities (grant them to named scopes only)",
            key_path=where(name, "run", "capabilities"),
            value=caps[0],
        )
    if run.selinux == "off" and (is_default or brun.selinux != "off"):
        yield finding(
            "TD-POL-017",
            name,
            f'run.selinux = "off"{tail}: pods run without SELinux labels and the gap is not '
            "recorded",
            'set run.selinux = "enforce" (or "permissive" on hosts without SELinux, which '
            "records the gap)",
            key_path=where(name, "run", "selinux"),
        )
    if _new(name, run.flavors, brun.flavors, ("fly",)):
        yield finding(
            "TD-POL-018",
            name,
            f'run.flavors allows "fly"{tail}: its apps share the host\'s namespaces and run '
            "with every capability and no seccomp filter",
            'remove "fly" from run.flavors (allow it only for a named scope of system tools)',
            key_path=where(name, "run", "flavors"),
            value="fly",
        )
    opts, bopts = run.insecure_options, brun.insecure_options
    if _new(name, opts, bopts, ("image",)):
        yield finding(
            "TD-POL-019",
            name,
            f'run.insecure_options allows "image"{tail}: images fetched without a signature '
            "check pass the signature requirement",
            'remove "image" from run.insecure_options; sign the images instead',
            key_path=where(name, "run", "insecure_options"),
            value="image",
        )
    bits = _new(name, opts, bopts, _TRANSPORT_BITS)
    if bits:
        yield finding(
            "TD-POL-020",
            name,
            f"run.insecure_options allows {', '.join(bits)}{tail}: images or keys may come over "
            "unauthenticated connections"
            + (" (pubkey: a key fetched that way is then trusted)" if "pubkey" in bits else ""),
            f"remove {', '.join(bits)} from run.insecure_options; serve registries over HTTPS",
            "high" if "pubkey" in bits else "",
            key_path=where(name, "run", "insecure_options"),
            value=bits[0],
        )
    bits = _new(name, opts, bopts, _ISOLATION_BITS)
    if bits:
        yield finding(
            "TD-POL-021",
            name,
            f"run.insecure_options allows {', '.join(bits)}{tail}: a run may switch off "
            "capability restriction, masked paths or seccomp and still pass the gate",
            f"remove {', '.join(bits)} from run.insecure_options",
            key_path=where(name, "run", "insecure_options"),
            value=bits[0],
        )
    if _new(name, run.networks, brun.networks, ("host",)):
        yield finding(
            "TD-POL-023",
            name,
            f'run.networks allows "host"{tail}: its pods share the host\'s network stack, '
            "sockets (abstract unix sockets too) and iptables view",
            'remove "host" from run.networks (allow it only for a named scope of system tools)',
            key_path=where(name, "run", "networks"),
            value="host",
        )
    accepts = scope.require.type == "accept-anything"
    if accepts and not is_default and base.require.type != "accept-anything":
        yield finding(
            "TD-POL-022",
            name,
            f"scope {name!r} accepts anything: its images are admitted unsigned, without "
            "--insecure-options=image",
            f'set [scopes."{name}".require] type = "signed" and trust its signing key',
            key_path=where(name, "require", "type"),
        )


def runtime(policy: Policy) -> Iterator[Finding]:
    for name in (DEFAULT, *policy.scopes):
        yield from _run_rules(policy, name)
