"""Attacks on a pod's state and its stage1, tried for real (issue #10, classes 2, 5, 6, 10, 11).

The attacker is a real member of group rkt (``trustd-it-user``, through setpriv), or the app
itself (root in its pod, with the default capabilities). Each test shows the attack refused
and the pod's state, or the host, unchanged:

- class 10: the pod's plan, its manifest and the secrets passed with ``--set-env`` are
  root-only; ``rkt cat-manifest`` needs root; ``rkt list``/``status`` still work for the group.
- class 2: a setuid-root binary an app writes into its upper layer is unreachable.
- class 5: an fd rkt inherited (``9</etc``, runc CVE-2024-21626) reaches neither the app nor a
  process started by ``rkt enter``.
- class 6: a mount target behind an absolute symlink in the image lands inside the rootfs.
- class 11: the pod's init is non-dumpable (the metadata service is the host daemon, tested
  in test_metadata_service.py).
"""

from __future__ import annotations

import re
import secrets
import stat
import subprocess
from pathlib import Path

from tests._busybox import busybox_aci
from tests._policy import install_policy, policy_for_tests
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import as_member, rkt_as_member, snapshot
from tests.integration.conftest import RKT, app_output, rkt, running_pod


def pod_dir(dirs: ConfigDirs, uuid: str) -> Path:
    return dirs.data / "pods/run" / uuid


def run_saving_uuid(dirs: ConfigDirs, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    uuid_file = dirs.data.parent / f"uuid-{secrets.token_hex(4)}"
    result = rkt(dirs, "run", f"--uuid-file-save={uuid_file}", *args)
    return result, uuid_file.read_text().strip()


WITH_FD9 = ("sh", "-c", 'exec 9</etc; exec "$@"', "sh")  # ``9</etc`` for the command


# --- class 10: secrets in pod state -----------------------------------------------------


def test_group_rkt_cannot_read_the_plan_manifest_or_env_secrets(
    shared_dirs: ConfigDirs, image: str
) -> None:
    secret = f"s3cret-{secrets.token_hex(16)}"
    result, uuid = run_saving_uuid(
        shared_dirs, image, f"--set-env=TRUSTD_SECRET={secret}", "--exec=/bin/true"
    )
    assert result.returncode == 0, result.stderr
    pod = pod_dir(shared_dirs, uuid)
    private = pod / "private"
    st = private.lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 0, 0)
    for name in ("plan.json", "pod"):
        assert secret in (private / name).read_text()  # the secret is there, for root
        assert stat.S_IMODE((private / name).stat().st_mode) == 0o600
    before = snapshot(pod)

    for name in ("plan.json", "pod"):
        read = as_member("cat", str(private / name))
        assert read.returncode != 0 and "Permission denied" in read.stderr, read
    searched = as_member("grep", "-r", "-l", secret, str(shared_dirs.data))
    assert searched.stdout == "", searched.stdout  # no file the group can read holds it
    assert "Permission denied" in searched.stderr  # it tried, and private/ refused it
    cat = rkt_as_member(shared_dirs, "cat-manifest", uuid)
    assert cat.returncode == 254 and "only root may read" in cat.stderr, cat.stderr
    assert secret not in cat.stdout + cat.stderr
    listed = rkt_as_member(shared_dirs, "list", "--no-legend", "--full")
    assert listed.returncode == 0 and uuid in listed.stdout and "busybox" in listed.stdout
    assert secret not in listed.stdout
    status = rkt_as_member(shared_dirs, "status", uuid)
    assert "state=exited" in status.stdout and "app-busybox=0" in status.stdout

    assert snapshot(pod) == before
    as_root = rkt(shared_dirs, "cat-manifest", uuid, check=True)
    assert secret in as_root.stdout  # root still reads it


# --- class 2: a setuid binary in the app's writable layer --------------------------------


def test_a_setuid_binary_written_by_the_app_is_unreachable_for_group_rkt(
    shared_dirs: ConfigDirs, image: str
) -> None:
    result, uuid = run_saving_uuid(
        shared_dirs,
        image,
        "--exec=/bin/sh",
        "--",
        "-c",
        "cp /bin/busybox /tmp/rootsh && chmod 4755 /tmp/rootsh",
    )
    assert result.returncode == 0, result.stderr
    pod = pod_dir(shared_dirs, uuid)
    planted = pod / "private/overlay/busybox/upper/tmp/rootsh"
    st = planted.stat()  # the app did plant it (as root sees)
    assert st.st_uid == 0 and st.st_mode & stat.S_ISUID
    assert not (pod / "overlay").exists()
    before = snapshot(pod)

    ran = as_member(str(planted), "id", "-u")
    assert ran.returncode != 0 and "Permission denied" in ran.stderr, ran
    found = as_member("find", str(shared_dirs.data), "-perm", "-4000")
    assert found.stdout == "", found.stdout  # nothing setuid is reachable by the group
    listing = as_member("ls", str(pod / "private"))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr

    assert snapshot(pod) == before


# --- class 5: inherited fds --------------------------------------------------------------


def _fd_script(marker: str) -> str:
    """``ls -l /proc/self/fd`` (ls itself adds one fd: its listing of that dir), then fd 9."""
    return (
        "ls -l /proc/self/fd; "
        "ls /proc/self/fd/9/ >/dev/null 2>&1 && echo fd9:open || echo fd9:closed; "
        f"touch /proc/self/fd/9/{marker} 2>/dev/null; true"
    )


def _rkt_with_fd9(dirs: ConfigDirs, *args: str) -> subprocess.CompletedProcess[str]:
    """``rkt ARGS`` started with ``9</etc`` open, as runc CVE-2024-21626's attacker would."""
    return subprocess.run(
        [*WITH_FD9, RKT, *dirs.flags(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _only_stdio(out: str) -> None:
    out = app_output(out)
    fds = dict(re.findall(r"^l\S+ .* (\d+)(?: -> (\S+))?$", out, flags=re.MULTILINE))
    assert set(fds) == {"0", "1", "2", "3"}, out  # no 9, no pipe, no lock fd
    assert re.fullmatch(r"(/proc/\d+/fd)?", fds["3"]), out  # ls's own listing (closed since)
    assert "fd9:closed" in out.splitlines()


def test_an_fd_rkt_inherited_does_not_reach_the_app(shared_dirs: ConfigDirs, image: str) -> None:
    marker = f"trustd-attack-{secrets.token_hex(4)}"
    control = subprocess.run(
        [*WITH_FD9, "ls", "/proc/self/fd/9/"], capture_output=True, text=True, check=True
    )
    assert "passwd" in control.stdout.split()  # the wrapper does hand the command 9</etc
    result = _rkt_with_fd9(
        shared_dirs, "run", image, "--exec=/bin/sh", "--", "-c", _fd_script(marker)
    )
    assert result.returncode == 0, result.stderr
    _only_stdio(result.stdout)
    assert not Path("/etc", marker).exists()


def test_fds_are_closed_before_a_retain_set_filter_is_loaded(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Under a retain set close_range is not allowed (ENOSYS, seccomp.ENOSYS_FALLBACK) and a
    syscall the set lacks kills: the fds are made close-on-exec before the filter is loaded,
    so the confined app starts, and without fd 9."""
    marker = f"trustd-attack-{secrets.token_hex(4)}"
    result = _rkt_with_fd9(
        shared_dirs,
        "run",
        image,
        "--seccomp=mode=retain,@docker/default-whitelist",
        "--exec=/bin/sh",
        "--",
        "-c",
        _fd_script(marker),
    )
    assert result.returncode == 0, result.stderr
    _only_stdio(result.stdout)
    assert not Path("/etc", marker).exists()


def test_an_fd_rkt_enter_inherited_does_not_reach_the_entered_process(
    shared_dirs: ConfigDirs, image: str
) -> None:
    marker = f"trustd-attack-{secrets.token_hex(4)}"
    with running_pod(shared_dirs, image) as pod:
        entered = _rkt_with_fd9(shared_dirs, "enter", pod.uuid, "/bin/sh", "-c", _fd_script(marker))
    assert entered.returncode == 0, entered.stderr
    _only_stdio(entered.stdout)
    assert not Path("/etc", marker).exists()


# --- class 6: a mount target behind an absolute symlink ----------------------------------


def _symlinked_image(dirs: ConfigDirs, keys: Keys, tmp_path: Path) -> str:
    aci = busybox_aci(tmp_path / "ln.aci", "example.com/symlinked", symlinks={"data": "/etc"})
    keys.gpg.sign(keys.good, aci, tmp_path / "ln.aci.asc")
    return rkt(dirs, "fetch", "--full", str(aci), check=True).stdout.strip()


def test_a_mount_target_behind_an_absolute_symlink_lands_inside_the_rootfs(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    linked = _symlinked_image(shared_dirs, keys, tmp_path)
    sub = f"trustd-attack-{secrets.token_hex(4)}"
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "from-host").write_text("volume\n")
    etc_before = sorted(p.name for p in Path("/etc").iterdir())
    below = rkt(
        shared_dirs,
        "run",
        "--volume",
        f"v,kind=host,source={volume}",
        linked,
        "--mount",
        f"volume=v,target=/data/{sub}",
        "--exec=/bin/sh",
        "--",
        "-c",
        f"ls /etc/{sub}; echo pod > /data/{sub}/from-pod",
    )
    assert below.returncode == 0, below.stderr
    # /data -> /etc resolved in the rootfs: the directory was made in the rootfs's /etc
    assert app_output(below.stdout).split() == ["from-host"], below.stdout
    assert not Path("/etc", sub).exists()  # nothing created on the host's /etc
    assert (volume / "from-pod").read_text() == "pod\n"
    on_it = rkt(
        shared_dirs,
        "run",
        "--volume",
        f"ro,kind=host,source={volume},readOnly=true",
        linked,
        "--mount",
        "volume=ro,target=/data",
        "--exec=/bin/sh",
        "--",
        "-c",
        "cat /etc/from-host; touch /data/written 2>/dev/null || echo read-only",
    )
    assert on_it.returncode == 0, on_it.stderr
    assert app_output(on_it.stdout).split() == ["volume", "read-only"], on_it.stdout
    assert not Path("/etc/written").exists() and not Path("/etc/from-host").exists()
    assert sorted(p.name for p in Path("/etc").iterdir()) == etc_before
    assert sorted(p.name for p in volume.iterdir()) == ["from-host", "from-pod"]


# --- class 11: dumpable stage1, the metadata service's privileges ------------------------

PROBE = (
    "for f in exe cwd root; do readlink /proc/$P/$f >/dev/null 2>&1 "
    "&& echo open:$f || echo refused:$f; done; "
    "for f in environ mem maps; do head -c 1 /proc/$P/$f >/dev/null 2>&1 "
    "&& echo open:$f || echo refused:$f; done; "
    "readlink /proc/$P/fd/0 >/dev/null 2>&1 && echo open:fd || echo refused:fd; "
    "readlink /proc/self/exe >/dev/null && echo control:self-exe-open"
)
DEFAULT_CAPS = "00000000a80425fb"  # appc/rkt's default 14 capabilities
REFUSED = [f"refused:{f}" for f in ("exe", "cwd", "root", "environ", "mem", "maps", "fd")]


def test_the_app_cannot_open_the_pod_init_through_proc(shared_dirs: ConfigDirs, image: str) -> None:
    """PID 1 holds every capability the app lacks, and is non-dumpable besides."""
    result = rkt(shared_dirs, "run", image, "--exec=/bin/sh", "--", "-c", f"P=1; {PROBE}")
    assert result.returncode == 0, result.stderr
    assert app_output(result.stdout).split() == [*REFUSED, "control:self-exe-open"], result.stdout


def test_a_handler_cannot_open_the_stage1_process_that_confined_it(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    """The app's stage1 process runs the pre-start handler (as root, as rkt did) and waits
    for it, still root with every capability and the whole pod plan (every app's env) in its
    memory. Its being non-dumpable, and the handler holding only the app's capabilities,
    keep the handler out of its /proc entries."""
    handler = ["/bin/sh", "-c", f"P=$PPID; {PROBE}"]
    extra: dict[str, object] = {"eventHandlers": [{"name": "pre-start", "exec": handler}]}
    aci = busybox_aci(tmp_path / "pre.aci", "example.com/prestart", app_extra=extra)
    keys.gpg.sign(keys.good, aci, tmp_path / "pre.aci.asc")
    probed = rkt(shared_dirs, "fetch", "--full", str(aci), check=True).stdout.strip()
    result = rkt(shared_dirs, "run", probed, "--exec=/bin/true")
    assert result.returncode == 0, result.stderr
    assert app_output(result.stdout).split() == [*REFUSED, "control:self-exe-open"], result.stdout


def test_a_root_handler_gets_no_more_than_the_apps_confinement(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    """Event handlers run as uid 0 (rkt's behaviour, also under --user), but with the app's
    capability set, no_new_privs and seccomp filter, in the app's rootfs and namespaces: a
    handler cannot mount, write a sysctl, or gain a capability the app lacks."""
    script = (
        "id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
        "mount -t tmpfs none /tmp 2>/dev/null && echo mounted || echo mount-refused; "
        "echo x > /proc/sys/kernel/domainname 2>/dev/null && echo sysctl || echo sysctl-refused; "
        "hostname"
    )
    extra: dict[str, object] = {
        "eventHandlers": [{"name": "pre-start", "exec": ["/bin/sh", "-c", script]}]
    }
    aci = busybox_aci(tmp_path / "root-handler.aci", "example.com/root-handler", app_extra=extra)
    keys.gpg.sign(keys.good, aci, tmp_path / "root-handler.aci.asc")
    probed = rkt(shared_dirs, "fetch", "--full", str(aci), check=True).stdout.strip()
    result = rkt(shared_dirs, "run", probed, "--user=65534", "--group=65534", "--exec=/bin/true")
    assert result.returncode == 0, result.stderr
    uid, *fields, mount, sysctl, host = app_output(result.stdout).splitlines()
    assert uid == "0"
    assert dict(f.split(":\t") for f in fields) == {
        "CapEff": DEFAULT_CAPS,
        "CapBnd": DEFAULT_CAPS,
        "NoNewPrivs": "1",
        "Seccomp": "2",
    }
    assert (mount, sysctl) == ("mount-refused", "sysctl-refused")
    assert host.startswith("rkt-")  # the pod's UTS namespace, not the host's


def test_an_image_turning_no_new_privs_off_is_refused_unless_the_policy_allows_it(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    """no_new_privs off lets a setuid binary raise the app's privileges: only the policy may
    allow it (run.allow_new_privileges); the seccomp filter is loaded either way."""
    isolators = [{"name": "os/linux/no-new-privileges", "value": False}]
    aci = busybox_aci(tmp_path / "nnp.aci", "example.com/nnp", isolators=isolators)
    keys.gpg.sign(keys.good, aci, tmp_path / "nnp.aci.asc")
    nnp = rkt(shared_dirs, "fetch", "--full", str(aci), check=True).stdout.strip()
    script = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"
    args = ("run", nnp, "--user=65534", "--group=65534", "--exec=/bin/sh", "--", "-c", script)
    refused = rkt(shared_dirs, *args)
    assert refused.returncode == 254
    assert "os/linux/no-new-privileges isolator is false" in refused.stderr
    assert "run.allow_new_privileges = true" in refused.stderr
    text = policy_for_tests().replace(
        "allow_new_privileges = false", "allow_new_privileges = true", 1
    )
    install_policy(shared_dirs.local, text)
    allowed = rkt(shared_dirs, *args)
    assert allowed.returncode == 0, allowed.stderr
    fields = dict(ln.split(":\t") for ln in app_output(allowed.stdout).splitlines())
    assert fields == {"NoNewPrivs": "0", "Seccomp": "2"}  # the filter is still loaded
    plain = rkt(shared_dirs, "run", image, "--exec=/bin/sh", "--", "-c", script)
    assert "NoNewPrivs:\t1" in app_output(plain.stdout)  # only the image's isolator turns it off


def test_a_pod_in_the_old_layout_is_refused_with_a_hint_and_can_be_removed(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """A pod prepared before the private/ layout kept its plan readable by group rkt: root
    refuses to run it (its plan may have been read or swapped) and says how to get rid of it."""
    uuid = rkt(shared_dirs, "prepare", image, "--exec=/bin/true", check=True).stdout.strip()
    pod = shared_dirs.data / "pods/prepared" / uuid
    for name in ("plan.json", "pod"):  # what an older trustd left
        (pod / "private" / name).rename(pod / name)
    (pod / "private" / "lock").unlink()  # nor had it root's own lock
    (pod / "private").rmdir()
    refused = rkt(shared_dirs, "run-prepared", uuid)
    assert refused.returncode == 254 and "old layout" in refused.stderr, refused.stderr
    assert f"rkt rm {uuid}" in refused.stderr
    assert (pod / "plan.json").exists()  # nothing ran, nothing moved
    rkt(shared_dirs, "rm", uuid, check=True)
    assert not pod.exists()
