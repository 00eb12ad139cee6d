"""``rkt run`` of a signed busybox image, checked from inside the pod (tests by behaviour).

What the app itself sees decides: its exit status, hostname, PID namespace, /proc/self/status
(Seccomp, NoNewPrivs, CapBnd), a refused syscall's errno, a read-only /proc/sysrq-trigger,
and the memory limit killing an over-allocating process.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests._busybox import busybox_aci
from tests._policy import SHIPPED, install_policy, policy_for_tests
from tests.conftest import ConfigDirs, Keys
from tests.integration.conftest import MDS_POD_CHECKS, RKT, app_output, metadata_service, rkt

NAME = "example.com/busybox"
DEFAULT_CAPS = "00000000a80425fb"


def sh(dirs: ConfigDirs, image: str, script: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """The app's output without rkt's ``<app>[<pid>]: `` line prefix."""
    result = rkt(dirs, "run", image, "--exec=/bin/sh", *flags, "--", "-c", script)
    result.stdout = app_output(result.stdout)
    return result


def status_of(out: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def test_exit_status_hostname_and_pid_namespace(shared_dirs: ConfigDirs, image: str) -> None:
    result = sh(
        shared_dirs,
        image,
        "hostname; echo pid=$$; ls /proc | grep -c '^[0-9]'; exit 7",
    )
    assert result.returncode == 7, result.stderr
    host, pid, procs = result.stdout.split()
    assert host.startswith("rkt-") and pid == "pid=2" and int(procs) <= 4
    listed = json.loads(rkt(shared_dirs, "list", "--format=json", check=True).stdout)
    assert listed[0]["state"] == "exited" and listed[0]["apps"][0]["exit_code"] == 7


def test_default_isolation_is_applied(shared_dirs: ConfigDirs, image: str) -> None:
    # this kernel has no CONFIG_MAGIC_SYSRQ; /proc/sys gets the same read-only bind
    target = (
        "/proc/sysrq-trigger"
        if Path("/proc/sysrq-trigger").exists()
        else "/proc/sys/kernel/domainname"
    )
    result = sh(shared_dirs, image, f"cat /proc/self/status; echo x > {target}")
    fields = status_of(result.stdout)
    assert fields["Seccomp"] == "2" and fields["NoNewPrivs"] == "1"
    assert fields["CapBnd"] == DEFAULT_CAPS and fields["CapEff"] == DEFAULT_CAPS
    assert "Read-only file system" in result.stderr


def test_seccomp_remove_set_returns_the_configured_errno(
    shared_dirs: ConfigDirs, image: str
) -> None:
    result = sh(
        shared_dirs, image, "mkdir /tmp/x", "--seccomp=mode=remove,errno=ENOTSUP,mkdir,mkdirat"
    )
    assert result.returncode != 0
    assert "Not supported" in result.stderr or "not supported" in result.stderr
    assert sh(shared_dirs, image, "mkdir /tmp/x && echo made").stdout.strip() == "made"


def test_a_named_docker_profile_runs_when_the_policy_allows_it(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """moby's profile in force: Seccomp 2, kexec_load... refused with moby's EPERM, and the
    same run refused under the shipped policy, which allows only rkt-default."""
    text = policy_for_tests().replace('seccomp = ["any"]', 'seccomp = ["moby-default"]')
    install_policy(shared_dirs.local, text)
    flag = "--seccomp=profile=moby-default"
    result = sh(shared_dirs, image, "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status", flag)
    assert result.returncode == 0, result.stderr
    fields = status_of(result.stdout)
    assert fields["Seccomp"] == "2" and fields["NoNewPrivs"] == "1"
    refused = sh(shared_dirs, image, "true")  # rkt's default filter is not moby-default
    assert refused.returncode == 254 and "seccomp failed" in refused.stderr
    assert "run with --seccomp=profile=moby-default" in refused.stderr

    install_policy(shared_dirs.local, SHIPPED.read_text())
    denied = sh(shared_dirs, image, "true", flag)
    assert denied.returncode == 254
    assert "the app's seccomp filter (--seccomp profile=moby-default" in denied.stderr
    assert "is none of: rkt-default" in denied.stderr


def test_caps_retain_and_insecure_opt_outs_are_recorded(
    shared_dirs: ConfigDirs, image: str
) -> None:
    kept = sh(
        shared_dirs, image, "grep CapBnd /proc/self/status", "--caps-retain=CAP_NET_BIND_SERVICE"
    )
    assert kept.stdout.split()[-1] == "0000000000000400"
    uuid_file = shared_dirs.data.parent / "uuid"
    off = rkt(
        shared_dirs,
        "--insecure-options=seccomp,paths",
        "run",
        f"--uuid-file-save={uuid_file}",
        image,
        "--exec=/bin/sh",
        "--",
        "-c",
        "grep Seccomp: /proc/self/status",
    )
    assert app_output(off.stdout).split()[-1] == "0"
    assert "seccomp filtering is disabled" in off.stderr
    uuid = uuid_file.read_text().strip()
    plan = json.loads((shared_dirs.data / "pods/run" / uuid / "private/plan.json").read_text())
    assert set(plan["insecure"]) == {"seccomp", "paths"}
    assert plan["apps"][0]["seccomp"] is None and plan["masked_paths"] is False


def test_memory_limit_kills_an_over_allocating_app(shared_dirs: ConfigDirs, image: str) -> None:
    """tmpfs pages are charged to the app's memory cgroup: dd is OOM-killed at 32 MB."""
    uuid_file = shared_dirs.data.parent / "uuid"
    result = rkt(
        shared_dirs,
        "run",
        f"--uuid-file-save={uuid_file}",
        image,
        "--exec=/bin/sh",
        "--memory=32M",
        "--",
        "-c",
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=200 2>/dev/null; echo dd=$?",
    )
    assert app_output(result.stdout).strip() == "dd=137", (result.stdout, result.stderr)  # SIGKILL
    uuid = uuid_file.read_text().strip()
    assert (shared_dirs.data / "pods/run" / uuid / "apps/busybox/oom-killed").is_file()
    assert not list(Path("/sys/fs/cgroup/memory/trustd").glob(f"{uuid}*"))  # cleaned up


def test_a_run_is_refused_once_the_signer_is_no_longer_trusted(
    shared_dirs: ConfigDirs, image: str, keys: Keys
) -> None:
    assert sh(shared_dirs, image, "true").returncode == 0
    rkt(shared_dirs, "trust", "remove", "--prefix", "example.com", keys.good, check=True)
    refused = sh(shared_dirs, image, "true")
    assert refused.returncode == 254
    assert "which is no longer trusted for it" in refused.stderr


def test_prepare_then_run_prepared_and_gc(shared_dirs: ConfigDirs, image: str) -> None:
    uuid = rkt(shared_dirs, "prepare", image, "--exec=/bin/true", check=True).stdout.strip()
    assert "state=prepared" in rkt(shared_dirs, "status", uuid, check=True).stdout
    assert rkt(shared_dirs, "run-prepared", uuid).returncode == 0
    status = rkt(shared_dirs, "status", uuid, check=True).stdout
    assert "state=exited" in status and "app-busybox=0" in status
    for fmt in ("json", "json-pretty"):  # rkt's api/v1 Pod, as encoding/json prints it
        out = rkt(shared_dirs, "status", f"--format={fmt}", uuid, check=True).stdout
        doc = json.loads(out)
        assert doc["name"] == uuid and doc["state"] == "exited"
        assert doc["apps"][0]["exit_code"] == 0 and doc["apps"][0]["state"] == "exited"
        assert out.count("\n") == 1 if fmt == "json" else out.startswith('{\n\t"name"')
    assert rkt(shared_dirs, "gc", "--grace-period=0s", check=True).returncode == 0
    assert rkt(shared_dirs, "status", uuid).returncode == 254


def test_fly_shares_the_host_namespaces(shared_dirs: ConfigDirs, image: str) -> None:
    result = rkt(
        shared_dirs,
        "run",
        "--stage1-name=fly",
        image,
        "--exec=/bin/sh",
        "--",
        "-c",
        "ls /proc | grep -c '^[0-9]'",
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 5  # the host's processes


def test_unprivileged_users_cannot_run(shared_dirs: ConfigDirs, image: str) -> None:
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=rkt-fetch",
            "--regid=rkt",
            "--init-groups",
            RKT,
            *shared_dirs.flags(),
            "run",
            image,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 254
    assert "run: cannot run as unprivileged user" in result.stderr


def test_two_apps_share_a_volume_and_event_handlers_run_in_order(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    handlers: dict[str, object] = {
        "eventHandlers": [
            {"name": "pre-start", "exec": ["/bin/sh", "-c", "echo pre-start >> /data/log"]},
            {"name": "post-stop", "exec": ["/bin/sh", "-c", "echo post-stop >> /data/log"]},
        ]
    }
    aci = busybox_aci(tmp_path / "h.aci", "example.com/handlers", app_extra=handlers)
    keys.gpg.sign(keys.good, aci, tmp_path / "h.aci.asc")
    second = rkt(shared_dirs, "fetch", "--full", str(aci), check=True).stdout.strip()
    uuid_file = shared_dirs.data.parent / "uuid"
    result = rkt(
        shared_dirs,
        "run",
        f"--uuid-file-save={uuid_file}",
        "--volume",
        "data,kind=empty",
        image,
        "--name=writer",
        "--mount",
        "volume=data,target=/data",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo shared > /data/msg",
        "---",
        second,
        "--name=reader",
        "--mount",
        "volume=data,target=/data",
        "--exec=/bin/sh",
        "--",
        "-c",
        "while [ ! -f /data/msg ]; do sleep 0.05; done; cat /data/msg; "
        "echo app >> /data/log; grep -c ' /data ' /proc/self/mountinfo",
    )
    assert result.returncode == 0, result.stderr
    assert app_output(result.stdout).split() == ["shared", "1"]
    pod = shared_dirs.data / "pods/run" / uuid_file.read_text().strip()
    assert (pod / "private/volumes/data/log").read_text().split() == [
        "pre-start",
        "app",
        "post-stop",
    ]
    status = rkt(shared_dirs, "status", uuid_file.read_text().strip(), check=True).stdout
    assert "app-writer=0" in status and "app-reader=0" in status


def test_export_of_an_exited_app_includes_what_it_wrote(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    uuid_file = shared_dirs.data.parent / "uuid"
    rkt(
        shared_dirs,
        "run",
        f"--uuid-file-save={uuid_file}",
        image,
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo written-in-pod > /etc/motd; rm /etc/group",
        check=True,
    )
    out = tmp_path / "exported.aci"
    rkt(shared_dirs, "export", uuid_file.read_text().strip(), str(out), check=True)
    import tarfile  # noqa: PLC0415

    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        motd = tar.extractfile("rootfs/etc/motd")
        assert motd is not None and motd.read() == b"written-in-pod\n"
    assert "manifest" in names and "rootfs/bin/busybox" in names
    assert "rootfs/etc/group" not in names  # the deletion (an overlay whiteout) is honoured
    refused = rkt(shared_dirs, "export", uuid_file.read_text().strip(), str(out))
    assert refused.returncode == 254 and "already exists" in refused.stderr


def test_metadata_service_for_the_pod(shared_dirs: ConfigDirs, image: str) -> None:
    """appc MDS from the host daemon: token in the URL, exact content types, HMAC sign/verify
    (spec/ace.md); without the token nothing is served."""
    uuid_file = shared_dirs.data.parent / "uuid"
    script = (
        MDS_POD_CHECKS
        + 'wget -q -O /dev/null "${AC_METADATA_URL%/*}/acMetadata/v1/pod/uuid" || echo no-token; '
        'echo "$AC_METADATA_URL"'
    )
    with metadata_service(shared_dirs):
        result = rkt(
            shared_dirs,
            "run",
            "--mds-register",
            f"--uuid-file-save={uuid_file}",
            image,
            "--exec=/bin/sh",
            "--",
            "-c",
            script,
        )
    assert result.returncode == 0, result.stderr
    uuid, image_id, *rest = app_output(result.stdout).split()
    assert uuid == uuid_file.read_text().strip()
    assert image_id.startswith(image) and len(image_id) == len("sha512-") + 128  # the full ID
    *answers, url = rest
    assert answers == ["verified", "refused", "no-token"]
    token = url.rsplit("/", 1)[-1]
    assert len(token) >= 32  # at least 128 bits, base64url
    pod = shared_dirs.data / "pods/run" / uuid
    assert '"mds": true' in (pod / "private/plan.json").read_text()
    for f in pod.rglob("*"):  # the token is never recorded in the pod's files
        if f.is_file() and not f.is_symlink() and "stage1" not in f.parts:
            assert token.encode() not in f.read_bytes(), f


def test_list_and_status_work_for_group_rkt(shared_dirs: ConfigDirs, image: str) -> None:
    uuid_file = shared_dirs.data.parent / "uuid"
    rkt(shared_dirs, "run", f"--uuid-file-save={uuid_file}", image, "--exec=/bin/true", check=True)
    as_member = [
        "setpriv",
        "--reuid=rkt-fetch",
        "--regid=rkt",
        "--init-groups",
        RKT,
        *shared_dirs.flags(),
    ]
    listed = subprocess.run(
        [*as_member, "list", "--no-legend"], capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert uuid_file.read_text().strip()[:8] in listed.stdout
    status = subprocess.run(
        [*as_member, "status", uuid_file.read_text().strip()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "state=exited" in status.stdout and "app-busybox=0" in status.stdout
    removed = subprocess.run(
        [*as_member, "rm", uuid_file.read_text().strip()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert removed.returncode == 254 and "cannot run as unprivileged user" in removed.stderr
