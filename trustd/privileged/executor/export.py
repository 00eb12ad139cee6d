"""``rkt export UUID OUT.aci``: an exited app's filesystem (tree + the pod's upper layer) as
an uncompressed ACI. The overlay is mounted read-only in a private mount namespace."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from trustd.privileged._output import check_parent, output_file
from trustd.privileged.executor import _linux as lx
from trustd.privileged.executor._isolate import preload
from trustd.privileged.executor._supervise import EXIT_STAGE1
from trustd.privileged.executor.plan import AppPlan
from trustd.privileged.executor.prepare import load_plan, require_root
from trustd.privileged.pod import Pod, PodState
from trustd.shared.errors import UserError
from trustd.shared.isolation import set_undumpable


def _unshift(shift: int | None) -> Any:
    """--private-users: what the pod wrote is owned by shift + N on disk; the ACI says N."""
    if shift is None:
        return None

    def back(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if shift <= info.uid < shift + 65536:
            info.uid -= shift
        if shift <= info.gid < shift + 65536:
            info.gid -= shift
        info.uname = info.gname = ""
        return info

    return back


def _write_aci(
    merged: Path, manifest: bytes, out: Path, *, overwrite: bool, shift: int | None = None
) -> None:
    with (
        output_file(out, overwrite=overwrite) as target,
        tarfile.open(fileobj=target, mode="w") as tar,
    ):
        info = tarfile.TarInfo("manifest")
        info.size, info.mode = len(manifest), 0o644
        tar.addfile(info, io.BytesIO(manifest))
        tar.add(merged, arcname="rootfs", recursive=True, filter=_unshift(shift))


def _export_child(
    pod: Pod, app: AppPlan, out: Path, *, overwrite: bool, shift: int | None = None
) -> None:
    set_undumpable()
    lx.unshare(lx.CLONE_NEWNS)
    lx.mount(None, "/", None, lx.MS_REC | lx.MS_PRIVATE)
    private = pod.check_private()
    layer = private / "overlay" / app.name
    with tempfile.TemporaryDirectory(prefix=".export-", dir=private) as tmp:
        merged = Path(tmp)
        lx.mount(
            "overlay",
            str(merged),
            "overlay",
            lx.MS_RDONLY,
            f"lowerdir={layer / 'upper'}:{app.rootfs}",
        )
        manifest = (Path(app.tree) / "manifest").read_bytes()
        _write_aci(merged, manifest, out, overwrite=overwrite, shift=shift)
        lx.umount(str(merged), lx.MNT_DETACH)


def export(pod: Pod, app_name: str | None, out: Path, *, overwrite: bool) -> None:
    require_root()
    state = pod.state(by_root=True)
    if state not in (PodState.EXITED, PodState.EXITED_GARBAGE):
        raise UserError(f'pod "{pod.uuid}" is {state}; only exited pods can be exported')
    if out.suffix != ".aci":
        raise UserError(f"{out}: the output must end in .aci")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise UserError(f"{out} already exists", hint="pass --overwrite")
    check_parent(out)  # before the work; the write itself never follows a link (_output)
    plan = load_plan(pod)
    apps = [a for a in plan.apps if app_name in (None, a.name)]
    if len(apps) != 1:
        raise UserError(
            "pick the app to export with --app=NAME" if apps else f"no app {app_name!r} in the pod"
        )
    preload()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - measured by the integration tests
        code = 0
        try:
            _export_child(
                pod, apps[0], out.absolute(), overwrite=overwrite, shift=plan.private_users
            )
        except BaseException as exc:  # noqa: BLE001
            print(f"export: {exc}", file=sys.stderr)
            code = EXIT_STAGE1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise UserError(f"exporting pod {pod.uuid} failed")
