"""``rkt policy`` as a user and a CI job meet it: JSON, SARIF and JUnit parse back; exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.conftest import ConfigDirs, Keys
from tests.unit.policy._helpers import FIXTURES, keystore, trust
from trustd.cli.main import main
from trustd.shared.policy import load_policy
from trustd.shared.policy.audit import AuditReport, audit, image_rows, render, to_json
from trustd.shared.store.model import ImageRecord, Provenance

NOW = datetime.now(UTC)


def _record(name: str, signers: tuple[str, ...], insecure: bool, n: int) -> ImageRecord:
    return ImageRecord(
        key=f"sha512-{n:064x}",
        digest="00" * 64,
        name=name,
        labels=(("version", "1.0"),),
        import_time=NOW,
        last_used=NOW,
        size=1,
        uncompressed_size=1,
        source="test",
        provenance=Provenance(signers, insecure, NOW.isoformat()),
    )


@pytest.fixture
def setup(config_dirs: ConfigDirs, keys: Keys) -> tuple[ConfigDirs, Keys]:
    trust(config_dirs, keys, keys.good, "example.com/app")
    (config_dirs.local / "policy.toml").write_text(
        (FIXTURES / "threshold-unreachable-pass.toml").read_text()
    )
    return config_dirs, keys


def _report(dirs: ConfigDirs, keys: Keys) -> AuditReport:
    records = [
        _record("example.com/app", (keys.good.lower(),), False, 1),
        _record("example.com/app", (keys.rsa.lower(),), False, 2),
        _record("other.org/x", (), True, 3),
    ]
    return audit(load_policy(dirs.local / "policy.toml"), keystore(dirs), records, NOW)


def test_json_report_parses_back_with_controls(setup: tuple[ConfigDirs, Keys]) -> None:
    report = _report(*setup)
    doc = json.loads(render(report, "json"))
    assert doc == to_json(report)
    assert doc["schema"] == "trustd.shared.policy.audit/v1"
    rules = {f["rule_id"] for f in doc["findings"]}
    assert {"TD-IMG-001", "TD-IMG-002"} <= rules
    denied = [f for f in doc["findings"] if f["rule_id"] == "TD-IMG-001"]
    assert len(denied) == 2  # the rsa-signed one and the unverified one
    assert all("CIS-Docker-4.5" in f["controls"] for f in denied)
    assert [d["verdict"] for d in doc["images"]] == ["allow", "deny", "deny"]


def test_sarif_is_well_formed(setup: tuple[ConfigDirs, Keys]) -> None:
    doc = json.loads(render(_report(*setup), "sarif"))
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in {"note", "warning", "error"}
        assert result["message"]["text"]


def test_junit_is_well_formed(setup: tuple[ConfigDirs, Keys]) -> None:
    report = _report(*setup)
    suite = ET.fromstring(render(report, "junit").split("\n", 1)[1])  # noqa: S314 - our own output
    assert suite.tag == "testsuite"
    failures = suite.findall("testcase/failure")
    assert len(failures) == int(suite.attrib["failures"]) == len(to_json(report)["findings"])


def _rkt(dirs: ConfigDirs, *args: str) -> int:
    return main([*dirs.flags(), *args])


def test_cli_audit_fail_on(
    setup: tuple[ConfigDirs, Keys], capsys: pytest.CaptureFixture[str]
) -> None:
    dirs, _ = setup
    assert _rkt(dirs, "policy", "audit", "--format=json", "--fail-on=critical") == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["by_severity"]["critical"] == 0
    assert summary["findings"] == 2  # the fixture's measure = "off" and selinux = "off"
    assert _rkt(dirs, "policy", "audit", "--format=sarif", "--fail-on=medium") == 1
    json.loads(capsys.readouterr().out)  # no store: policy only
    assert _rkt(dirs, "policy", "audit", "--format=sarif", "--fail-on=high") == 0
    json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("fixture", "code"), [("key-missing-fail", 1), ("key-missing-pass", 0)])
def test_cli_check_exit_code(
    setup: tuple[ConfigDirs, Keys],
    tmp_path: Path,
    fixture: str,
    code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dirs, keys = setup
    text = (FIXTURES / f"{fixture}.toml").read_text()
    path = tmp_path / "p.toml"
    path.write_text(text.replace("{absent}", "b" * 40).replace("{good}", keys.good.lower()))
    assert _rkt(dirs, "policy", "check", str(path)) == code
    out = capsys.readouterr().out
    assert ("TD-POL-004" in out) == (code == 1)


def test_cli_check_invalid_policy_exits_254(
    config_dirs: ConfigDirs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.toml"
    path.write_text('version = 1\n[default]\nmod = "enforce"\n')
    assert _rkt(config_dirs, "policy", "check", str(path)) == 254
    err = capsys.readouterr().err
    assert f"check: policy {path}:3: default.mod: unknown key" in err


def test_cli_without_policy_file_refuses(
    config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    (config_dirs.system / "policy.toml").unlink()  # the fixture installs the tests' policy
    assert _rkt(config_dirs, "policy", "explain", "example.com/app") == 254
    assert "no policy" in capsys.readouterr().err


def test_cli_explain_json(
    setup: tuple[ConfigDirs, Keys], capsys: pytest.CaptureFixture[str]
) -> None:
    dirs, _keys = setup
    assert _rkt(dirs, "policy", "explain", "--format=json", "example.com/app/sub:2") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scope"] == "example.com/app"
    assert doc["shadows"] == ["default"]
    assert doc["require"]["keys"][0]["state"] == "usable"
    assert _rkt(dirs, "policy", "explain", "example.com/other") == 0
    assert "scope:    default" in capsys.readouterr().out


def test_cli_schema(config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str]) -> None:
    assert _rkt(config_dirs, "policy", "schema") == 0
    assert json.loads(capsys.readouterr().out)["title"] == "trustd policy.toml"


def _weak_report(dirs: ConfigDirs, keys: Keys) -> AuditReport:
    records = [
        _record("example.com/open", (), False, 4),
        _record("example.com/app", (keys.good.lower(),), False, 5),
    ]
    return audit(load_policy(FIXTURES / "weak.toml"), keystore(dirs), records, NOW)


def test_sarif_results_carry_line_and_column(setup: tuple[ConfigDirs, Keys]) -> None:
    doc = json.loads(render(_weak_report(*setup), "sarif"))
    results = doc["runs"][0]["results"]
    lines = (FIXTURES / "weak.toml").read_text().splitlines()
    located = [r for r in results if r["ruleId"].startswith("TD-POL-")]
    assert located
    for result in located:
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == (FIXTURES / "weak.toml").as_uri()
        region = physical["region"]
        assert region["startLine"] >= 1
        assert region["startColumn"] >= 1
        assert lines[region["startLine"] - 1][region["startColumn"] - 1 :].strip()
    seccomp = next(r for r in results if r["ruleId"] == "TD-POL-014")
    region = seccomp["locations"][0]["physicalLocation"]["region"]
    assert lines[region["startLine"] - 1][region["startColumn"] - 1 :].startswith('"unconfined"')


def test_json_report_has_each_scopes_effective_rules(setup: tuple[ConfigDirs, Keys]) -> None:
    doc = to_json(_weak_report(*setup))
    scopes = {s["scope"]: s for s in doc["scopes"]}
    assert set(scopes) == {"default", "example.com/open"}
    assert scopes["example.com/open"]["require"]["type"] == "accept-anything"
    assert scopes["example.com/open"]["run"]["flavors"] == ["container", "fly"]  # from default
    assert scopes["example.com/open"]["shadows"] == "default"


def test_table_rows_give_each_images_verdict(setup: tuple[ConfigDirs, Keys]) -> None:
    rows = image_rows(_weak_report(*setup))
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("example.com/open:1.0", "example.com/open", "ALLOW"),
        ("example.com/app:1.0", "default", "DENY"),
    ]
    assert "the scope rejects every image" in rows[1][4]


def test_cli_audit_table_lists_stored_images(
    setup: tuple[ConfigDirs, Keys],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dirs, keys = setup
    records = [_record("example.com/app", (keys.good.lower(),), False, 6)]
    monkeypatch.setattr("trustd.cli._store.records", lambda _options, *a: records)
    assert _rkt(dirs, "policy", "audit", "--fail-on=never") == 0
    out = capsys.readouterr().out
    assert "IMAGE" in out
    assert "VERDICT" in out
    row = next(line for line in out.splitlines() if line.startswith("example.com/app:1.0"))
    assert "ALLOW" in row
    assert "LINE" in out.splitlines()[2]


EVIL = "<script>document.title='PWNED'</script><img src=x onerror=alert(1)>"


def test_html_escapes_every_string(setup: tuple[ConfigDirs, Keys]) -> None:
    import dataclasses  # noqa: PLC0415
    import html.parser  # noqa: PLC0415

    report = _weak_report(*setup)
    evil_image = dataclasses.replace(report.images[0], image=EVIL, scope=EVIL, image_id=EVIL)
    evil_scope = {**report.scopes[1], "scope": EVIL, "mode": EVIL}
    evil_finding = dataclasses.replace(report.findings[0], subject=EVIL, message=EVIL, fix=EVIL)
    report = dataclasses.replace(
        report,
        policy_source=EVIL,
        findings=(evil_finding, *report.findings[1:]),
        images=(*report.images, evil_image),
        scopes=(*report.scopes, evil_scope),
    )
    page = render(report, "html")

    class Tags(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: set[str] = set()
            self.text: list[str] = []
            self.attrs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.add(tag)
            self.attrs += [name for name, _ in attrs]

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    parser = Tags()
    parser.feed(page)
    assert "script" not in parser.tags
    assert "img" not in parser.tags
    assert "onerror" not in parser.attrs
    assert sum(EVIL in t for t in parser.text) >= 6  # shown as text wherever it was put
    assert "http://" not in page
    assert "https://" not in page
    assert "default-src 'none'" in page


def test_html_lists_findings_images_and_scopes(setup: tuple[ConfigDirs, Keys]) -> None:
    report = _weak_report(*setup)
    page = render(report, "html")
    assert page.count('<tr class="finding"') == len(report.findings)
    assert page.count('<tr class="image"') == len(report.images)
    assert page.count('<div class="scope">') == 2
    for f in report.findings:
        assert f'data-rule="{f.rule_id}"' in page
    assert "CIS-Docker-5.21" in page


def test_cli_explain_names_a_layout_by_the_reference_layouts_states(
    config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (FIXTURES / "layout-name-admits-unsigned-pass.toml").read_text()
    (config_dirs.local / "policy.toml").write_text(text)
    assert _rkt(config_dirs, "policy", "explain", "--format=json", "oci:/srv/images/app:v3") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["layout"] == {
        "key": "oci:/srv/images/app",
        "docker_reference": "docker://registry.example.com/layouts/app:v3",
    }
    assert doc["scope"] == "docker://registry.example.com/layouts"
    assert _rkt(config_dirs, "policy", "explain", "oci:/srv/other:v1") == 0
    out = capsys.readouterr().out
    assert "layout:   not in [layouts]: only an unsigned import" in out
    assert "scope:    default" in out
