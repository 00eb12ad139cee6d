"""The policy file as typed, frozen models (CONVENTIONS 3).

The dataclasses below *are* the file format: the TOML codec (``_codec``) and the JSON Schema
(``schema``) are both driven by their type hints and field metadata, so the three cannot drift.
Field metadata: ``doc`` (schema description), ``check`` (a function returning a problem or
None), ``key`` (the key name when it differs from the attribute; ``_meta(toml=...)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import field
from datetime import datetime
from typing import Any, Literal

from trustd.shared._dataclass import frozen
from trustd.shared.errors import TrustdError
from trustd.shared.insecure import InsecureName
from trustd.shared.isolation.caps import CAP_NAMES, DEFAULT_CAPS
from trustd.shared.net import NETWORK_NAME
from trustd.shared.ocisig.identity import IdentityType, SignedIdentity
from trustd.shared.ocisig.name import DockerName, DockerReference
from trustd.shared.policy.layouts import layouts_problem
from trustd.shared.vocab import Flavor, MeasureMode, PrivateUsersRule, SelinuxMode

Verdict = Literal["allow", "warn", "deny"]
RequireType = Literal["signed", "reject", "accept-anything"]
SignatureFormat = Literal["openpgp", "simple-signing", "sigstore"]
ALL_FORMATS: tuple[SignatureFormat, ...] = ("openpgp", "simple-signing", "sigstore")
Mode = Literal["enforce", "warn"]
HostNamespace = Literal["ipc"]  # rkt's --ipc=parent (issue #13)

SECCOMP_BUILTINS: tuple[str, ...] = ("rkt-default", "any", "unconfined")
SECCOMP_DIGEST = re.compile(r"sha256-[0-9a-f]{64}")
_PROFILE_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_FINGERPRINT = re.compile(r"[0-9a-f]{40}")
_OWNER = re.compile(r"\S.{0,199}")
DEFAULT_SECCOMP: tuple[str, ...] = ("rkt-default",)
DEFAULT_NETWORKS: tuple[str, ...] = ("default", "default-restricted", "none")
POLICY_VERSION = 1

Check = Callable[[Any], str | None]


def _meta(doc: str, check: Check | None = None, toml: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"doc": doc}
    if check is not None:
        meta["check"] = check
    if toml is not None:
        meta["key"] = toml
    return meta


def _fingerprint(value: str) -> str | None:
    if _FINGERPRINT.fullmatch(value):
        return None
    return "must be a 40-hex lowercase OpenPGP fingerprint (no spaces)"


def _threshold(value: int) -> str | None:
    return None if 1 <= value <= 32 else "must be between 1 and 32"


def _caps(value: tuple[str, ...]) -> str | None:
    unknown = sorted(set(value) - set(CAP_NAMES))
    return f"unknown capabilities: {', '.join(unknown)}" if unknown else None


def _seccomp(value: tuple[str, ...]) -> str | None:
    if not value:
        return 'must list at least one profile (use ["unconfined"] to allow none)'
    for item in value:
        if not (
            item in SECCOMP_BUILTINS
            or SECCOMP_DIGEST.fullmatch(item)
            or _PROFILE_NAME.fullmatch(item)
        ):
            return (
                f"{item!r} is not a profile name ({', '.join(SECCOMP_BUILTINS)}, a named "
                "Docker-format profile) or a digest sha256-<64 hex>"
            )
    return None


def _networks(value: tuple[str, ...]) -> str | None:
    for item in value:
        if item != "*" and not NETWORK_NAME.fullmatch(item):
            return f"{item!r} is not a network name (a-z, 0-9, '.', '_', '-'), none, host or *"
    return None


def _nonempty(value: tuple[object, ...]) -> str | None:
    return None if value else "must not be empty"


def _owner(value: str) -> str | None:
    return None if _OWNER.fullmatch(value) else "must name who owns the exception"


def _version(value: int) -> str | None:
    return None if value == POLICY_VERSION else f"must be {POLICY_VERSION}"


def _layouts(value: Mapping[str, str]) -> str | None:
    return layouts_problem(value)


def _aware(value: datetime | None) -> str | None:
    if value is not None and value.tzinfo is None:
        return "must carry a time zone (e.g. 2026-06-30T00:00:00Z)"
    return None


@frozen
class PinnedKey:
    """A key named by fingerprint, trusted for this scope inside a validity window."""

    fingerprint: str = field(metadata=_meta("primary key fingerprint", _fingerprint))
    not_before: datetime | None = field(
        default=None, metadata=_meta("not trusted before this instant", _aware)
    )
    not_after: datetime | None = field(
        default=None, metadata=_meta("not trusted after this instant", _aware)
    )

    def window_problem(self, now: datetime) -> str | None:
        if self.not_before is not None and now < self.not_before:
            return f"is pinned only from {self.not_before:%Y-%m-%d %H:%M:%S} UTC"
        if self.not_after is not None and now > self.not_after:
            return f"was pinned only until {self.not_after:%Y-%m-%d %H:%M:%S} UTC"
        return None


def _docker_ref(value: str) -> str | None:
    if not value:
        return None
    try:
        DockerReference.parse(value)
    except TrustdError as exc:
        return exc.message
    return None


def _docker_name(value: str) -> str | None:
    if not value:
        return None
    try:
        DockerName.parse(value)
    except TrustdError as exc:
        return exc.message
    return None


@frozen
class IdentityRule:
    """containers/image's ``signedIdentity``: which name a docker image's signature must carry."""

    type: IdentityType = field(
        default="matchRepoDigestOrExact",
        metadata=_meta(
            "matchRepoDigestOrExact (default), matchRepository, exactReference, "
            "exactRepository, remapIdentity"
        ),
    )
    docker_reference: str = field(
        default="", metadata=_meta("exactReference: the name signed", _docker_ref)
    )
    docker_repository: str = field(
        default="", metadata=_meta("exactRepository: the repository signed", _docker_name)
    )
    prefix: str = field(
        default="", metadata=_meta("remapIdentity: the mirror's prefix", _docker_name)
    )
    signed_prefix: str = field(
        default="",
        metadata=_meta("remapIdentity: the canonical prefix it stands for", _docker_name),
    )

    def rule(self) -> SignedIdentity:
        return SignedIdentity(
            self.type,
            self.docker_reference,
            self.docker_repository,
            self.prefix,
            self.signed_prefix,
        )

    def to_json(self) -> dict[str, str]:
        """The rule as explain and audit show it: its type and the fields it uses."""
        out: dict[str, str] = {"type": self.type}
        for name in ("docker_reference", "docker_repository", "prefix", "signed_prefix"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out

    def describe(self) -> str:
        return self.rule().describe()

    def problem(self) -> str | None:
        needs = {
            "exactReference": ("docker_reference",),
            "exactRepository": ("docker_repository",),
            "remapIdentity": ("prefix", "signed_prefix"),
        }.get(self.type, ())
        missing = [n for n in needs if not getattr(self, n)]
        return f"{self.type} needs {' and '.join(missing)}" if missing else None


@frozen
class Require:
    """Which signatures an image in this scope must carry."""

    type: RequireType = field(
        default="signed",
        metadata=_meta("signed: k distinct trusted signers; reject; accept-anything"),
    )
    keystore: bool = field(
        default=True,
        metadata=_meta("trust keys the rkt keystore holds for the image's prefix (or root)"),
    )
    fingerprints: tuple[PinnedKey, ...] = field(
        default=(), metadata=_meta("keys trusted by fingerprint (key material: the keystore)")
    )
    threshold: int = field(
        default=1, metadata=_meta("signatures needed, by distinct trusted keys", _threshold)
    )
    formats: tuple[SignatureFormat, ...] = field(
        default=ALL_FORMATS,
        metadata=_meta(
            "signature formats whose signers count: openpgp (an ACI's detached signature), "
            "simple-signing, sigstore (docker images)",
            _nonempty,
        ),
    )
    signed_identity: IdentityRule = field(
        default_factory=IdentityRule,
        metadata=_meta("the name a docker image's signature must carry (containers/image)"),
    )


@frozen
class RunRules:
    """What a run of an image in this scope may use."""

    flavors: tuple[Flavor, ...] = field(
        default=("container",), metadata=_meta("allowed stage1 flavors", _nonempty)
    )
    seccomp: tuple[str, ...] = field(
        default=DEFAULT_SECCOMP,
        metadata=_meta("allowed seccomp profiles: names or sha256-<hex> digests", _seccomp),
    )
    capabilities: tuple[str, ...] = field(
        default=tuple(sorted(DEFAULT_CAPS)),
        metadata=_meta("capability allow-list (CAP_* names)", _caps),
    )
    selinux: SelinuxMode = field(default="enforce", metadata=_meta("SELinux labelling"))
    private_users: PrivateUsersRule = field(
        default="optional",
        metadata=_meta("required: pods run only with --private-users (a user namespace)"),
    )
    insecure_options: tuple[InsecureName, ...] = field(
        default=(), metadata=_meta("--insecure-options bits that may be used at all")
    )
    allow_new_privileges: bool = field(
        default=False,
        metadata=_meta(
            "an image's os/linux/no-new-privileges=false isolator may turn no_new_privs off"
        ),
    )
    host_namespaces: tuple[HostNamespace, ...] = field(
        default=(), metadata=_meta("host namespaces the apps may share: ipc (--ipc=parent)")
    )
    networks: tuple[str, ...] = field(
        default=DEFAULT_NETWORKS,
        metadata=_meta(
            "networks a pod may join: CNI network names, none, host; * admits any CNI network "
            "(never host)",
            _networks,
        ),
    )


@frozen
class WarnException:
    """Why a scope only warns, who owns that, and when it starts enforcing."""

    owner: str = field(metadata=_meta("who answers for the exception", _owner))
    expires: datetime = field(metadata=_meta("after this instant the scope enforces", _aware))
    reason: str = field(default="", metadata=_meta("why the exception exists"))


@frozen
class Scope:
    """The rules for one image-name scope (or the default)."""

    require: Require = field(default_factory=Require, metadata=_meta("signature requirement"))
    run: RunRules = field(default_factory=RunRules, metadata=_meta("run constraints"))
    measure: MeasureMode = field(default="required", metadata=_meta("TPM measurement"))
    mode: Mode = field(default="enforce", metadata=_meta("enforce, or warn under an exception"))
    exception: WarnException | None = field(
        default=None, metadata=_meta("required when mode is warn")
    )

    def exception_active(self, now: datetime) -> bool:
        return self.mode == "warn" and self.exception is not None and now < self.exception.expires


@frozen
class Policy:
    """A whole policy file. Scope keys are parsed by ``trustd.shared.policy.scopes``."""

    version: int = field(metadata=_meta("format version", _version))
    default: Scope = field(metadata=_meta("the rules when no scope matches (mandatory)"))
    scopes: Mapping[str, Scope] = field(
        default_factory=dict,
        metadata=_meta("per image-name scope: name, name:version, prefix or *.domain"),
    )
    seccomp_profiles: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_meta(
            "extra Docker-format profiles: name -> file path (relative to the policy file)",
            toml="seccomp_profiles",
        ),
    )
    layouts: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_meta(
            "the Docker reference a local OCI layout is verified as: oci:/DIR[:TAG] -> "
            "docker://REGISTRY/NS/REPO[:TAG] (docs/adr/0028)",
            _layouts,
        ),
    )
    source: str = field(default="", compare=False, metadata={"internal": True})
    digest: str = field(default="", compare=False, metadata={"internal": True})
    text: str = field(default="", compare=False, repr=False, metadata={"internal": True})

    def scope(self, name: str) -> Scope:
        return self.default if name == "default" else self.scopes[name]
