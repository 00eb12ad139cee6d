"""``make install`` into a scratch root, then the installed copy alone (issue #15).

Nothing of the source tree is used after the install: the installed venv's interpreter runs the
installed ``rkt`` from ``/`` with a bare environment (no PATH into the repo, no PYTHONPATH), for
``rkt version``, ``rkt policy check`` of the shipped policy it installed, and a signed busybox pod
(trust, fetch, run, then a quote a verifier checks). The stage1 digest that pod start measured
is the one this (editable) checkout computes: a verifier that pins it sees one value however
trustd was installed. The sysusers.d and tmpfiles.d files are applied by systemd's own tools
to scratch roots, and the bash completion is asked for candidates.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration.conftest import require_root
from trustd.privileged.executor import _measure
from trustd.privileged.executor.plan import PodPlan

REPO = Path(__file__).resolve().parents[2]
VENV = "usr/lib/trustd/venv"
BARE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Installed:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / VENV / "bin" / "python"

    def rkt(self, *args: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
        """The installed interpreter running the installed rkt (its shebang names the final
        /usr/lib/trustd path, which only exists once the stage is the real root)."""
        return subprocess.run(
            [str(self.python), str(self.root / VENV / "bin" / "rkt"), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            cwd="/",
            env=BARE_ENV,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    require_root()
    root = Path(tempfile.mkdtemp(prefix="trustd-install-", dir="/tmp"))
    root.chmod(0o755)  # rkt-fetch (root's fetches drop to it) runs the installed interpreter
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = BARE_ENV["PATH"]
    done = subprocess.run(
        ["make", "-C", str(REPO), "install", f"DESTDIR={root}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield Installed(root)
    shutil.rmtree(root, ignore_errors=True)


def test_the_layout_is_debians_and_no_file_names_the_stage(installed: Installed) -> None:
    root = installed.root
    link = root / "usr/bin/rkt"
    assert link.is_symlink() and str(link.readlink()) == "../lib/trustd/venv/bin/rkt"
    assert (root / VENV / "bin/rkt").read_text().startswith("#!/usr/lib/trustd/venv/bin/python\n")
    assert str((root / VENV / "bin/python3").readlink()) == "/usr/bin/python3"  # Debian's own
    for rel in (
        "usr/lib/rkt/policy.toml",
        "usr/lib/sysusers.d/rkt.conf",
        "usr/lib/tmpfiles.d/rkt.conf",
        "usr/lib/systemd/system/rkt-gc.service",
        "usr/lib/systemd/system/rkt-gc.timer",
        "usr/lib/systemd/system/rkt-metadata.service",
        "usr/lib/systemd/system/rkt-metadata.socket",
        "usr/share/man/man1/rkt-metadata-service.1.gz",
        "usr/share/bash-completion/completions/rkt",
        "usr/share/zsh/vendor-completions/_rkt",
        "usr/share/man/man1/rkt.1.gz",
        "usr/share/man/man1/rkt-trust-list.1.gz",
        "usr/share/doc/trustd/LICENSE",
    ):
        assert (root / rel).is_file(), rel
        assert (root / rel).stat().st_mode & 0o777 == 0o644, rel
    (info,) = (root / VENV).glob("lib/python3.11/site-packages/trustd-*.dist-info")
    assert not (info / "direct_url.json").exists()  # a wheel install, not a link to a checkout
    service = (root / "usr/lib/systemd/system/rkt-gc.service").read_text()
    assert "ExecStart=/usr/bin/rkt gc --grace-period=${GRACE_PERIOD}" in service
    mds = (root / "usr/lib/systemd/system/rkt-metadata.service").read_text()
    assert "ExecStart=/usr/bin/rkt metadata-service\n" in mds and "User=rkt-mds\n" in mds
    assert "CapabilityBoundingSet=\n" in mds  # the daemon refuses to serve with any capability
    staged = subprocess.run(
        ["grep", "-rl", str(root), str(root)], capture_output=True, text=True, check=False
    )
    assert staged.stdout == "", "files that name the stage:\n" + staged.stdout
    page = gzip.decompress((root / "usr/share/man/man1/rkt-trust-list.1.gz").read_bytes())
    assert page.startswith(b'.TH "RKT-TRUST-LIST" 1') and b"\\-\\-format" in page


def test_rkt_version_runs_on_the_platforms_interpreter(installed: Installed) -> None:
    result = installed.rkt("version")
    assert result.returncode == 0, result.stderr
    debian = subprocess.run(
        ["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert f"Python Version: {debian}" in result.stdout
    where = subprocess.run(
        [str(installed.python), "-c", "import trustd; print(trustd.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env=BARE_ENV,
    ).stdout
    assert where.startswith(str(installed.root / VENV)), where


def test_the_installed_shipped_policy_checks_clean(installed: Installed) -> None:
    policy = installed.root / "usr/lib/rkt/policy.toml"
    assert policy.read_bytes() == (REPO / "trustd/shared/data/policy/default.toml").read_bytes()
    result = installed.rkt("policy", "check", str(policy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loads (sha256-" in result.stdout


def test_the_missing_policy_hint_names_a_file_the_install_has(
    installed: Installed, tmp_path: Path
) -> None:
    result = installed.rkt(
        f"--system-config={tmp_path}", f"--local-config={tmp_path}", "policy", "check"
    )
    assert result.returncode == 254 and "no policy" in result.stderr
    words = shlex.split(result.stderr.split("install the shipped default: ", 1)[1].splitlines()[0])
    source = Path(words[-2])  # install -D -m 0644 SOURCE TARGET
    assert source.is_file() and source.is_relative_to(installed.root / VENV), words


def _plan(flavor: str) -> PodPlan:
    return cast(PodPlan, SimpleNamespace(uuid="u", flavor=flavor))


def test_a_pod_from_the_installed_copy_measures_the_editable_stage1_digest(
    installed: Installed, shared_dirs: ConfigDirs, keys: Keys, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)  # the fetch runs as rkt-fetch and reads the ACI
    flags = shared_dirs.flags()
    aci = busybox_aci(tmp_path / "bb.aci", "example.com/busybox")
    keys.gpg.sign(keys.good, aci, tmp_path / "bb.aci.asc")
    key = tmp_path / "k.asc"
    key.write_bytes(keys.public(keys.good))
    for args in (
        ["trust", "--prefix", "example.com", "--skip-fingerprint-review", str(key)],
        ["fetch", str(aci)],
    ):
        done = installed.rkt(*flags, *args)
        assert done.returncode == 0, done.stderr
    uuid = tmp_path / "uuid"
    run = installed.rkt(
        *flags,
        "run",
        f"--uuid-file-save={uuid}",
        "example.com/busybox",
        "--exec=/bin/sh",
        "--",
        "-c",
        "exit 5",
    )
    assert run.returncode == 5, run.stderr
    nonce = "ab" * 16
    ak, bundle = tmp_path / "ak.pem", tmp_path / "quote"
    for args in (
        ["attest", "ak", "--out", str(ak)],
        ["attest", "quote", "--nonce", nonce, "--out", str(bundle)],
    ):
        done = installed.rkt(*flags, *args)
        assert done.returncode == 0, done.stderr
    verified = installed.rkt(
        *flags, "attest", "verify", str(bundle), "--ak", str(ak), "--nonce", nonce, "--format=json"
    )
    assert verified.returncode == 0, verified.stderr
    starts = json.loads(verified.stdout)["pod_starts"]
    (start,) = [s for s in starts if s["pod"] == uuid.read_text().strip()]
    (stage1,) = [e["data"] for e in start["events"] if e["kind"] == "stage1"]
    editable = _measure._stage1(_plan("container"))["descriptor_digest"]
    assert stage1["flavor"] == "container"
    assert stage1["descriptor_digest"] == editable


def test_sysusers_makes_rkts_accounts(installed: Installed, tmp_path: Path) -> None:
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-sysusers is not installed (make setup installs systemd)")
    conf = installed.root / "usr/lib/sysusers.d/rkt.conf"
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(conf)], check=True)
    groups = {
        ln.split(":")[0]: ln.split(":")[2]
        for ln in (tmp_path / "etc/group").read_text().splitlines()
    }
    users = {
        ln.split(":")[0]: ln.split(":") for ln in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    assert {"rkt", "rkt-admin", "rkt-mds"} <= set(groups)
    assert users["rkt-fetch"][3] == groups["rkt"]  # primary group rkt (docs/adr/0005)
    assert users["rkt-mds"][3] == groups["rkt-mds"]  # not group rkt
    assert users["rkt-fetch"][6] == users["rkt-mds"][6] == "/usr/sbin/nologin"


def test_tmpfiles_lays_out_a_data_dir_trustd_accepts(installed: Installed) -> None:
    if shutil.which("systemd-tmpfiles") is None:
        pytest.skip("systemd-tmpfiles is not installed (make setup installs systemd)")
    require_root()
    subprocess.run(["bash", str(REPO / "scripts/setup-groups.sh")], check=True)
    root = Path(tempfile.mkdtemp(prefix="trustd-tmpfiles-", dir="/tmp"))
    root.chmod(0o755)  # the store's unprivileged side (rkt-fetch) must reach it
    (root / "etc").mkdir()
    for name in ("passwd", "group"):  # the host's accounts, so the gids are the host's
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    conf = installed.root / "usr/lib/tmpfiles.d/rkt.conf"
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(conf)], check=True)
    want = {"var/lib/rkt": 0o2750, "var/lib/rkt/private": 0o700, "var/lib/rkt/cas": 0o2770}
    want |= {"etc/rkt": 0o2775, "run/rkt": 0o750, "var/lib/rkt/pods/run": 0o2750}
    for rel, mode in want.items():
        st = (root / rel).stat()
        assert (st.st_mode & 0o7777, st.st_uid) == (mode, 0), rel
    data = root / "var/lib/rkt"
    before = {p: p.stat().st_mode for p in [data, *data.rglob("*")]}
    listed = installed.rkt(f"--dir={data}", "image", "list")  # root checks and sets up the store
    assert listed.returncode == 0, listed.stderr
    assert {p: p.stat().st_mode for p in before} == before  # nothing trustd had to fix
    shutil.rmtree(root)


def test_the_bash_completion_offers_commands_and_subcommands(installed: Installed) -> None:
    script = installed.root / "usr/share/bash-completion/completions/rkt"
    probe = (
        f"source {script}; "
        't() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _rkt; '
        'echo "${COMPREPLY[*]}"; }; '
        "t rkt tr; t rkt trust l; t rkt policy check --format ''"
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["trust", "list", "table json json-pretty"]


def test_the_zsh_completion_offers_commands_and_subcommands(installed: Installed) -> None:
    """zsh's completion builtins exist only inside a completion widget, so compadd and _files
    are stand-ins that print what the function offers (zsh's own matching is not under test)."""
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (make setup installs it)")
    script = installed.root / "usr/share/zsh/vendor-completions/_rkt"
    probe = (
        'compadd() { [[ $1 == -- ]] && shift; print -r -- "$*" }; _files() { print FILES }; '
        f't() {{ words=("$@"); CURRENT=${{#words}}; PREFIX=${{words[-1]}}; source {script} }}; '
        "t rkt image ''; t rkt policy check --format ''; t rkt tr"
    )
    out = subprocess.run(["zsh", "-fc", probe], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[:2] == ["list rm cat-manifest export gc render extract", "table json json-pretty"]
    assert {"trust", "image", "policy", "attest", "run"} <= set(lines[2].split())
