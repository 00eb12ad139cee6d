"""What a member of group rkt can do with a signed Docker image's store entry: relabel it.

Run as the member, by the system Python (standard library only):

    python3 _relabel_signed.py DATA_DIR SOURCE_ID OLD NEW

Copies the stored signed image ``SOURCE_ID`` (its ACI, signature evidence and kept layers)
to a new image in which every ``OLD`` in the reference the evidence records and in the
ACI's manifest is ``NEW`` (same length, so the tar stays as the converter wrote it: e.g.
``"v1"`` to ``"v2"`` for another tag, ``ns/good`` to ``ns/evil`` for another repository),
with an index row; prints the new image's full ID. The signatures are untouched: they still
name what was signed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import sys
import tarfile
from pathlib import Path


def main(data: str, source: str, old: str, new: str) -> str:
    assert len(old) == len(new), "same length keeps every tar header as it was"
    blobs = Path(data, "cas/blob/sha512")
    src = blobs / source[7:9] / source[:71]
    aci = bytearray((src / "image.aci").read_bytes())
    with tarfile.open(src / "image.aci") as tar:
        entry = tar.getmember("manifest")
    start, end = entry.offset_data, entry.offset_data + entry.size
    manifest = bytes(aci[start:end]).replace(old.encode(), new.encode())
    aci[start:end] = manifest
    evidence = json.loads((src / "image.aci.asc").read_bytes())
    evidence["reference"] = evidence["reference"].replace(old.strip('"'), new.strip('"'))
    digest = hashlib.sha512(aci).hexdigest()
    key = "sha512-" + digest[:64]
    dst = blobs / digest[:2] / key
    dst.mkdir(parents=True)
    for path in src.iterdir():  # the kept config and layers, as the signed manifest names them
        if path.name not in ("image.aci", "image.aci.asc"):
            shutil.copyfile(path, dst / path.name)
    (dst / "image.aci").write_bytes(aci)
    (dst / "image.aci.asc").write_text(json.dumps(evidence, sort_keys=True))
    name = json.loads(manifest)["name"]
    labels = {lb["name"]: lb["value"] for lb in json.loads(manifest).get("labels", [])}
    db = sqlite3.connect(Path(data, "cas/db/index.sqlite"))
    with db:
        db.execute(
            "INSERT INTO images SELECT ?, ?, ?, ?, import_time, last_used, size,"
            " uncompressed_size, source, provenance FROM images WHERE key = ?",
            (key, digest, name, json.dumps(sorted(labels.items())), source[:71]),
        )
    return "sha512-" + digest


if __name__ == "__main__":
    print(main(*sys.argv[1:5]))
