"""rkt's mountPoint rule (stage1/common/mount.go GenerateMounts), table-driven."""

from __future__ import annotations

import json

import pytest

from trustd.privileged.executor._mounts import app_mounts
from trustd.shared.appc.manifest import ImageManifest, parse_image_manifest
from trustd.shared.request import Mount, Volume

EMPTY = Volume(name="database", kind="empty", source=None, readonly=False)
RO_HOST = Volume(name="database", kind="host", source="/srv/db", readonly=True)


def _manifest(points: list[dict[str, object]]) -> ImageManifest:
    doc = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/app",
        "app": {"exec": ["/app"], "user": "0", "group": "0", "mountPoints": points},
    }
    return parse_image_manifest(json.dumps(doc).encode(), source="manifest")


DB = {"name": "database", "path": "/db"}


@pytest.mark.parametrize(
    ("points", "requested", "volumes", "mounts", "implicit"),
    [
        # the ACE validator: no --mount, the pod volume of the same name
        ([DB], [], [EMPTY], [Mount("database", "/db")], []),
        # the mountPoint's readOnly is kept (the volume's own applies at bind time too)
        ([{**DB, "readOnly": True}], [], [EMPTY], [Mount("database", "/db", readonly=True)], []),
        ([DB], [], [RO_HOST], [Mount("database", "/db")], []),
        # a --mount at the mountPoint's path wins
        ([DB], [Mount("other", "/db/")], [EMPTY], [Mount("other", "/db/")], []),
        # no such pod volume: rkt's implicit empty volume <app>-<mountPoint>
        (
            [DB],
            [],
            [],
            [Mount("app-database", "/db")],
            [Volume("app-database", "empty", None, False)],
        ),
        ([], [Mount("x", "/x")], [], [Mount("x", "/x")], []),
    ],
)
def test_mount_points_bind_by_rkts_rule(
    points: list[dict[str, object]],
    requested: list[Mount],
    volumes: list[Volume],
    mounts: list[Mount],
    implicit: list[Volume],
    capsys: pytest.CaptureFixture[str],
) -> None:
    got = app_mounts("app", _manifest(points), requested, volumes)
    assert got == (tuple(mounts), tuple(implicit))
    warned = 'no volume specified for mount point "database"' in capsys.readouterr().err
    assert warned == bool(implicit)
