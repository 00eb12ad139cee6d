"""Lint rules about ``[layouts]`` (docs/adr/0028): a stated name no key is trusted for
(TD-POL-028), and one whose scope admits unsigned images anyway (TD-POL-029)."""

from __future__ import annotations

from collections.abc import Iterator

from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.name import SCHEME, DockerReference
from trustd.shared.policy.findings import Finding, finding
from trustd.shared.policy.model import Policy
from trustd.shared.policy.scopes import docker_ref, resolve


def layouts(policy: Policy, keystore: Keystore) -> Iterator[Finding]:
    for key, value in policy.layouts.items():
        target = DockerReference.parse(value)  # checked at load
        name = target.name
        where = ("layouts", key)
        if not keystore.keyring_for(name).keys and not keystore.pem_keys_for(name):
            yield finding(
                "TD-POL-028",
                key,
                f"{key} is verified as {value}, but no key is trusted for {SCHEME}{name.text}: "
                "every fetch of it is refused",
                f'rkt trust --prefix "{SCHEME}{name.text}" KEY (OpenPGP, or a sigstore PEM '
                "public key), or remove the entry",
                key_path=where,
            )
        scope_key = resolve(policy, docker_ref(name, target.tag)).scope
        scope = policy.scope(scope_key)
        if scope.require.type == "accept-anything" or "image" in scope.run.insecure_options:
            yield finding(
                "TD-POL-029",
                key,
                f"{key} is verified as {value}, but scope {scope_key!r}, which judges that name "
                "at every run, admits unsigned images: the signature checked at fetch is "
                "not required when the image runs",
                f'require signatures in {scope_key!r} (require.type = "signed", no "image" in '
                f'run.insecure_options), or give "{SCHEME}{name.text}" a scope that does',
                key_path=where,
            )
