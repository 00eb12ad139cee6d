"""``rkt image list`` printed as rkt prints it (rkt/image_list.go): Go tabwriter columns
``ID NAME SIZE IMPORT TIME LAST USED``, the 12-digit short ID, humanized size and times,
``--full`` (full ID, bytes, Go's time layout), ``--fields``/``--sort`` as rkt's option
lists, and ``--format=json`` as rkt's ImageListEntry objects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ConfigDirs
from tests.unit.store.conftest import NAME, fetch, rkt
from trustd.cli._format import ibytes, unix_nanos
from trustd.shared.errors import UserError
from trustd.shared.store import ImageStore


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (9, "9 B"),
        (10, "10 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024, "10 KiB"),
        (5 * 1024**2 + 1, "5.0 MiB"),
        (123 * 1024**3, "123 GiB"),
    ],
)
def test_sizes_are_go_humanize_ibytes(size: int, text: str) -> None:
    assert ibytes(size) == text


def _ibytes_by_steps(size: int) -> str:
    """go-humanize's IBytes as it walks the units (humanize.go's logn loop)."""
    if size < 10:
        return f"{size} B"
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    exp = 0
    while size >= 1024 ** (exp + 1) and exp < len(units) - 1:
        exp += 1
    value = int(size / 1024**exp * 10 + 0.5) / 10
    return f"{value:.1f} {units[exp]}" if value < 10 else f"{value:.0f} {units[exp]}"


@given(
    st.one_of(
        st.integers(min_value=-5, max_value=1 << 70),
        st.integers(min_value=1, max_value=63).map(lambda b: (1 << b) - 1),
        st.integers(min_value=1, max_value=70).map(lambda b: 1 << b),
    )
)
def test_the_unit_from_the_bit_length_is_the_one_the_walk_finds(size: int) -> None:
    assert ibytes(size) == _ibytes_by_steps(size)


def _listed(dirs: ConfigDirs, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert rkt(dirs, "image", "list", *args) == 0
    return capsys.readouterr().out


def test_the_table_is_rkts(
    config_dirs: ConfigDirs, signed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = fetch(config_dirs, str(signed))
    (record,) = ImageStore.open(config_dirs.data).images()
    out = _listed(config_dirs, capsys)
    legend, row = out.splitlines()
    assert re.fullmatch(r"ID\t+NAME\t+SIZE\t+IMPORT TIME\t+LAST USED", legend)
    cells = re.split(r"\t+", row)
    assert cells == [key[: 7 + 12], f"{NAME}:1.0.0", ibytes(record.size), "now", "now"] or (
        cells[:3] == [key[: 7 + 12], f"{NAME}:1.0.0", ibytes(record.size)]
        and all(re.fullmatch(r"(now|\d+ seconds? ago)", c) for c in cells[3:])
    )
    # tabwriter: every cell but the last padded with tabs to its column's next tab stop
    shown_row, shown_legend = row.expandtabs(8), legend.expandtabs(8)
    assert shown_row.index(NAME) == shown_legend.index("NAME") == 24
    assert shown_row.index(cells[2]) == shown_legend.index("SIZE")

    full = _listed(config_dirs, capsys, "--full", "--no-legend").splitlines()
    (cells,) = [re.split(r"\t+", line) for line in full]
    assert cells[0] == key and cells[2] == str(record.size)
    go_layout = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,3})? [+-]\d{4} \S+"
    assert re.fullmatch(go_layout, cells[3]) and re.fullmatch(go_layout, cells[4])

    (only,) = _listed(config_dirs, capsys, "--fields=NAME,id", "--no-legend").splitlines()
    assert re.split(r"\t+", only) == [f"{NAME}:1.0.0", key[:19]]


def test_json_is_rkts_image_list_entry(
    config_dirs: ConfigDirs, signed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = fetch(config_dirs, str(signed))
    (record,) = ImageStore.open(config_dirs.data).images()
    compact = _listed(config_dirs, capsys, "--format=json")
    assert compact.count("\n") == 1 and ": " not in compact
    (entry,) = json.loads(compact)
    assert list(entry)[:5] == ["id", "name", "import_time", "last_used_time", "size"]
    assert entry["id"] == key  # full, as rkt's JSON
    assert entry["import_time"] == unix_nanos(record.import_time)
    assert entry["last_used_time"] == unix_nanos(record.last_used)
    assert entry["size"] == record.size
    pretty = _listed(config_dirs, capsys, "--format=json-pretty")
    assert pretty.startswith('[\n\t{\n\t\t"id": ') and json.loads(pretty) == [entry]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--fields=id,bogus",), "unknown option 'bogus'"),
        (("--fields=id,ID",), "duplicated option 'id'"),
        (("--sort=id",), "unknown option 'id'"),
        (("--order=sideways",), "invalid choice"),
    ],
)
def test_bad_options_are_refused_with_rkts_words(
    config_dirs: ConfigDirs, args: tuple[str, ...], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = rkt(config_dirs, "image", "list", *args)
    except (UserError, SystemExit) as exc:
        code = getattr(exc, "code", 254)
    assert code in (2, 254)
    assert says in capsys.readouterr().err
