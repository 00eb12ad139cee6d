"""Root's compiled-policy cache, ``<dir>/private/policy.cache`` (issue #14): written by a pod
start, used while the file's digest matches, refused when anyone but root may write it, and
out of reach of a member of group rkt."""

from __future__ import annotations

from pathlib import Path

from tests._policy import policy_for_tests
from tests.conftest import ConfigDirs
from tests.integration._attacker import as_member
from tests.integration.conftest import rkt

CACHE = Path("private") / "policy.cache"


def _true(dirs: ConfigDirs, image: str) -> int:
    return rkt(dirs, "run", image, "--exec=/bin/true").returncode


def test_a_pod_start_caches_the_policy_where_only_root_writes(
    shared_dirs: ConfigDirs, image: str
) -> None:
    assert _true(shared_dirs, image) == 0
    cache = shared_dirs.data / CACHE
    st = cache.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    assert b"trustd-policy-cache 1 sha256-" in cache.read_bytes()
    attempt = as_member("/bin/sh", "-c", f"echo x >> {cache}")
    assert attempt.returncode != 0
    assert cache.read_bytes().startswith(b"trustd-policy-cache 1 ")


def test_a_changed_policy_decides_at_once_despite_the_cache(
    shared_dirs: ConfigDirs, image: str
) -> None:
    assert _true(shared_dirs, image) == 0
    denied = policy_for_tests().replace('flavors = ["container", "fly"]', 'flavors = ["fly"]')
    (shared_dirs.system / "policy.toml").write_text(denied)
    refused = rkt(shared_dirs, "run", image, "--exec=/bin/true")
    assert refused.returncode == 254
    assert "container" in refused.stderr


def test_a_cache_others_may_write_is_refused_naming_the_fix(
    shared_dirs: ConfigDirs, image: str
) -> None:
    assert _true(shared_dirs, image) == 0
    cache = shared_dirs.data / CACHE
    cache.chmod(0o622)
    refused = rkt(shared_dirs, "run", image, "--exec=/bin/true")
    assert refused.returncode == 254
    assert "policy.cache" in refused.stderr and "rm " in refused.stderr
    cache.unlink()
    assert _true(shared_dirs, image) == 0
