"""``docker://`` scope keys (issue #12): a Docker image is judged by its Docker name as typed,
port and all, with the same whole-segment precedence as AC names (docs/adr/0008, 0021).

Scopes written in the converted store spelling (``127.0.0.1-5000/ns``) still match, depth by
depth just after the docker:// key of the same depth, so the more specific scope wins whichever
way it is spelled; lint asks for the new spelling (TD-POL-024).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ConfigDirs
from tests.unit.policy._helpers import BASE, keystore, policy, with_base
from trustd.shared.errors import TrustdError
from trustd.shared.ocisig.name import DockerName
from trustd.shared.policy import ImageRef, resolve
from trustd.shared.policy.decide import allows_unsigned, decide_fetch, signed_identity
from trustd.shared.policy.scopes import (
    candidates,
    docker_ref,
    mangled_spelling,
    parent_of,
    parse_docker_key,
    scope_kind,
    scope_problem,
)
from trustd.unprivileged.docker import parse_docker_ref, policy_ref

SCOPES = [
    "docker://127.0.0.1:5000",
    "docker://127.0.0.1:5000/ns",
    "docker://127.0.0.1:5000/ns/app",
    "docker://127.0.0.1:5000/ns/app:v2",
    "127.0.0.1-5000/ns/legacy",  # the store's spelling, written before docker:// keys
    "127.0.0.1-5000/old",
    "docker://docker.io/library",
    "docker://localhost:5000/team",
    "*.example.com",
    "docker://registry.example.com/ns",
]
MATRIX = with_base("".join(f'[scopes."{s}"]\nmeasure = "off"\n' for s in SCOPES))

CASES = [
    ("docker://127.0.0.1:5000/ns/app:v2", "docker://127.0.0.1:5000/ns/app:v2"),
    ("docker://127.0.0.1:5000/ns/app:v1", "docker://127.0.0.1:5000/ns/app"),
    ("docker://127.0.0.1:5000/ns/app", "docker://127.0.0.1:5000/ns/app"),  # tag latest
    ("docker://127.0.0.1:5000/ns/other:1", "docker://127.0.0.1:5000/ns"),
    ("docker://127.0.0.1:5000/ns/sub/app:1", "docker://127.0.0.1:5000/ns"),
    ("docker://127.0.0.1:5000/nsx/app:1", "docker://127.0.0.1:5000"),  # whole segments
    ("docker://127.0.0.1:5001/ns/app:1", "default"),  # another port is another registry
    ("docker://127.0.0.1/ns/app:1", "default"),
    # a more specific scope in the old spelling still wins over a broader docker:// one
    ("docker://127.0.0.1:5000/ns/legacy:1", "127.0.0.1-5000/ns/legacy"),
    ("docker://127.0.0.1:5000/old/app:1", "127.0.0.1-5000/old"),
    # Docker Hub as typed: busybox is docker.io/library/busybox
    ("docker://busybox", "docker://docker.io/library"),
    ("docker://docker.io/library/busybox:1", "docker://docker.io/library"),
    ("docker://index.docker.io/library/busybox:1", "docker://docker.io/library"),
    ("docker://someone/busybox:1", "default"),
    ("docker://localhost:5000/team/app", "docker://localhost:5000/team"),
    ("docker://registry.example.com/ns/app", "docker://registry.example.com/ns"),
    ("docker://registry.example.com/other/app", "*.example.com"),
]


@pytest.mark.parametrize(("image", "want"), CASES)
def test_a_docker_image_resolves_by_its_name_as_typed(image: str, want: str) -> None:
    policy = MATRIX
    assert resolve(policy, policy_ref(parse_docker_ref(image))).scope == want


def test_an_aci_named_as_a_docker_names_conversion_is_judged_by_its_docker_scope() -> None:
    """An image's AC name is all its bytes promise: one named as a Docker name's conversion
    is judged by that name's docker:// scope whatever Docker name it claims or lacks (a
    crafted ACI must not leave a strict docker:// scope by dropping or changing its
    annotations); a more specific AC key still wins."""
    policy = MATRIX
    crafted = [
        ImageRef.parse("127.0.0.1-5000/ns/app:v2"),
        ImageRef(ImageRef.parse("127.0.0.1-5000/ns/app").name, "v2", DockerName("h.io", "x")),
    ]
    for ref in crafted:
        assert resolve(policy, ref).scope == "docker://127.0.0.1:5000/ns/app:v2"
    assert resolve(policy, ImageRef.parse("127.0.0.1-5000/nsx/y")).scope == (
        "docker://127.0.0.1:5000"
    )
    assert resolve(policy, ImageRef.parse("127.0.0.1-5000/old/x")).scope == "127.0.0.1-5000/old"
    hub = ImageRef.parse("registry-1.docker.io/library/busybox")
    assert resolve(policy, hub).scope == "docker://docker.io/library"
    assert resolve(policy, ImageRef.parse("127.0.0.1-5001/ns/app")).scope == "default"


def test_an_ac_scope_of_the_same_depth_still_decides_for_an_aci() -> None:
    """quay.io served ACIs and Docker images under the same names: beside a
    ``docker://quay.io/coreos`` scope, an ACI keeps its ``quay.io/coreos`` scope, a Docker
    image gets the docker:// one, and a deeper docker:// scope beats a broader AC one."""
    policy = with_base(
        "".join(
            f'[scopes."{s}"]\nmeasure = "off"\n'
            for s in ("quay.io/coreos", "docker://quay.io/coreos", "docker://quay.io/coreos/etcd/x")
        )
    )
    assert resolve(policy, ImageRef.parse("quay.io/coreos/etcd:1")).scope == "quay.io/coreos"
    docker = policy_ref(parse_docker_ref("docker://quay.io/coreos/etcd:1"))
    assert resolve(policy, docker).scope == "docker://quay.io/coreos"
    deeper = ImageRef.parse("quay.io/coreos/etcd/x/y")
    assert resolve(policy, deeper).scope == "docker://quay.io/coreos/etcd/x"


def test_shadowed_lists_the_broader_docker_scopes() -> None:
    policy = MATRIX
    res = resolve(policy, policy_ref(parse_docker_ref("docker://127.0.0.1:5000/ns/app:v2")))
    assert res.shadowed == (
        "docker://127.0.0.1:5000/ns/app",
        "docker://127.0.0.1:5000/ns",
        "docker://127.0.0.1:5000",
        "default",
    )


def test_candidates_interleave_the_two_spellings_depth_by_depth() -> None:
    ref = policy_ref(parse_docker_ref("docker://127.0.0.1:5000/ns/app:1"))
    assert candidates(ref) == (
        "docker://127.0.0.1:5000/ns/app:1",
        "127.0.0.1-5000/ns/app:1",
        "docker://127.0.0.1:5000/ns/app",
        "127.0.0.1-5000/ns/app",
        "docker://127.0.0.1:5000/ns",
        "127.0.0.1-5000/ns",
        "docker://127.0.0.1:5000",
        "127.0.0.1-5000",
        "*.0.0.1-5000",
        "*.0.1-5000",
        "*.1-5000",
        "default",
    )


def test_parent_of_a_docker_key() -> None:
    policy = MATRIX
    assert (
        parent_of(policy, "docker://127.0.0.1:5000/ns/app:v2") == "docker://127.0.0.1:5000/ns/app"
    )
    assert parent_of(policy, "docker://127.0.0.1:5000/ns") == "docker://127.0.0.1:5000"
    assert parent_of(policy, "docker://127.0.0.1:5000") == "default"
    assert parent_of(policy, "docker://registry.example.com/ns") == "*.example.com"


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("docker://127.0.0.1:5000", "prefix"),
        ("docker://127.0.0.1:5000/ns", "prefix"),
        ("docker://127.0.0.1:5000/ns/app:1.0", "exact"),
        ("docker://quay.io/ns/app:latest", "exact"),
    ],
)
def test_scope_kind_of_docker_keys(key: str, kind: str) -> None:
    assert scope_kind(key) == kind


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("docker://busybox", "write it as docker://docker.io/library/busybox"),
        ("docker://team/app:1", "write it as docker://docker.io/team/app:1"),
        ("docker://Quay.io/ns", "write it as docker://quay.io/ns"),
        ("docker://index.docker.io/library/x", "write it as docker://docker.io/library/x"),
        ("docker://quay.io/NS", "not lowercase"),
        ("docker://quay.io/ns/", "trailing /"),
        ("docker://quay.io//ns", "not lowercase"),
        ("docker://quay.io/ns@sha256:" + "a" * 64, "digest"),
        ("docker://quay.io/ns/app:-bad", "is not a tag"),
        ("docker://", "names no registry"),
    ],
)
def test_bad_docker_keys_are_refused_at_load_naming_the_fix(key: str, why: str) -> None:
    problem = scope_problem(key)
    assert problem is not None and why in problem, problem
    with pytest.raises(TrustdError, match="unreachable scope"):
        policy(BASE + f'[scopes."{key}"]\nmeasure = "off"\n', "bad")


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("127.0.0.1-5000/ns", "docker://127.0.0.1:5000/ns"),
        ("localhost-5000/team/app:1", "docker://localhost:5000/team/app:1"),
        ("registry.example.com-443", "docker://registry.example.com:443"),
        ("example.com/app", None),
        ("my-app/ns", None),  # no dot, not localhost: no registry
        ("docker://127.0.0.1:5000/ns", None),
        ("*.example.com", None),
    ],
)
def test_mangled_spelling(key: str, meant: str | None) -> None:
    assert mangled_spelling(key) == meant


_COMPONENT = st.from_regex(r"[a-z0-9]{1,6}([._-][a-z0-9]{1,6})?", fullmatch=True)
_HOST = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){1,2}", fullmatch=True),
    st.just("localhost"),
    st.from_regex(r"(25[0-5]|1[0-9]{2}|[1-9]?[0-9])(\.(1[0-9]{2}|[1-9]?[0-9])){3}", fullmatch=True),
)
_PORT = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
_TAG = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True))


@given(_HOST, _PORT, st.lists(_COMPONENT, min_size=0, max_size=4), _TAG)
def test_every_canonical_docker_key_round_trips(
    host: str, port: str, path: list[str], tag: str | None
) -> None:
    registry = host + port
    if registry in {"docker.io", "index.docker.io", "registry-1.docker.io"}:
        return
    if tag is not None and not path:
        tag = None  # a tag needs a repository
    key = "docker://" + "/".join([registry, *path]) + (f":{tag}" if tag else "")
    assert scope_problem(key) is None, scope_problem(key)
    name, got_tag = parse_docker_key(key)
    assert name == DockerName(registry, "/".join(path)) and got_tag == tag
    assert scope_kind(key) == ("exact" if tag else "prefix")
    ref = docker_ref(name, tag)
    assert candidates(ref)[0] == key  # the key is the first candidate of its own image


@given(st.text(max_size=40))
def test_the_key_parser_never_fails_but_with_a_trustd_error(text: str) -> None:
    key = "docker://" + text
    try:
        parse_docker_key(key)
    except TrustdError:
        assert scope_problem(key) is not None
    else:
        assert scope_problem(key) is None


REJECT_NS = with_base(
    '[scopes."docker://127.0.0.1:5000/ns".require]\ntype = "reject"\n'
    '[scopes."docker://127.0.0.1:5000/open".require]\ntype = "accept-anything"\n'
    '[scopes."docker://127.0.0.1:5000/mirror".require]\ntype = "signed"\n'
    'signed_identity = {type = "remapIdentity", prefix = "docker://127.0.0.1:5000/mirror", '
    'signed_prefix = "docker://quay.io/ns"}\n'
)


def test_the_fetch_gate_decides_by_the_docker_scope(config_dirs: ConfigDirs) -> None:
    """The fetch gate gets the AC name from the stored manifest and the Docker name from the
    verified evidence: the docker:// scope applies."""
    name = DockerName("127.0.0.1:5000", "ns/app")
    ref = policy_ref(parse_docker_ref("docker://127.0.0.1:5000/ns/app:1"))
    decision = decide_fetch(
        REJECT_NS,
        ImageRef(ref.name, ref.version),  # the AC name only, as the store records it
        ("a" * 40,),
        keystore(config_dirs),
        datetime.now(UTC),
        docker_name=name,
    )
    assert decision.verdict == "deny" and decision.scope == "docker://127.0.0.1:5000/ns"


def test_unsigned_and_identity_follow_the_docker_scope() -> None:
    policy = REJECT_NS
    opened = policy_ref(parse_docker_ref("docker://127.0.0.1:5000/open/app"))
    assert allows_unsigned(policy, opened)
    mirror = policy_ref(parse_docker_ref("docker://127.0.0.1:5000/mirror/app"))
    assert signed_identity(policy, mirror).type == "remapIdentity"
    assert signed_identity(policy, opened).type == "matchRepoDigestOrExact"


def test_explain_and_audit_show_formats_and_the_identity_rule(config_dirs: ConfigDirs) -> None:
    from trustd.shared.policy.audit import audit, render  # noqa: PLC0415
    from trustd.shared.policy.explain import explain  # noqa: PLC0415

    now = datetime.now(UTC)
    ks = keystore(config_dirs)
    doc = explain(
        REJECT_NS, policy_ref(parse_docker_ref("docker://127.0.0.1:5000/mirror/a")), ks, now
    )
    assert doc["scope"] == "docker://127.0.0.1:5000/mirror"
    assert doc["docker_name"] == "docker://127.0.0.1:5000/mirror/a"
    assert doc["require"]["formats"] == ["openpgp", "simple-signing", "sigstore"]
    assert doc["require"]["signed_identity"] == {
        "type": "remapIdentity",
        "prefix": "docker://127.0.0.1:5000/mirror",
        "signed_prefix": "docker://quay.io/ns",
    }
    report = audit(REJECT_NS, ks, [], now)
    import json  # noqa: PLC0415

    scopes = {s["scope"]: s for s in json.loads(render(report, "json"))["scopes"]}
    mirror = scopes["docker://127.0.0.1:5000/mirror"]["require"]
    assert mirror["signed_identity"]["type"] == "remapIdentity" and mirror["formats"]
    html = render(report, "html")
    assert "require.signed_identity" in html and "remapIdentity" in html
    assert "require.formats" in html and "sigstore" in html


def test_a_docker_name_that_disagrees_with_the_ac_name_is_ignored() -> None:
    """An unsigned ACI named example.com/secure whose annotations claim an open docker
    name must not escape example.com/secure's scope: a Docker name counts only when the AC
    name is its conversion (root reads it from those annotations, docs/adr/0021)."""
    policy = with_base(
        '[scopes."example.com/secure".require]\ntype = "reject"\n'
        '[scopes."docker://127.0.0.1:5000/open".require]\ntype = "accept-anything"\n'
    )
    crafted = ImageRef.parse("example.com/secure:1")
    forged = ImageRef(crafted.name, crafted.version, DockerName("127.0.0.1:5000", "open/app"))
    assert forged.docker_name is None and forged.typed == "example.com/secure:1"
    assert resolve(policy, forged).scope == "example.com/secure"
    assert not allows_unsigned(policy, forged)
    honest = policy_ref(parse_docker_ref("docker://127.0.0.1:5000/open/app"))
    assert honest.docker_name is not None and allows_unsigned(policy, honest)
