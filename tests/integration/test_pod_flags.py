"""rkt's pod-level and per-app flags of issue #13, end to end: parsed by the CLI, carried by
the typed request, applied by the root program, and checked from inside the pod."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests._policy import install_policy, policy_for_tests
from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT, app_output, rkt


def sh(
    dirs: ConfigDirs, image: str, script: str, *flags: str, pod: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return rkt(dirs, "run", *pod, image, "--exec=/bin/sh", *flags, "--", "-c", script)


def _env(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_environment_precedence_and_inherit_env(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n; another\nFROM_FILE=file\nBOTH=file\n\nOVER=file\n")
    os.environ["TRUSTD_T_INHERITED"] = "parent"
    try:
        result = sh(
            shared_dirs,
            image,
            "env",
            "--environment=OVER=app",
            pod=(
                "--inherit-env=true",
                f"--set-env-file={env_file}",
                "--set-env=BOTH=flag",
                "--set-env=OVER=flag",
            ),
        )
    finally:
        del os.environ["TRUSTD_T_INHERITED"]
    assert result.returncode == 0, result.stderr
    env = _env(app_output(result.stdout))
    assert env["TRUSTD_T_INHERITED"] == "parent"  # --inherit-env: the caller's
    assert env["FROM_FILE"] == "file" and env["BOTH"] == "flag"  # --set-env beats the file
    assert env["OVER"] == "app"  # --environment beats both
    plain = sh(shared_dirs, image, "env")
    assert "TRUSTD_T_INHERITED" not in plain.stdout  # nothing inherited without the flag


def test_a_set_env_after_the_image_applies_to_the_pod(shared_dirs: ConfigDirs, image: str) -> None:
    result = rkt(
        shared_dirs, "run", image, "--set-env=LATE=yes", "--exec=/bin/sh", "--", "-c", "env"
    )
    assert result.returncode == 0, result.stderr
    assert _env(app_output(result.stdout))["LATE"] == "yes"


def test_a_malformed_env_file_is_refused_before_any_pod(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("NOEQUALS\n")
    result = sh(shared_dirs, image, "true", pod=(f"--set-env-file={env_file}",))
    assert result.returncode == 254
    assert "environment variable must be specified as name=value" in result.stderr
    assert json.loads(rkt(shared_dirs, "list", "--format=json", check=True).stdout) == []


def test_a_mount_before_the_images_reaches_every_app(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    host = tmp_path / "shared"
    host.mkdir()
    (host / "marker").write_text("from the host")
    result = rkt(
        shared_dirs,
        "run",
        f"--volume=data,kind=host,source={host}",
        "--mount=volume=data,target=/data",
        image,
        "--name=one",
        "--exec=/bin/cat",
        "--",
        "/data/marker",
        "---",
        image,
        "--name=two",
        "--exec=/bin/cat",
        "--",
        "/data/marker",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("from the host") == 2


def test_supplementary_gids_and_oom_score_adj_inside_the_app(
    shared_dirs: ConfigDirs, image: str
) -> None:
    result = sh(
        shared_dirs,
        image,
        "grep ^Groups: /proc/self/status; cat /proc/self/oom_score_adj",
        "--user=1000",
        "--group=1000",
        "--supplementary-gids=2001,2002",
        "--oom-score-adj=500",
    )
    assert result.returncode == 0, result.stderr
    groups, oom = app_output(result.stdout).splitlines()
    assert set(groups.split()[1:]) == {"1000", "2001", "2002"}
    assert oom == "500"


def test_out_of_range_values_are_refused_with_the_range(
    shared_dirs: ConfigDirs, image: str
) -> None:
    for flag, words in (
        ("--oom-score-adj=1001", "-1000 to 1000"),
        ("--supplementary-gids=-1", "0 to 4294967294"),
        ("--cpu-shares=1", "2 to 262144"),
    ):
        result = sh(shared_dirs, image, "true", flag)
        assert result.returncode == 254, flag
        assert words in result.stderr, (flag, result.stderr)


def test_ipc_parent_is_a_policy_decision_then_shares_the_hosts_namespace(
    shared_dirs: ConfigDirs, image: str
) -> None:
    host = str(Path("/proc/self/ns/ipc").readlink())
    private = sh(shared_dirs, image, "readlink /proc/1/ns/ipc; readlink /proc/self/ns/ipc")
    assert private.returncode == 0, private.stderr
    assert host not in private.stdout
    refused = sh(shared_dirs, image, "true", pod=("--ipc=parent",))
    assert refused.returncode == 254
    assert "share the host's ipc namespace" in refused.stderr
    assert 'run.host_namespaces ["ipc"]' in refused.stderr
    text = policy_for_tests().replace(
        "[default.run]\n", '[default.run]\nhost_namespaces = ["ipc"]\n', 1
    )
    assert "host_namespaces" in text
    install_policy(shared_dirs.local, text)
    shared = sh(shared_dirs, image, "readlink /proc/self/ns/ipc", pod=("--ipc=parent",))
    assert shared.returncode == 0, shared.stderr
    assert app_output(shared.stdout).strip() == host
    bad = sh(shared_dirs, image, "true", pod=("--ipc=host",))
    assert bad.returncode == 254 and "invalid choice" in bad.stderr


def test_run_prepared_ipc_is_gated_as_run_and_a_refusal_leaves_the_pod_prepared(
    shared_dirs: ConfigDirs, image: str
) -> None:
    host = str(Path("/proc/self/ns/ipc").readlink())
    prepared = rkt(
        shared_dirs, "prepare", "--quiet", image, "--exec=/bin/readlink", "--", "/proc/self/ns/ipc"
    )
    assert prepared.returncode == 0, prepared.stderr
    uuid = prepared.stdout.strip()
    refused = rkt(shared_dirs, "run-prepared", "--ipc=parent", uuid)
    assert refused.returncode == 254
    assert 'run.host_namespaces ["ipc"]' in refused.stderr
    status = rkt(shared_dirs, "status", uuid)
    assert "state=prepared" in status.stdout, status.stdout  # nothing recorded, nothing run
    bad = rkt(shared_dirs, "run-prepared", "--ipc=host", uuid)
    assert bad.returncode == 254 and "invalid choice" in bad.stderr
    text = policy_for_tests().replace(
        "[default.run]\n", '[default.run]\nhost_namespaces = ["ipc"]\n', 1
    )
    install_policy(shared_dirs.local, text)
    shared = rkt(shared_dirs, "run-prepared", "--ipc=parent", uuid)
    assert shared.returncode == 0, shared.stderr
    assert app_output(shared.stdout).strip() == host


def test_cpu_shares_reach_the_pods_cgroup(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """The app names its cpu cgroup and waits; the host reads that group's cpu.shares
    (cgroup v1; on v2 the weight runc maps the shares to) while the app runs."""
    box = tmp_path / "box"
    box.mkdir()
    script = (
        "grep -E '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' /proc/self/cgroup > /box/cgroup.tmp; "
        "grep '^0::' /proc/self/cgroup >> /box/cgroup.tmp; mv /box/cgroup.tmp /box/cgroup; "
        "while [ ! -e /box/go ]; do sleep 0.05; done"
    )
    pod = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            f"--volume=box,kind=host,source={box}",
            "--mount=volume=box,target=/box",
            image,
            "--cpu-shares=512",
            "--exec=/bin/sh",
            "--",
            "-c",
            script,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        named = box / "cgroup"
        while not named.exists() and pod.poll() is None:
            time.sleep(0.05)
        assert named.exists(), pod.communicate(timeout=60)
        line = named.read_text().splitlines()[0]
        _, controllers, path = line.split(":", 2)
        assert path.startswith("/trustd/"), line  # the pod's own group, not the host's
        if controllers:
            shares = Path("/sys/fs/cgroup/cpu") / path.lstrip("/") / "cpu.shares"
            assert shares.read_text().strip() == "512"
        else:  # cgroup v2
            weight = Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.weight"
            assert weight.read_text().strip() == str(1 + (512 - 2) * 9999 // 262142)
    finally:
        (box / "go").touch()
        _, err = pod.communicate(timeout=120)
    assert pod.returncode == 0, err


def test_status_wait_ready_then_wait_follow_a_running_pod(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    box, uuid_file = tmp_path / "box", tmp_path / "uuid"
    box.mkdir()
    pod = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            f"--uuid-file-save={uuid_file}",
            f"--volume=box,kind=host,source={box}",
            "--mount=volume=box,target=/box",
            image,
            "--exec=/bin/sh",
            "--",
            "-c",
            "while [ ! -e /box/go ]; do sleep 0.05; done; exit 3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not (uuid_file.exists() and uuid_file.read_text()) and pod.poll() is None:
            time.sleep(0.05)
        uuid = uuid_file.read_text().strip()
        ready = rkt(shared_dirs, "status", "--wait-ready", uuid)  # bare: the UUID stays one
        assert ready.returncode == 0, ready.stderr
        assert "state=running" in ready.stdout and "started=" in ready.stdout
        short = rkt(shared_dirs, "status", "--wait=50ms", uuid)
        assert short.returncode == 254 and "still running after 50ms" in short.stderr
    finally:
        (box / "go").touch()
    done = rkt(shared_dirs, "status", "--wait", "--wait-ready=true", uuid)
    assert done.returncode == 0, done.stderr
    assert "state=exited" in done.stdout and "app-busybox=3" in done.stdout, done.stdout
    pod.communicate(timeout=120)
    assert pod.returncode == 3


def test_no_overlay_runs_from_a_private_copy(shared_dirs: ConfigDirs, image: str) -> None:
    result = sh(
        shared_dirs,
        image,
        "grep ' / ' /proc/self/mountinfo; echo written > /etc/trustd-probe; cat /etc/trustd-probe",
        pod=("--no-overlay=true",),
    )
    assert result.returncode == 0, result.stderr
    fstype = app_output(result.stdout).splitlines()[0].split(" - ", 1)[1].split()[0]
    assert fstype != "overlay"  # a bind of the pod's own copy
    assert "written" in result.stdout
    again = sh(shared_dirs, image, "cat /etc/trustd-probe")  # the shared tree is untouched
    assert again.returncode != 0


def test_annotations_and_labels_land_in_the_pod_manifest(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    uuid_file = tmp_path / "uuid"
    result = rkt(
        shared_dirs,
        "run",
        f"--uuid-file-save={uuid_file}",
        image,
        "--exec=/bin/true",
        "--annotation=example.com/a=1",
        "--user-annotation=owner=ops",
        "--user-label=tier=web",
        "--cpu-shares=512",
    )
    assert result.returncode == 0, result.stderr
    uuid = uuid_file.read_text().strip()
    manifest = json.loads(rkt(shared_dirs, "cat-manifest", uuid, check=True).stdout)
    app = manifest["apps"][0]
    assert app["annotations"] == [{"name": "example.com/a", "value": "1"}]
    assert app["app"]["userAnnotations"] == {"owner": "ops"}
    assert app["app"]["userLabels"] == {"tier": "web"}
    assert {"name": "os/linux/cpu-shares", "value": 512} in app["app"]["isolators"]


def test_pod_manifest_runs_and_conflicting_flags_are_refused(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    app: dict[str, Any] = {
        "exec": ["/bin/sh", "-c", "echo manifest-$GREETING; exit 3"],
        "user": "0",
        "group": "0",
        "environment": [{"name": "GREETING", "value": "hello"}],
    }
    manifest = {
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [
            {
                "name": "from-manifest",
                "image": {"id": image},  # an ID prefix, resolved by the CLI
                "app": app,
            }
        ],
    }
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(manifest))
    result = rkt(shared_dirs, "run", f"--pod-manifest={path}")
    assert result.returncode == 3, result.stderr
    assert "manifest-hello" in result.stdout
    for extra in ([image], ["--set-env=A=B"], ["--pull-policy=never"], ["--inherit-env"]):
        refused = rkt(shared_dirs, "run", f"--pod-manifest={path}", *extra)
        assert refused.returncode == 254, extra
        assert "conflicting flags set with --pod-manifest (see --help)" in refused.stderr
    app["isolators"] = [{"name": "os/linux/sysctl", "value": {}}]
    path.write_text(json.dumps(manifest))
    refused = rkt(shared_dirs, "run", f"--pod-manifest={path}")
    assert refused.returncode == 254 and "os/linux/sysctl" in refused.stderr


def test_deprecated_store_flags_warn_and_map_to_the_pull_policy(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    aci = str(tmp_path / "bb.aci")  # the image fixture's file
    fetched = rkt(shared_dirs, "fetch", aci, "--store-only")
    assert fetched.returncode == 0, fetched.stderr
    assert "Flag --store-only has been deprecated, please use --pull-policy=never" in (
        fetched.stderr
    )
    both = rkt(shared_dirs, "fetch", "--store-only", "--no-store", aci)
    assert both.returncode == 254 and "both --store-only and --no-store specified" in both.stderr
    ran = sh(shared_dirs, image, "true", pod=("--no-store",))
    assert ran.returncode == 0, ran.stderr
    assert "please use --pull-policy=update" in ran.stderr


def test_list_and_status_print_as_rkt_prints_them(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """rkt_list_test.go's checks: the UUID with --full, the image name, ``sha512-`` and 12
    hex digits under IMAGE ID, created and started times in Go's layout between tabs."""
    uuid_file = tmp_path / "uuid"
    rkt(shared_dirs, "run", f"--uuid-file-save={uuid_file}", image, "--exec=/bin/true", check=True)
    uuid = uuid_file.read_text().strip()
    full = rkt(shared_dirs, "list", "--full", check=True).stdout
    legend, row = full.splitlines()[:2]
    assert re.split(r"\t+", legend) == [
        "UUID",
        "APP",
        "IMAGE NAME",
        "IMAGE ID",
        "STATE",
        "CREATED",
        "STARTED",
        "NETWORKS",
    ]
    assert row.startswith(uuid) and image[:19] in row
    match = re.search(re.escape(image[:19]) + r"\t.*\t(.*)\t(.*)\t", row)
    assert match is not None, row
    for text in match.groups():
        datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S %z %Z")
    short = rkt(shared_dirs, "list", check=True).stdout
    assert "IMAGE ID" not in short and uuid[:8] in short and "ago" in short
    assert "example.com/busybox" in short
    status = rkt(shared_dirs, "status", uuid, check=True).stdout.splitlines()
    assert status[0] == "state=exited" and status[-1] == "app-busybox=0"
    datetime.strptime(status[1].removeprefix("created="), "%Y-%m-%d %H:%M:%S %z %Z")
    compact = rkt(shared_dirs, "cat-manifest", "--pretty-print=false", uuid, check=True).stdout
    pretty = rkt(shared_dirs, "cat-manifest", uuid, check=True).stdout
    assert compact.count("\n") == 1 and json.loads(compact) == json.loads(pretty)
    assert '\n\t"acKind"' in pretty
    image_cat = rkt(shared_dirs, "image", "cat-manifest", "--pretty-print=false", image)
    assert image_cat.stdout.count("\n") == 1 and '"acKind":"ImageManifest"' in image_cat.stdout


def test_uuid_file_names_the_pod_for_status_cat_manifest_and_rm(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """rkt_status_test.go: ``status --uuid-file=F`` of a prepared pod says state=prepared."""
    uuid = rkt(shared_dirs, "prepare", "--quiet", image, "--exec=/bin/true", check=True).stdout
    uuid_file = tmp_path / "uuid"
    uuid_file.write_text(uuid)
    status = rkt(shared_dirs, "status", f"--uuid-file={uuid_file}", check=True).stdout
    assert "state=prepared" in status
    assert rkt(shared_dirs, "cat-manifest", f"--uuid-file={uuid_file}").returncode == 0
    (tmp_path / "empty").write_text("")
    empty = rkt(shared_dirs, "rm", f"--uuid-file={tmp_path / 'empty'}")
    assert empty.returncode == 254 and "UUID cannot be empty" in empty.stderr
    assert rkt(shared_dirs, "rm", f"--uuid-file={uuid_file}").returncode == 0
    gone = rkt(shared_dirs, "status", f"--uuid-file={uuid_file}")
    assert gone.returncode == 254
