"""RuffLinter and StaticReviewer against the real ruff binary, and against broken ones."""

from __future__ import annotations

import logging
import stat
import time
from pathlib import Path

import pytest

from functions.adapters.ruff_linter import RuffLinter, StaticReviewer, classify
from functions.core.static_review import SYNTAX_ERROR, Category, Severity

SHELL = "def run(cmd: str) -> int:\n    return subprocess.call(cmd, shell=True)\n"

METHOD = (
    "class Runner:\n"  # line 1: not part of what is reviewed
    "    @retry(times=3)\n"
    "    def run(self, cmd: str) -> int:\n"
    '        """Run ``cmd``."""\n'
    "        return subprocess.call(cmd, shell=True)\n"
)


def fake_binary(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "ruff"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_ruff_finds_shell_true() -> None:
    found = RuffLinter().lint(SHELL)
    shell = [f for f in found if f.rule in {"S602", "S604"}]
    assert len(shell) == 1
    assert (shell[0].category, shell[0].severity, shell[0].line) == (
        Category.SECURITY,
        Severity.ERROR,
        2,
    )
    assert shell[0].message.endswith(f"({shell[0].rule}).")


def test_line_numbers_of_an_indented_method_match_the_given_source() -> None:
    method = "".join(METHOD.splitlines(keepends=True)[1:])  # starts with "    @retry"
    found = RuffLinter().lint(method)
    # S602 when ruff sees `import subprocess`, S604 (any call with shell=True) otherwise.
    assert [(f.rule, f.line) for f in found if f.rule in {"S602", "S604"}] == [("S604", 4)]
    # Linted as a method: `self` is not an unused argument.
    assert not [f for f in found if f.rule.startswith("ARG")]


def test_method_given_without_indentation_is_linted_as_a_method() -> None:
    source = "def close(self, force: bool) -> None:\n    self.conn.close()\n"
    found = RuffLinter().lint(source)
    assert [(f.rule, f.line) for f in found] == [("ARG002", 1)]
    assert "`force`" in found[0].message


def test_snippet_artifacts_are_not_reported() -> None:
    # Module-level imports and names are outside a single function.
    source = (
        "def f(path: str) -> dict[str, object]:\n    return json.loads(Path(path).read_text())\n"
    )
    assert RuffLinter().lint(source) == []


def test_mutable_default_is_reported_once() -> None:
    source = "def add(item: int, items: list[int] = []) -> list[int]:\n    items.append(item)\n"
    assert "B006" in {f.rule for f in RuffLinter().lint(source)}
    found = StaticReviewer().findings(source)
    mutable = [f for f in found if f.rule in {"B006", "mutable-default"}]
    assert len(mutable) == 1
    assert mutable[0].rule == "mutable-default"  # the AST message names the parameter
    assert "`items`" in mutable[0].message


def test_overlapping_findings_are_merged() -> None:
    source = "def f(x: str) -> None:\n    try:\n        eval(x)\n    except:\n        pass\n"
    rules = [f.rule for f in StaticReviewer().findings(source)]
    assert rules.count("eval-exec") == 1
    assert "S307" not in rules
    assert "bare-except" in rules
    assert not {"E722", "S110", "BLE001", "SIM105"} & set(rules)


def test_reviewer_adds_ruff_only_findings() -> None:
    source = (
        "def total(xs: list[int]) -> int:\n"
        '    """Sum ``xs``."""\n'
        "    unused = 1\n"
        "    return sum([x for x in xs])\n"
    )
    rules = {f.rule for f in StaticReviewer().findings(source)}
    assert "F841" in rules  # unused local
    assert "C416" in rules  # unnecessary comprehension: list(xs)


def test_review_of_a_clean_function_is_empty() -> None:
    source = '''
    def mean(values: list[float]) -> float:
        """Return the arithmetic mean of ``values`` (0.0 when there are none)."""
        if not values:
            return 0.0
        return sum(values) / len(values)
    '''
    assert StaticReviewer().review(source) == []


def test_review_returns_formatted_suggestions_most_urgent_first() -> None:
    suggestions = StaticReviewer().review(SHELL.replace("cmd: str", "cmd"), limit=3)
    assert suggestions[0].startswith("[security] Line 2: `subprocess.call(cmd, shell=True)`")
    assert len(suggestions) <= 3
    assert all(s.startswith("[") and "] Line " in s for s in suggestions)


def test_syntax_error_skips_ruff(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    reviewer = StaticReviewer(RuffLinter(fake_binary(tmp_path, f"touch {marker}")))
    [finding] = reviewer.findings("def f(:\n    pass\n")
    assert finding.rule == SYNTAX_ERROR
    assert not marker.exists()


def test_ruff_syntax_errors_map_to_syntax_error() -> None:
    [finding, *_] = RuffLinter().lint("def f(:\n    pass\n")
    assert (finding.rule, finding.severity, finding.line) == (SYNTAX_ERROR, Severity.ERROR, 1)


def test_missing_binary_gives_no_findings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert RuffLinter(tmp_path / "no-such-ruff").lint(SHELL) == []
    assert "could not run ruff" in caplog.text
    # The reviewer still gives its own findings.
    reviewer = StaticReviewer(RuffLinter(tmp_path / "no-such-ruff"))
    assert "subprocess-shell" in {f.rule for f in reviewer.findings(SHELL)}


def test_timeout_is_honoured(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # `exec` so that killing the child kills the sleep, not just a shell around it.
    slow = fake_binary(tmp_path, "exec sleep 30")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert RuffLinter(slow).lint(SHELL, timeout=0.3) == []
    assert time.monotonic() - started < 10
    assert "did not finish" in caplog.text


@pytest.mark.parametrize(
    "script",
    ["echo boom >&2; exit 2", "echo not json", "echo '{\"a\": 1}'", "echo '[1, {\"code\": 3}]'"],
    ids=["fails", "not-json", "not-a-list", "bad-items"],
)
def test_broken_ruff_gives_no_findings(tmp_path: Path, script: str) -> None:
    assert RuffLinter(fake_binary(tmp_path, f"cat >/dev/null; {script}")).lint(SHELL) == []


@pytest.mark.parametrize(
    ("code", "category", "severity"),
    [
        ("S602", Category.SECURITY, Severity.ERROR),
        ("S113", Category.SECURITY, Severity.WARNING),
        ("B006", Category.BUG, Severity.WARNING),
        ("PERF401", Category.PERFORMANCE, Severity.INFO),
        ("ASYNC251", Category.PERFORMANCE, Severity.WARNING),
        ("F841", Category.READABILITY, Severity.WARNING),
        ("F823", Category.BUG, Severity.WARNING),
        ("UP031", Category.READABILITY, Severity.INFO),
        ("SIM108", Category.READABILITY, Severity.INFO),
        ("RET503", Category.BUG, Severity.WARNING),
        ("ANN001", Category.TYPING, Severity.INFO),
        ("XYZ1", Category.READABILITY, Severity.INFO),
    ],
)
def test_classify(code: str, category: Category, severity: Severity) -> None:
    assert classify(code) == (category, severity)
