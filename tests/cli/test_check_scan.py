"""``shield check`` and ``shield scan``: output, exit codes 0/1/2, the JSON shape, the console script."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shield.cli import main

GOOD = '[spec]\nname = "demo"\n\n[[rule]]\nid = "no-foo"\nforbid.literal = "foo"\n\n[[rule]]\nid = "digits"\nforbid.regex = \'[0-9]{3}\'\n'
BAD_KEY = '[spec]\nname = "demo"\n\n[[rule]]\nid = "no-foo"\nforbd.literal = "foo"\n'
LOOKAHEAD = '[spec]\nname = "demo"\n\n[[rule]]\nid = "api-key"\nforbid.regex = \'sk-(?=[a-z])\'\n'


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "demo.toml"
    path.write_text(GOOD, encoding="utf-8")
    return path


def _write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- check ------------------------------------------------------------------------------------


def test_check_prints_rules_sizes_and_policy(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert "spec 'demo'" in out and "valid, 2 rules" in out
    assert "no-foo" in out and "literal" in out and "digits" in out and "regex" in out
    assert "states" in out
    assert "checkpoint=word" in out and "max_rollback_tokens=48" in out


@pytest.mark.parametrize("name", ["pii", "secrets"])
def test_check_library_specs_by_name(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", name]) == 0
    assert f"spec {name!r}" in capsys.readouterr().out


def test_check_invalid_spec_exits_2_with_one_located_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, BAD_KEY)
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"shield check: {path}:6: rule no-foo: unknown key 'forbd'")
    assert "did you mean 'forbid'?" in lines[0]


def test_check_unsupported_regex_is_located_at_the_pattern(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, LOOKAHEAD)
    assert main(["check", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"shield check: {path}:6: rule api-key: unsupported regex construct")
    assert "look-ahead" in lines[0]


def test_check_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "not found" in err


# -- scan -------------------------------------------------------------------------------------


def test_scan_clean_text_exits_0(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(spec_file), "--text", "all good here"]) == 0
    assert "clean" in capsys.readouterr().out


def test_scan_violation_exits_1_with_a_caret_under_the_match(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(spec_file), "--text", "first line\nsay foo now"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 violation of spec 'demo':"
    assert lines[1] == "  2:5: rule no-foo: 'foo'"
    assert lines[2] == "    say foo now"
    assert lines[3] == "        ^^^"


def test_scan_json_shape_uses_character_offsets(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "héllo wörld foo and 123"
    assert main(["scan", str(spec_file), "--text", text, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["violations"]
    assert data["violations"] == [
        {"rule": "no-foo", "start": 12, "end": 15, "match": "foo"},
        {"rule": "digits", "start": 20, "end": 23, "match": "123"},
    ]
    for item in data["violations"]:
        assert text[item["start"] : item["end"]] == item["match"]


def test_scan_json_clean(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(spec_file), "--text", "fine", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"violations": []}


def test_scan_reads_standard_input(
    spec_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok foo")))
    assert main(["scan", str(spec_file), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["violations"][0]["start"] == 3


def test_scan_rejects_non_utf8_input(
    spec_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok \xff")))
    assert main(["scan", str(spec_file)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_scan_library_spec_finds_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "secrets", "--text", "key=AKIAIOSFODNN7EXAMPLE", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["violations"][0]["rule"] == "aws-access-key"


def test_scan_invalid_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(_write(tmp_path, BAD_KEY)), "--text", "x"]) == 2
    assert capsys.readouterr().err.startswith("shield scan: ")


@pytest.mark.parametrize("command", ["check", "scan"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "SPEC" in capsys.readouterr().out


def test_console_script_end_to_end(spec_file: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "shield"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "shield.cli"]
    root = Path(__file__).resolve().parents[2]
    scan = subprocess.run(
        [*command, "scan", str(spec_file), "--json"],
        input="x foo",
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
    )
    assert scan.returncode == 1, scan.stderr
    assert json.loads(scan.stdout)["violations"][0]["rule"] == "no-foo"
    bad = _write(tmp_path, BAD_KEY)
    check = subprocess.run(
        [*command, "check", str(bad)], capture_output=True, text=True, check=False, cwd=root
    )
    assert check.returncode == 2
    assert check.stderr.splitlines() == [check.stderr.strip()]
    assert check.stderr.startswith(f"shield check: {bad}:6: rule no-foo: ")


CLASSIFIED = """[spec]
name = "c"

[[rule]]
id = "toxic"
classifier = {{ name = "profanity-check", threshold = 0.8, scope = "{scope}"{extra} }}
"""


@pytest.mark.parametrize(
    ("scope", "extra", "expected"),
    [
        ("sentence", "", [(13, 36, "You are a stupid idiot!")]),
        ("response", "", [(0, 47, "Hello there. You are a stupid idiot!  Nice day.")]),
        (
            "window",
            ", window_tokens = 3",
            [(17, 29, "are a stupid"), (30, 47, "idiot!  Nice day.")],
        ),
    ],
)
def test_scan_judges_classifier_rules_by_scope(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    scope: str,
    extra: str,
    expected: list[tuple[int, int, str]],
) -> None:
    path = _write(tmp_path, CLASSIFIED.format(scope=scope, extra=extra), "c.toml")
    text = "Hello there. You are a stupid idiot!  Nice day."
    assert main(["scan", str(path), "--text", text, "--json"]) == 1
    captured = capsys.readouterr()
    found = [(v["start"], v["end"], v["match"]) for v in json.loads(captured.out)["violations"]]
    assert found == expected
    assert ("whitespace-separated words" in captured.err) == (scope == "window")


def test_scan_classifier_passes_friendly_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, CLASSIFIED.format(scope="sentence", extra=""), "c.toml")
    assert main(["scan", str(path), "--text", "What a lovely day. Thanks!"]) == 0
    assert "clean" in capsys.readouterr().out
