"""A member of group rkt crafts Docker names to get root to judge an image by a looser scope.

The member (a real unprivileged user in group rkt, tests/integration/_attacker.py) writes
what the group can write: an ACI of their own made from a stored Docker image with its name
and ``appc.io/docker/*`` annotations rewritten, its index row, or another image's index row
renamed. Root runs the image by ID and by name with ``--insecure-options=image`` (the
opt-out the ``default`` scope allows); the policy rejects ``example.com/secure`` and
``docker://REGISTRY/ns/secure``, and accepts anything under ``docker://REGISTRY/ns/open``.
Each attack must end in a refusal that names the scope, exit 254, no pod, store unchanged.
(docs/threat-model.md, letter D; the rule: a Docker name counts only where the AC name is
its conversion, and a docker:// scope covers every image named as its conversion.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration import _signed
from tests.integration._attacker import member, snapshot
from tests.integration._registry import needs_registry_tools
from tests.integration._signed import Signed, fetch, ids, private_state, require, trustd_dirs
from tests.integration.conftest import rkt

pytestmark = needs_registry_tools
signed = _signed.signed  # the module-scoped signed registry (tests/integration/_signed.py)

REGISTRY = "appc.io/docker/registryurl"
REPOSITORY = "appc.io/docker/repository"


def _policy(dirs: ConfigDirs, host: str) -> None:
    from tests._policy import install_policy, policy_for_tests  # noqa: PLC0415

    scopes = {
        "example.com/secure": 'type = "reject"',
        f"docker://{host}/ns/secure": 'type = "reject"',
        f"docker://{host}/ns/open": 'type = "accept-anything"',
    }
    extra = "".join(f'\n[scopes."{k}".require]\n{v}\n' for k, v in scopes.items())
    install_policy(dirs.system, policy_for_tests() + extra)


def _forge(dirs: ConfigDirs, source: str, name: str, notes: dict[str, str | None]) -> str:
    """As the member: a copy of ``source`` named ``name`` version v1 with ``notes``."""
    script = dirs.data.parent / "forge_aci.py"
    shutil.copyfile(Path(__file__).with_name("_forge_aci.py"), script)
    script.chmod(0o644)
    made = member("/usr/bin/python3", str(script), str(dirs.data), source, name, "v1",
                  json.dumps(notes))  # fmt: skip
    return made.stdout.strip()


def _pods(dirs: ConfigDirs) -> list[str]:
    return [p for p in private_state(dirs) if p.startswith("pods/")]


def _mangled(host: str) -> str:
    return host.replace(":", "-")


def _refused(dirs: ConfigDirs, scope: str, *target: str) -> None:
    """Root refuses to run each target (an ID or NAME:VERSION), naming ``scope``; nothing of
    the store changes and no pod gets past prepare (root may have rendered the image into
    its own ``private/tree`` before the run gate refused it: nothing runs from there)."""
    store = snapshot(dirs.data / "cas" / "blob")
    listed, pods = ids(dirs), _pods(dirs)
    for what in target:
        ran = rkt(dirs, "--insecure-options=image", "run", what, "--exec=/bin/echo",
                  "--", "must-not-run")  # fmt: skip
        assert ran.returncode == 254, (what, ran.stdout, ran.stderr)
        assert "must-not-run" not in ran.stdout
        assert scope in ran.stderr, (what, ran.stderr)
    assert snapshot(dirs.data / "cas" / "blob") == store
    assert ids(dirs) == listed and _pods(dirs) == pods


@pytest.fixture
def unsigned(signed: Signed, shared_dirs: ConfigDirs) -> str:
    """The policy above and an honest unsigned Docker image in the store (its stage1 too)."""
    _policy(shared_dirs, signed.host)
    image_id = fetch(signed, shared_dirs, "ns/unsigned:v1", "--insecure-options=http,image")
    ran = rkt(shared_dirs, "--insecure-options=image", "run", image_id, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr  # the default scope allows the opt-out
    return image_id


def test_annotations_claiming_an_open_docker_name_do_not_leave_the_ac_names_scope(
    signed: Signed, shared_dirs: ConfigDirs, unsigned: str
) -> None:
    forged = _forge(
        shared_dirs,
        unsigned,
        "example.com/secure",
        {REGISTRY: signed.host, REPOSITORY: "ns/open/app"},
    )
    _refused(shared_dirs, "example.com/secure", forged, "example.com/secure:v1")


@pytest.mark.parametrize(
    "notes",
    [
        {REPOSITORY: "ns/open/app"},  # another repository of the same registry
        {REGISTRY: "docker.io", REPOSITORY: "library/busybox"},  # another registry
        {REGISTRY: None, REPOSITORY: None},  # no Docker origin at all
    ],
    ids=["open-repository", "other-registry", "no-origin"],
)
def test_an_image_named_as_a_strict_docker_names_conversion_is_judged_by_that_scope(
    signed: Signed, shared_dirs: ConfigDirs, unsigned: str, notes: dict[str, str | None]
) -> None:
    """The AC name ``HOST-PORT/ns/secure/app`` is what ``docker://HOST:PORT/ns/secure/app``
    converts to: whatever the annotations say, the docker:// scope for that name decides."""
    name = f"{_mangled(signed.host)}/ns/secure/app"
    forged = _forge(shared_dirs, unsigned, name, notes)
    _refused(shared_dirs, f"docker://{signed.host}/ns/secure", forged, f"{name}:v1")


def test_an_index_row_renamed_into_a_strict_docker_scope_is_refused(
    signed: Signed, shared_dirs: ConfigDirs, unsigned: str
) -> None:
    """The member renames the honest image's row to a name under the strict scope: a run
    of that name resolves to those bytes, whose own manifest names another image."""
    name = f"{_mangled(signed.host)}/ns/secure/app"
    db = shared_dirs.data / "cas" / "db" / "index.sqlite"
    member("/usr/bin/python3", "-c",
           "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
           "db.execute('UPDATE images SET name = ? WHERE key = ?', (sys.argv[2], sys.argv[3])); "
           "db.commit()", str(db), name, unsigned[:71])  # fmt: skip
    store = snapshot(shared_dirs.data / "cas" / "blob")
    ran = rkt(shared_dirs, "--insecure-options=image", "run", f"{name}:v1", "--exec=/bin/echo",
              "--", "must-not-run")  # fmt: skip
    assert ran.returncode == 254, ran.stdout + ran.stderr
    assert "must-not-run" not in ran.stdout
    assert str(name) in ran.stderr, ran.stderr
    assert snapshot(shared_dirs.data / "cas" / "blob") == store


# -- the loose identity rule: what a member can relabel (issue #12) -----------------------------
MATCH_REPOSITORY = 'signed_identity = {type = "matchRepository"}'


def _relabel(dirs: ConfigDirs, source: str, old: str, new: str) -> str:
    """As the member: ``source``'s store entry copied with ``old`` relabelled ``new`` in the
    evidence's reference and the ACI's manifest (tests/integration/_relabel_signed.py)."""
    script = dirs.data.parent / "relabel_signed.py"
    shutil.copyfile(Path(__file__).with_name("_relabel_signed.py"), script)
    script.chmod(0o644)
    made = member("/usr/bin/python3", str(script), str(dirs.data), source, old, new)
    return made.stdout.strip()


def _signed_good(signed: Signed, dirs: ConfigDirs, tmp_path: Path, identity: str = "") -> str:
    trustd_dirs(signed, dirs, tmp_path)
    if identity:
        require(dirs, identity)
    good = fetch(signed, dirs, "ns/good:v1", "--insecure-options=http")
    ran = rkt(dirs, "run", good, "--exec=/bin/echo")
    assert ran.returncode == 0, ran.stderr
    return good


def test_relabelling_signed_content_under_another_tag_needs_the_loose_identity_rule(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """ns/good signed as ns/good:v1, relabelled v2 by the member (evidence and ACI alike,
    so root's own conversion is that ACI): the default rule (matchRepoDigestOrExact) refuses
    it as naming another image."""
    good = _signed_good(signed, shared_dirs, tmp_path)
    relabelled = _relabel(shared_dirs, good, '"v1"', '"v2"')
    ran = rkt(shared_dirs, "run", relabelled, "--exec=/bin/echo", "--", "must-not-run")
    assert ran.returncode == 254, ran.stdout + ran.stderr
    assert "must-not-run" not in ran.stdout
    assert "names another image" in ran.stderr, ran.stderr


def test_match_repository_accepts_a_relabel_within_the_repository_and_no_other(
    signed: Signed, shared_dirs: ConfigDirs, tmp_path: Path
) -> None:
    """Under ``signed_identity = matchRepository`` a signature for ns/good:v1 vouches for
    every tag of ns/good (containers/image's meaning of the rule): the member's relabel to
    v2 runs as ns/good:v2, the same signed bytes. Relabelled into another repository
    (ns/evil, the same content) it is refused, and nothing of it runs."""
    good = _signed_good(signed, shared_dirs, tmp_path, MATCH_REPOSITORY)
    v2 = _relabel(shared_dirs, good, '"v1"', '"v2"')
    ran = rkt(shared_dirs, "run", v2, "--exec=/bin/echo", "--", "ran-as-v2")
    assert ran.returncode == 0, ran.stderr
    assert "ran-as-v2" in ran.stdout
    decided = json.loads(
        (shared_dirs.data / "private" / "decisions.jsonl").read_text().splitlines()[-1]
    )["decision"]
    assert decided["image"].endswith("/ns/good:v2"), decided
    assert decided["signature"]["docker_name"] == f"docker://{signed.host}/ns/good"
    evil = _relabel(shared_dirs, good, "ns/good", "ns/evil")
    store, pods = snapshot(shared_dirs.data / "cas" / "blob"), _pods(shared_dirs)
    ran = rkt(shared_dirs, "run", evil, "--exec=/bin/echo", "--", "must-not-run")
    assert ran.returncode == 254, ran.stdout + ran.stderr
    assert "must-not-run" not in ran.stdout
    assert "names another image" in ran.stderr, ran.stderr
    assert snapshot(shared_dirs.data / "cas" / "blob") == store and _pods(shared_dirs) == pods
