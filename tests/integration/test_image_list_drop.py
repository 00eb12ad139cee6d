"""``rkt image list`` run by root drops to the group's identity for good once root has made
the store's directories, and from then on loads no code: every module the listing runs
was loaded before the drop (``LISTING_PRELOAD`` and the listing's own), as for the other
dropped children (trustd.unprivileged.privsep.drop: the unprivileged side should not load
code from disk as another user, and may be unable to read the installation). Each form of
the listing is run, with a row the decoder refuses among the good ones."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import ConfigDirs
from trustd.unprivileged.privsep import fetch_identity

# ``rkt`` with a spy on the drop: the modules loaded then, and those loaded by the end
SPY = r"""
import json, os, sys
import trustd.unprivileged.privsep.drop as drop
real_drop, real_exit, seen = drop._drop, os._exit, {}
def spy(identity):
    real_drop(identity)
    seen.update(modules=set(sys.modules), uid=os.getuid())
def done(code):
    late = sorted(set(sys.modules) - seen["modules"]) if seen else None
    sys.stdout.flush()
    sys.stderr.write("SPY " + json.dumps({"late": late, "uid": seen.get("uid")}) + "\n")
    sys.stderr.flush()
    real_exit(code)
drop._drop, os._exit = spy, done
from trustd.cli.main import entry
sys.argv[0] = "rkt"
entry()
"""

FORMS = [
    [],
    ["--no-legend"],
    ["--full", "--sort=name,size", "--order=desc"],
    ["--fields=id,signers,source"],
    ["--format=json"],
    ["--format=json-pretty"],
]


def _plant_refused_row(dirs: ConfigDirs) -> None:
    """A copy of the stored row under another key, its provenance not one the decoder takes."""
    digest = hashlib.sha512(b"refused").hexdigest()
    with sqlite3.connect(dirs.data / "cas" / "db" / "index.sqlite") as db:
        db.execute(
            "INSERT INTO images SELECT ?, ?, name, labels, import_time, last_used, size, "
            "uncompressed_size, source, '{\"signers\": 5}' FROM images LIMIT 1",
            (f"sha512-{digest[:64]}", digest),
        )


@pytest.mark.parametrize("form", FORMS, ids=lambda f: " ".join(f) or "table")
def test_the_listing_loads_no_code_after_it_dropped_to_the_group(
    image: str, shared_dirs: ConfigDirs, form: list[str]
) -> None:
    _plant_refused_row(shared_dirs)
    done = subprocess.run(
        [sys.executable, "-c", SPY, *shared_dirs.flags(), "image", "list", *form],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert image[: len("sha512-") + 12] in done.stdout  # the good row is listed
    assert "warning: store index" in done.stderr  # the planted row refused, with a warning
    spied = json.loads(done.stderr.rpartition("SPY ")[2])
    assert spied["uid"] == fetch_identity().uid  # it did drop, for good
    assert spied["late"] == []
