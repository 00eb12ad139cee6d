"""An app's mounts: its ``--mount`` flags plus the image's ``mountPoints``, by rkt's rule.

rkt (stage1/common/mount.go, GenerateMounts): a ``--mount`` at a mountPoint's path wins;
otherwise the mountPoint binds the pod volume of the same name (the ACE validator's
``database`` at ``/db``, with no ``--mount``); with no such volume, an implicit ``empty``
volume named ``<app>-<mountPoint>`` is made, with rkt's warning. The mount is read-only when
the mountPoint or the volume says so.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from trustd.shared.appc.manifest import ImageManifest
from trustd.shared.request import Mount, Volume


def _implicit_warning(name: str) -> None:
    print(
        f'warning: no volume specified for mount point "{name}", implicitly creating an '
        '"empty" volume. This volume will be removed when the pod is garbage-collected.',
        file=sys.stderr,
    )


def app_mounts(
    app_name: str,
    manifest: ImageManifest,
    requested: Sequence[Mount],
    volumes: Sequence[Volume],
) -> tuple[tuple[Mount, ...], tuple[Volume, ...]]:
    """The app's mounts, and the implicit empty volumes they need (to add to the pod's)."""
    mounts = list(requested)
    taken = {m.target.rstrip("/") or "/" for m in requested}
    by_name = {v.name: v for v in volumes}
    implicit: list[Volume] = []
    points = (manifest.app.mount_points or ()) if manifest.app else ()
    for mp in points:
        path = mp.path.rstrip("/") or "/"
        if path in taken:
            continue
        taken.add(path)
        readonly = bool(mp.read_only)
        name = mp.name.value
        if name not in by_name:
            name = f"{app_name}-{name}"
            if name not in by_name:
                _implicit_warning(mp.name.value)
                vol = Volume(name=name, kind="empty", source=None, readonly=False)
                by_name[name] = vol
                implicit.append(vol)
        mounts.append(Mount(volume=name, target=mp.path, readonly=readonly))
    return tuple(mounts), tuple(implicit)
