"""``--private-users`` (issue #16): the pod's root is an unprivileged uid on the host.

Checked from the host side, on a real user namespace and real idmapped mounts: the app's
/proc/PID/status, the owner on disk of what the pod wrote, a host-root file the pod's root
cannot change, the image tree left unchowned, distinct ranges for concurrent pods, the
policy requiring it, and the range in the measured pod-start event.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests._policy import install_policy, policy_for_tests
from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT, app_output, rkt, running_pod

RANGE = 65536


def _ranges(dirs: ConfigDirs) -> dict[str, int]:
    path = dirs.data / "private/userns/ranges.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _start(dirs: ConfigDirs, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [RKT, *dirs.flags(), "run", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _app_pid(pod: Path, app: str) -> int:
    """The app's host PID once it runs as the pod's root (recorded by stage1)."""
    for _ in range(300):
        pid_file = pod / "apps" / app / "pid"
        if pid_file.exists() and pid_file.read_text():
            pid = int(pid_file.read_text())
            if _status(pid)["Uid"].split()[0] != "0":
                return pid
        time.sleep(0.05)
    raise AssertionError(f"app {app} of {pod.name} did not start")


def _uuid(uuid_file: Path) -> str:
    for _ in range(300):
        if uuid_file.exists() and uuid_file.read_text().strip():
            return uuid_file.read_text().strip()
        time.sleep(0.05)
    raise AssertionError("the pod was not created")


def test_pod_root_is_an_unprivileged_uid_on_the_host(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    host = shared_dirs.data.parent / "hostvol"
    host.mkdir(mode=0o755)
    (host / "root-owned").write_text("host root's\n")
    (host / "root-owned").chmod(0o666 & 0o644)
    uuid_file = shared_dirs.data.parent / "uuid"
    script = (
        "id -u; stat -c %u /bin/busybox; cat /proc/self/uid_map; touch /data/made; "
        "echo pod >> /host/root-owned || echo CANNOT-WRITE; touch /host/new || echo CANNOT-CREATE; "
        "touch /made-in-rootfs; while [ ! -e /data/go ]; do sleep 0.05; done"
    )
    pod_run = _start(
        shared_dirs,
        "--private-users",
        f"--uuid-file-save={uuid_file}",
        "--volume=data,kind=empty",
        f"--volume=host,kind=host,source={host}",
        image,
        "--name=app",
        "--mount=volume=data,target=/data",
        "--mount=volume=host,target=/host",
        "--exec=/bin/sh",
        "--",
        "-c",
        script,
    )
    uuid = _uuid(uuid_file)
    pod = shared_dirs.data / "pods/run" / uuid
    try:
        pid = _app_pid(pod, "app")
        shift = _ranges(shared_dirs)[uuid]
        assert shift >= RANGE and shift % RANGE == 0
        status = _status(pid)
        assert status["Uid"].split() == [str(shift)] * 4  # real, effective, saved, fs
        assert status["Gid"].split() == [str(shift)] * 4
        for _ in range(200):
            if (pod / "private/volumes/data/made").exists():
                break
            time.sleep(0.05)
        (pod / "private/volumes/data/go").write_text("")
        out, err = pod_run.communicate(timeout=60)
    finally:
        if pod_run.poll() is None:
            pod_run.kill()
            pod_run.wait()
    assert pod_run.returncode == 0, err
    lines = app_output(out).split()
    assert lines[:5] == ["0", "0", "0", str(shift), str(RANGE)]  # root inside, image root-owned
    assert "CANNOT-WRITE" in lines and "CANNOT-CREATE" in lines
    assert (host / "root-owned").read_text() == "host root's\n"
    assert not (host / "new").exists()
    made = (pod / "private/volumes/data/made").stat()
    assert (made.st_uid, made.st_gid) == (shift, shift)
    upper = pod / "private/overlay/app/upper/made-in-rootfs"
    assert upper.stat().st_uid == shift  # what the pod writes is the range's on disk too
    tree = next((shared_dirs.data / "private/tree").glob("*/rootfs/bin/busybox"))
    assert tree.stat().st_uid == 0  # the image was mapped, never chowned
    log = "".join(p.read_text() for p in shared_dirs.data.rglob("eventlog*.json*"))
    assert f"{shift}:{RANGE}" in log  # the measured pod-start event records the range
    rkt(shared_dirs, "rm", uuid, check=True)
    assert uuid not in _ranges(shared_dirs)


def test_concurrent_pods_get_distinct_ranges(shared_dirs: ConfigDirs, image: str) -> None:
    files = [shared_dirs.data.parent / f"uuid{i}" for i in range(2)]
    runs = [
        _start(
            shared_dirs,
            "--private-users",
            f"--uuid-file-save={f}",
            image,
            "--exec=/bin/sh",
            "--",
            "-c",
            "cat /proc/self/uid_map",
        )
        for f in files
    ]
    outs = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        outs.append(app_output(out).split())
    uuids = [f.read_text().strip() for f in files]
    ranges = _ranges(shared_dirs)
    shifts = [ranges[u] for u in uuids]
    assert shifts[0] != shifts[1] and abs(shifts[0] - shifts[1]) >= RANGE
    assert sorted(o[1] for o in outs) == sorted(str(s) for s in shifts)
    rkt(shared_dirs, "gc", "--grace-period=0s", check=True)
    assert not set(uuids) & set(_ranges(shared_dirs))


def test_a_scope_requiring_private_users_refuses_a_pod_without(
    shared_dirs: ConfigDirs, image: str
) -> None:
    text = policy_for_tests().replace('private_users = "optional"', 'private_users = "required"')
    assert 'private_users = "required"' in text
    install_policy(shared_dirs.system, text)
    refused = rkt(shared_dirs, "run", image, "--exec=/bin/true")
    assert refused.returncode == 254
    assert "--private-users" in refused.stderr and "user namespace" in refused.stderr
    log = (shared_dirs.data / "private/decisions.jsonl").read_text()
    assert "private-users" in log
    ran = rkt(shared_dirs, "run", "--private-users", image, "--exec=/bin/sh", "--", "-c", "id -u")
    assert ran.returncode == 0, ran.stderr
    assert app_output(ran.stdout).split() == ["0"]


def test_fly_refuses_private_users_and_leaves_no_range(shared_dirs: ConfigDirs, image: str) -> None:
    result = rkt(shared_dirs, "run", "--stage1-name=fly", "--private-users", image)
    assert result.returncode == 254
    assert "--private-users does not apply to the fly stage1" in result.stderr
    assert _ranges(shared_dirs) == {}


def test_enter_joins_the_pods_user_namespace(shared_dirs: ConfigDirs, image: str) -> None:
    with running_pod(shared_dirs, image, "--private-users") as pod:
        entered = rkt(
            shared_dirs, "enter", pod.uuid, "/bin/sh", "-c", "id -u; cat /proc/self/uid_map"
        )
        assert entered.returncode == 0, entered.stderr
        assert entered.stdout.split()[:3] == ["0", "0", str(_ranges(shared_dirs)[pod.uuid])]


def test_pod_root_with_every_capability_cannot_change_its_mounts(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Capabilities and seccomp off: only the user namespace stands. The app's mount namespace
    belongs to the host's user namespace, so its root's CAP_SYS_ADMIN (inside) does not count;
    the same script without --private-users succeeds, which shows the test can fail."""
    script = (
        "grep CapEff /proc/self/status; umount /proc/timer_list && echo UNMASKED; "
        "mount -o remount,rw /proc/sys && echo PROC-SYS-RW; "
        "mount -t tmpfs none /tmp && echo MOUNTED; true"
    )

    def run(*flags: str) -> str:
        result = rkt(
            shared_dirs,
            "--insecure-options=capabilities,seccomp",
            "run",
            *flags,
            image,
            "--exec=/bin/sh",
            "--",
            "-c",
            script,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    confined = run("--private-users")
    assert "CapEff:\t000001ffffffffff" in confined  # every capability, in its namespace
    assert not {"UNMASKED", "PROC-SYS-RW", "MOUNTED"} & set(confined.split())
    assert {"UNMASKED", "PROC-SYS-RW", "MOUNTED"} <= set(run().split())


def test_prepare_allocates_the_range_and_run_prepared_uses_it(
    shared_dirs: ConfigDirs, image: str
) -> None:
    prepared = rkt(
        shared_dirs,
        "prepare",
        "--private-users",
        image,
        "--exec=/bin/sh",
        "--",
        "-c",
        "cat /proc/self/uid_map",
    )
    assert prepared.returncode == 0, prepared.stderr
    uuid = prepared.stdout.strip().splitlines()[-1].strip('"')
    shift = _ranges(shared_dirs)[uuid]
    plan = json.loads((shared_dirs.data / "pods/prepared" / uuid / "private/plan.json").read_text())
    assert plan["private_users"] == shift
    ran = rkt(shared_dirs, "run-prepared", uuid)
    assert ran.returncode == 0, ran.stderr
    assert app_output(ran.stdout).split() == ["0", str(shift), str(RANGE)]


def test_a_filesystem_that_cannot_be_idmapped_fails_closed(tmp_path: Path) -> None:
    """The error path of the idmapped mount on a real kernel: procfs has no idmap support,
    so mount_setattr(MOUNT_ATTR_IDMAP) fails and the error says so; nothing is chowned."""
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from trustd.privileged.executor import _userns, _linux as lx\n"
        "from trustd.shared.errors import PolicyViolationError\n"
        "lx.unshare(lx.CLONE_NEWNS)\n"
        "lx.mount(None, '/', None, lx.MS_REC | lx.MS_PRIVATE)\n"
        "fd = _userns.make_userns(16 * 65536)\n"
        "try:\n"
        "    _userns.idmapped_bind(Path('/proc'), Path(sys.argv[1]), fd)\n"
        "except PolicyViolationError as exc:\n"
        "    print(exc.message); print(exc.hint)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "target")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "mount_setattr(MOUNT_ATTR_IDMAP) on /proc failed" in result.stdout
    assert "never falls back to chowning" in result.stdout
    assert "idmapped mounts" in result.stdout  # the hint: the kernel it needs


def test_export_gives_the_pods_own_uids_back(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    uuid_file = shared_dirs.data.parent / "uuid"
    rkt(
        shared_dirs,
        "run",
        "--private-users",
        f"--uuid-file-save={uuid_file}",
        image,
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo root > /by-root; echo app > /by-app; chown 1000:1000 /by-app",
        check=True,
    )
    uuid = uuid_file.read_text().strip()
    shift = _ranges(shared_dirs)[uuid]
    layer = shared_dirs.data / "pods/run" / uuid / "private/overlay/busybox/upper"
    assert (layer / "by-app").stat().st_uid == shift + 1000  # on disk: the range
    out = tmp_path / "exported.aci"
    rkt(shared_dirs, "export", uuid, str(out), check=True)
    import tarfile  # noqa: PLC0415

    with tarfile.open(out) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners["rootfs/by-root"] == (0, 0) and owners["rootfs/by-app"] == (1000, 1000)
    assert owners["rootfs/bin/busybox"] == (0, 0)
