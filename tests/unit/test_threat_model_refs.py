"""Every "cannot" in the threat model's group-rkt table names a test that exists.

The table (docs/threat-model.md) cites each test by a fragment of its function name, under a
letter for its file; a renamed or deleted test would silently leave a claim unbacked.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "S": "tests/integration/test_attack_store.py",
    "P": "tests/integration/test_attack_pod.py",
    "A": "tests/integration/test_attack_auth_d.py",
    "R": "tests/integration/test_root_program.py",
    "V": "tests/integration/test_policy_name_version.py",
    "T": "tests/integration/test_attack_tpm.py",
    "C": "tests/unit/test_import_contracts.py",
    "X": "tests/integration/test_attack_redteam.py",
    "Y": "tests/integration/test_attack_redteam2.py",
    "U": "tests/integration/test_private_users.py",
    "M": "tests/integration/test_metadata_service.py",
    "H": "tests/integration/test_docker_hostile_kill.py",
    "K": "tests/integration/test_policy_cache.py",
    "G": "tests/integration/test_docker_signatures.py",
    "F": "tests/integration/test_docker_sig_forgery.py",
    "N": "tests/integration/test_net.py",
    "D": "tests/integration/test_attack_docker_names.py",
    "O": "tests/integration/test_attack_docker_layout.py",
    "L": "tests/integration/test_pod_locks.py",
    "Z": "tests/integration/test_attack_redteam3.py",
    "W": "tests/integration/test_attack_redteam3_store.py",
    "Q": "tests/integration/test_attack_redteam4.py",
    "J": "tests/integration/test_attack_redteam4_store.py",
    "E": "tests/integration/test_attack_redteam5.py",
    "B": "tests/integration/test_attack_pods_gc.py",
    "I": "tests/integration/test_attack_redteam6.py",
    "AC": "tests/integration/test_attack_redteam7.py",  # the single letters are all taken
    "AD": "tests/integration/test_attack_redteam8.py",
    "AE": "tests/integration/test_attack_redteam9.py",
    "AF": "tests/integration/test_attack_redteam10.py",
    "AG": "tests/integration/test_attack_redteam11.py",
}
LETTERS = "|".join(sorted(FILES, key=len, reverse=True))


def _table() -> list[str]:
    text = (ROOT / "docs/threat-model.md").read_text()
    section = text.split("## What a member of group `rkt` can and cannot do", 1)[1]
    section = section.split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][
        1:
    ]


def test_every_row_cites_tests_that_exist() -> None:
    rows = _table()
    assert len(rows) >= 15
    for row in rows:
        cell = row.rstrip(" |").rsplit("|", 1)[-1]
        cited = re.findall(rf"\b({LETTERS})\b((?:\s*`[a-z0-9_]+`,?)*)", cell)
        assert cited, f"row cites no test: {row}"
        for letter, names in cited:
            source = (ROOT / FILES[letter]).read_text()
            defined = re.findall(r"^def (test_\w+)", source, re.M)
            for name in re.findall(r"`([a-z0-9_]+)`", names):
                assert any(name in d for d in defined), (
                    f"{letter} {name} is not a test in {FILES[letter]}"
                )
