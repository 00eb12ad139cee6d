"""rkt's executor semantics (issue #13), checked from inside the pod and from rkt's output.

Image ``mountPoints`` bind the pod volume of their name; a multi-app pod exits with the first
failing app's status; SIGTERM/SIGHUP reach the apps; app output lines carry rkt's
``<app>[<pid>]: `` prefix (``--interactive`` passes through); event handlers run as root with
the app's confinement otherwise; ``os/linux/no-new-privileges=false`` is honoured only when the
policy allows it; ``enter`` picks the app as rkt does.
"""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from tests._busybox import busybox_aci
from tests.conftest import ConfigDirs, Keys
from tests.integration.conftest import RKT, app_output, rkt

DEFAULT_CAPS = "00000000a80425fb"


def _fetch(dirs: ConfigDirs, keys: Keys, tmp_path: Path, name: str, **kw: object) -> str:
    aci = busybox_aci(tmp_path / f"{name.rsplit('/', 1)[-1]}.aci", name, **kw)  # type: ignore[arg-type]
    keys.gpg.sign(keys.good, aci, Path(f"{aci}.asc"))
    return rkt(dirs, "fetch", "--full", str(aci), check=True).stdout.strip()


def _status(dirs: ConfigDirs, uuid_file: Path) -> str:
    return rkt(dirs, "status", uuid_file.read_text().strip(), check=True).stdout


def _app(image: str, name: str, script: str) -> list[str]:
    return [image, f"--name={name}", "--exec=/bin/sh", "--", "-c", script, "---"]


def test_an_image_mount_point_binds_the_pod_volume_of_its_name(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    """No --mount: the image's mountPoint "data" at /data is the pod volume "data", a real
    read-write mount shared by both apps (the ACE validator's /db)."""
    extra = {"mountPoints": [{"name": "data", "path": "/data", "readOnly": False}]}
    mp = _fetch(shared_dirs, keys, tmp_path, "example.com/mp", app_extra=extra)
    result = rkt(
        shared_dirs,
        "run",
        "--volume",
        "data,kind=empty",
        *_app(mp, "writer", "echo shared > /data/msg"),
        *_app(
            mp,
            "reader",
            "while [ ! -f /data/msg ]; do sleep 0.05; done; cat /data/msg; "
            "awk '$5 == \"/data\" {print $6}' /proc/self/mountinfo",
        ),
    )
    assert result.returncode == 0, result.stderr
    reader = [ln.split(": ", 1)[1] for ln in result.stdout.splitlines() if ln.startswith("reader[")]
    assert len(reader) == 2 and reader[0] == "shared", result.stdout
    assert reader[1].split(",")[0] == "rw", reader  # a real mount, read-write
    # no such pod volume: rkt's implicit empty volume, with its warning
    alone = rkt(
        shared_dirs,
        "run",
        mp,
        "--exec=/bin/sh",
        "--",
        "-c",
        "grep -c ' /data ' /proc/self/mountinfo",
    )
    assert alone.returncode == 0, alone.stderr
    assert app_output(alone.stdout).split() == ["1"]
    assert 'no volume specified for mount point "data"' in alone.stderr


def test_the_first_failing_app_gives_the_pod_its_status(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """rkt's tests/rkt_exit_test.go: apps exiting 0, 5 and 6-later give 5; the app stopped
    meanwhile is recorded 0 (a clean stop)."""
    uuid_file = shared_dirs.data.parent / "uuid"
    result = rkt(
        shared_dirs,
        "run",
        f"--uuid-file-save={uuid_file}",
        *_app(image, "hello0", "exit 0"),
        *_app(image, "hello1", "sleep 0.3; exit 5"),
        *_app(image, "hello2", "sleep 60; exit 6"),
    )
    assert result.returncode == 5, result.stderr
    status = _status(shared_dirs, uuid_file)
    assert "state=exited" in status
    assert {"app-hello0=0", "app-hello1=5", "app-hello2=0"} <= set(status.split())
    ok = rkt(shared_dirs, "run", *_app(image, "a", "exit 0"), *_app(image, "b", "exit 0"))
    assert ok.returncode == 0, ok.stderr


def _read_until(proc: subprocess.Popen[bytes], want: bytes, seen: bytearray) -> None:
    assert proc.stdout is not None
    while want not in seen:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, f"no {want!r} from the pod; got {bytes(seen)!r}"
        chunk = proc.stdout.read1(4096)  # type: ignore[attr-defined]
        assert chunk, f"rkt's output ended before {want!r}: {bytes(seen)!r}"
        seen += chunk


def _pids_with(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return found.stdout.split()


def test_sigterm_and_sighup_reach_the_app_and_the_pod_exits_with_its_status(
    shared_dirs: ConfigDirs, image: str
) -> None:
    marker = f"trustd-signal-{time.monotonic_ns()}"
    uuid_file = shared_dirs.data.parent / "uuid"
    script = (
        f": {marker}; trap 'echo got-hup' HUP; trap 'echo got-term; exit 7' TERM; "
        "echo ready; while :; do sleep 0.1; done"
    )
    proc = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            f"--uuid-file-save={uuid_file}",
            image,
            "--exec=/bin/sh",
            "--",
            "-c",
            script,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = bytearray()
    try:
        _read_until(proc, b"ready\n", seen)
        assert _pids_with(marker)  # the app is running (the check below means something)
        proc.send_signal(signal.SIGHUP)
        _read_until(proc, b"got-hup\n", seen)
        assert proc.poll() is None  # SIGHUP is passed on, it does not stop the pod
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 7, err
    assert b"busybox[" in seen and b"got-term" in bytes(seen) + out
    status = _status(shared_dirs, uuid_file)
    assert "state=exited" in status and "app-busybox=7" in status
    assert _pids_with(marker) == []


def test_each_output_line_carries_the_app_and_its_pid_in_the_pod(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Partial lines are completed, bytes pass unchanged, stderr stays stderr, and two apps'
    lines never mix; the pid is the app's as the pod sees it ($$)."""
    result = subprocess.run(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            *_app(
                image, "one", "echo pid=$$; printf '\\377\\001bin\\n'; echo err >&2; printf tail"
            ),
            *_app(image, "two", "i=0; while [ $i -lt 200 ]; do echo two-$i; i=$((i+1)); done"),
        ],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split(b"\n")
    assert lines[-1] == b""  # every line is complete, the partial "tail" too
    one = [ln for ln in lines if ln.startswith(b"one[")]
    pid = re.fullmatch(rb"one\[(\d+)\]: pid=(\d+)", one[0])
    assert pid is not None and pid[1] == pid[2], one
    assert one[1:] == [b"one[%s]: \xff\x01bin" % pid[1], b"one[%s]: tail" % pid[1]]
    two = [ln for ln in lines if ln.startswith(b"two[")]
    assert [ln.split(b": ", 1)[1] for ln in two] == [b"two-%d" % i for i in range(200)]
    assert len(one) + len(two) == len(lines) - 1  # nothing unprefixed, nothing mixed
    assert b"one[%s]: err\n" % pid[1] in result.stderr
    interactive = rkt(shared_dirs, "run", "--interactive", image, "--exec=/bin/echo", "--", "raw")
    assert interactive.returncode == 0 and interactive.stdout == "raw\n", interactive.stderr
    prepared = rkt(shared_dirs, "prepare", image, "--exec=/bin/echo", "--", "raw", check=True)
    again = rkt(shared_dirs, "run-prepared", "--interactive", prepared.stdout.strip())
    assert again.returncode == 0 and again.stdout == "raw\n", again.stderr


def test_event_handlers_run_as_root_with_the_apps_confinement(
    shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path
) -> None:
    """rkt ran pre-start and post-stop as root; nothing else is given to them: the app's
    capability set, no_new_privs and seccomp filter apply, in the app's rootfs."""
    probe = "echo $0 uid=$(id -u); grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"
    extra = {
        "eventHandlers": [
            {"name": "pre-start", "exec": ["/bin/sh", "-c", probe, "pre"]},
            {"name": "post-stop", "exec": ["/bin/sh", "-c", probe, "post"]},
        ]
    }
    handled = _fetch(shared_dirs, keys, tmp_path, "example.com/handled", app_extra=extra)
    result = rkt(
        shared_dirs,
        "run",
        handled,
        "--user=65534",
        "--group=65534",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo main uid=$(id -u)",
    )
    assert result.returncode == 0, result.stderr
    out = app_output(result.stdout).split("\n")
    assert [ln for ln in out if "uid=" in ln] == ["pre uid=0", "main uid=65534", "post uid=0"]
    for field, value in (("CapEff", DEFAULT_CAPS), ("NoNewPrivs", "1"), ("Seccomp", "2")):
        assert [ln.split()[-1] for ln in out if ln.startswith(f"{field}:")] == [value, value]


def test_enter_picks_the_app_as_rkt_does_and_stop_is_clean(
    shared_dirs: ConfigDirs, image: str
) -> None:
    uuid_file = shared_dirs.data.parent / "uuid"
    proc = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            f"--uuid-file-save={uuid_file}",
            *_app(image, "alpha", "echo up; sleep 120"),
            *_app(image, "beta", "sleep 120"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _read_until(proc, b"up\n", bytearray())
        uuid = uuid_file.read_text().strip()
        pod = shared_dirs.data / "pods/run" / uuid
        for _ in range(600):  # both apps have recorded their pid
            if all((pod / "apps" / a / "pid").exists() for a in ("alpha", "beta")):
                break
            time.sleep(0.05)
        listed = json.loads(rkt(shared_dirs, "list", "--format=json", check=True).stdout)
        assert listed[0]["state"] == "running"
        ambiguous = rkt(shared_dirs, "enter", uuid, "/bin/true")
        assert ambiguous.returncode == 254
        assert "pod contains multiple apps:\n\talpha\n\tbeta\n" in ambiguous.stderr
        assert 'unable to determine app name: specify app using "rkt enter --app= ..."' in (
            ambiguous.stderr
        )
        entered = rkt(
            shared_dirs, "enter", "--app=beta", uuid, "/bin/sh", "-c", "echo $AC_APP_NAME"
        )
        assert entered.returncode == 0 and entered.stdout == "beta\n", entered.stderr
        missing = rkt(shared_dirs, "enter", "--app=gamma", uuid, "/bin/true")
        assert missing.returncode == 254 and "app gamma is not present in pod" in missing.stderr
        rkt(shared_dirs, "stop", uuid, check=True)  # through the pod's init: a clean stop
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0  # rkt's tests/rkt_stop_test.go: rkt run exits 0
    status = rkt(shared_dirs, "status", uuid, check=True).stdout
    assert {"state=exited", "app-alpha=0", "app-beta=0"} <= set(status.split())
