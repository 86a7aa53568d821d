"""``shield scan``: full spans in the report, ``--redact`` and ``--redact-with``, validators."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shield.cli import main
from shield.cli.scan import redact

ISSUE_15 = "mail me at john.doe@example.com or call +1 415 555 0100"
OVERLAP = (
    '[spec]\nname = "demo"\n\n[[rule]]\nid = "digits"\nforbid.regex = \'[0-9]+\'\n\n'
    "[[rule]]\nid = \"code\"\nforbid.regex = '[A-Z]+-[0-9]+'\n"
)


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(["scan", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_issue_15_json_report_gives_full_spans(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _report(capsys, "pii", "--text", ISSUE_15)
    assert code == 1
    matches = {(v["rule"], v["match"]) for v in report["violations"]}  # type: ignore[attr-defined]
    assert matches == {
        ("email", "john.doe@example.com"),
        ("phone-international", "+1 415 555 0100"),
        ("phone-us", "+1 415 555 0100"),
    }
    for v in report["violations"]:  # type: ignore[attr-defined]
        assert ISSUE_15[v["start"] : v["end"]] == v["match"]


def test_redact_replaces_every_full_span(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "pii", "--redact", "--text", ISSUE_15]) == 1
    out = capsys.readouterr().out
    assert out == ("mail me at [REDACTED:email] or call [REDACTED:phone-international+phone-us]\n")
    assert not re.search(r"\d|@", out.replace("REDACTED", ""))  # nothing of the secrets is left


def test_redact_with_a_template_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _report(
        capsys, "pii", "--text", ISSUE_15, "--redact", "--redact-with", "<{rule}>"
    )
    assert code == 1
    assert report["redacted"] == "mail me at <email> or call <phone-international+phone-us>"
    assert main(["scan", "pii", "--redact", "--redact-with", "***", "--text", "fine"]) == 0
    assert capsys.readouterr().out == "fine\n"


def test_redact_merges_overlapping_violations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "demo.toml"
    spec.write_text(OVERLAP, encoding="utf-8")
    code, report = _report(capsys, str(spec), "--text", "ticket AB-1234 and 56", "--redact")
    assert code == 1
    spans = {(v["rule"], v["start"], v["end"]) for v in report["violations"]}  # type: ignore[attr-defined]
    assert spans == {("code", 7, 14), ("digits", 10, 14), ("digits", 19, 21)}  # overlapping
    assert report["redacted"] == "ticket [REDACTED:code+digits] and [REDACTED:digits]"


def test_redact_function_keeps_text_outside_and_joins_ids_once() -> None:
    items = [
        {"rule": "a", "start": 4, "end": 8},
        {"rule": "b", "start": 2, "end": 5},
        {"rule": "a", "start": 7, "end": 9},
        {"rule": "c", "start": 9, "end": 10},
    ]
    assert redact("0123456789xy", items, "[{rule}]") == "01[b+a][c]xy"
    assert redact("abc", [], "[{rule}]") == "abc"


def test_redact_with_needs_redact(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "pii", "--redact-with", "x", "--text", "a"]) == 2
    assert "--redact-with needs --redact" in capsys.readouterr().err


def test_scan_leaves_numbers_that_fail_their_validator(capsys: pytest.CaptureFixture[str]) -> None:
    text = "card 4111 1111 1111 1111, order 4111 1111 1111 1112"
    assert main(["scan", "pii", "--redact", "--text", text]) == 1
    assert capsys.readouterr().out == ("card [REDACTED:payment-card], order 4111 1111 1111 1112\n")
    assert main(["scan", "pii", "--text", "order 4111 1111 1111 1112"]) == 0
