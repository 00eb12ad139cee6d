"""What a member of group rkt can write into the store: a re-labelled copy of a stored ACI.

Run as the member, by the system Python (standard library only: the member has no trustd):

    python3 _forge_aci.py DATA_DIR SOURCE_ID NAME VERSION ANNOTATIONS_JSON

It reads the stored image ``SOURCE_ID``, rewrites its manifest's ``name``, ``version``
label and annotations (``ANNOTATIONS_JSON`` maps an annotation name to its new value, or to
null to drop it), stores the result as a new image with an index row of that name (copied
from the source's row: the group may write any row), and prints the new image's full ID.
Nothing else is copied: the forged image has no signature.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import sys
import tarfile
from pathlib import Path


def _manifest(doc: dict[str, object], name: str, version: str, notes: dict[str, object]) -> bytes:
    doc["name"] = name
    labels = [lb for lb in doc.get("labels", []) if lb["name"] != "version"]  # type: ignore[attr-defined]
    doc["labels"] = [*labels, {"name": "version", "value": version}]
    kept = {a["name"]: a["value"] for a in doc.get("annotations", [])}  # type: ignore[attr-defined]
    for key, value in notes.items():
        kept.pop(key, None)
        if value is not None:
            kept[key] = value
    doc["annotations"] = [{"name": k, "value": v} for k, v in kept.items()]
    return json.dumps(doc).encode()


def main(data: str, source: str, name: str, version: str, notes: dict[str, object]) -> str:
    blobs = Path(data, "cas/blob/sha512")
    src = blobs / source[7:9] / source[:71]
    out = io.BytesIO()
    with (
        tarfile.open(src / "image.aci") as old,
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as new,
    ):
        for member in old.getmembers():
            body = old.extractfile(member) if member.isreg() else None
            if member.name == "manifest" and body is not None:
                raw = _manifest(json.load(body), name, version, notes)
                member.size, body = len(raw), io.BytesIO(raw)
            new.addfile(member, body)
    forged = out.getvalue()
    digest = hashlib.sha512(forged).hexdigest()
    key = "sha512-" + digest[:64]
    dst = blobs / digest[:2] / key
    dst.mkdir(parents=True)
    (dst / "image.aci").write_bytes(forged)
    db = sqlite3.connect(Path(data, "cas/db/index.sqlite"))
    with db:
        (labels,) = db.execute("SELECT labels FROM images WHERE key = ?", (source[:71],)).fetchone()
        pairs = [p for p in json.loads(labels) if p[0] != "version"] + [["version", version]]
        db.execute(
            "INSERT INTO images SELECT ?, ?, ?, ?, import_time, last_used, size,"
            " uncompressed_size, source, provenance FROM images WHERE key = ?",
            (key, digest, name, json.dumps(pairs), source[:71]),
        )
    return "sha512-" + digest


if __name__ == "__main__":
    data, source, name, version, notes = sys.argv[1:6]
    print(main(data, source, name, version, json.loads(notes)))
