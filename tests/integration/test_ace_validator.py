"""appc's ACE validator, the way rkt ran it (tests/rkt_ace_validator_test.go), with our probe.

Two ACIs are built from appc's manifest templates (tests/vectors/appc-spec/ace/, Apache-2.0,
appc/spec@259c2eeb) around a static probe of our own (tests/integration/ace/probe.c, built
here with Debian's gcc), which checks inside the pod what the validator checks
(shared/reference/ace-validator.md): handler order and rootfs, PATH, cwd, environment, the
``database`` volume at /db as a real rw mount shared by both apps running together, the
app name, and the metadata service's contract. They run with rkt's exact command line, no
``--mount``, and all four stages must report OK in rkt's output format.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration.conftest import RKT, metadata_service

VECTORS = Path(__file__).parents[1] / "vectors" / "appc-spec" / "ace"
PROBE = Path(__file__).parent / "ace" / "probe.c"


def _probe(tmp_path: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc and libc6-dev (Makefile APT_PACKAGES installs them)")
    out = tmp_path / "ace-validator"
    subprocess.run(
        [gcc, "-static", "-O2", "-Wall", "-Werror", "-o", str(out), str(PROBE)], check=True
    )
    return out


def _aci(tmp_path: Path, template: str, probe: Path) -> Path:
    text = (VECTORS / template).read_text()
    manifest = text.replace("@ACI_OS@", "linux").replace("@ACI_ARCH@", "amd64")
    json.loads(manifest)  # the filled template is JSON
    path = tmp_path / template.replace("image_manifest_", "").replace(".json.in", ".aci")
    with tarfile.open(path, "w") as tar:

        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        raw = manifest.encode()
        m = tarfile.TarInfo("manifest")
        m.size = len(raw)
        add(m, raw)
        for d in ("rootfs", "rootfs/opt", "rootfs/opt/acvalidator"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            add(info)
        body = probe.read_bytes()
        exe = tarfile.TarInfo("rootfs/ace-validator")
        exe.size, exe.mode = len(body), 0o755
        add(exe, body)
    return path


def test_the_ace_validator_stages_all_pass_with_rkts_command_line(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    del image  # the fixture sets up groups and the policy; the ACE images are unsigned
    probe = _probe(tmp_path)
    main = _aci(tmp_path, "image_manifest_main.json.in", probe)
    sidekick = _aci(tmp_path, "image_manifest_sidekick.json.in", probe)
    with metadata_service(shared_dirs):  # --mds-register pods need the host daemon (rkt)
        result = subprocess.run(
            [
                RKT,
                *shared_dirs.flags(),
                "--insecure-options=image",
                "run",
                "--mds-register",
                "--volume",
                "database,kind=empty",
                str(main),
                str(sidekick),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for app, stage in (
        ("ace-validator-main", "prestart"),
        ("ace-validator-main", "main"),
        ("ace-validator-sidekick", "sidekick"),
        ("ace-validator-main", "poststop"),
    ):
        assert re.search(rf"^{app}\[\d+\]: {stage} OK$", out, re.MULTILINE), out + result.stderr
    order = [m[1] for m in re.finditer(r"\]: (prestart|main|poststop) OK$", out, re.MULTILINE)]
    assert order == ["prestart", "main", "poststop"], out
    assert "FAIL" not in out + result.stderr
