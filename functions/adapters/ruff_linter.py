"""Ruff as a second static reviewer, and ``StaticReviewer``, which merges it with the AST checks.

``RuffLinter`` runs the ``ruff`` binary that ships with the ``ruff`` package on the source of
one function and turns its diagnostics into ``Finding`` objects with the same line numbers as
the given source. It never raises: a missing binary, a crash, a timeout or unreadable output
is logged as a warning and gives no findings, so a review never fails because of the linter.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import textwrap
from typing import Any, Final

from functions.core.static_review import (
    SYNTAX_ERROR,
    Category,
    Finding,
    Severity,
    analyze_function,
    dedent_source,
    findings_to_suggestions,
    merge_findings,
)

_log = logging.getLogger(__name__)

# Rule families that find real problems in a single function. Whole families where every rule
# is useful; picked rules where the family is mostly about style or whole modules.
RUFF_SELECT: Final[tuple[str, ...]] = (
    "F",  # pyflakes: unused variables, undefined locals, ...
    "E7",  # statements: bare except, comparison to None/True, lambda assignment, ...
    "E9",  # io and syntax errors
    "B",  # bugbear
    "S",  # bandit (security)
    "UP",  # pyupgrade
    "SIM",  # simplifications
    "PERF",  # performance anti-patterns
    "C4",  # comprehensions
    "RET",  # return statements
    "ARG",  # unused arguments
    "ASYNC",  # blocking calls in coroutines
    "BLE",  # blind except
    "PLE",  # pylint errors
    "PLW",  # pylint warnings
    "PLR0124",  # comparison with itself
    "PLR0133",  # comparison of constants
    "PLR1704",  # argument redefined by a local
    "PLR1711",  # useless return
    "PLR1714",  # repeated equality comparison -> `in`
    "PLR1722",  # exit() instead of sys.exit()
    "PLR1730",  # if statement that is min()/max()
    "PLR5501",  # collapsible else-if
    "TRY002",  # raise of bare Exception
    "TRY004",  # isinstance check that raises something other than TypeError
    "TRY201",  # `raise e` instead of `raise`
    "TRY400",  # logging.error in except instead of logging.exception
    "TRY401",  # exception object repeated in logging.exception
)
RUFF_IGNORE: Final[tuple[str, ...]] = (
    "F401",  # imports live at module level, outside the snippet
    "F811",  # redefinitions of module-level names the snippet cannot see
    "F821",  # names imported or defined at module level look undefined in a snippet
    "PLE0117",  # `nonlocal` binds in an enclosing function that is not part of the snippet
    "B008",  # calls in defaults are the FastAPI/Typer dependency idiom
    "S101",  # every assert; analyze_function reports the ones that validate arguments
    "S105",  # hard-coded passwords: analyze_function matches variable names more strictly
    "S106",  # (ruff flags `token_type = "bearer"`)
    "S107",
    "S311",  # non-crypto random: almost always used for non-security purposes
    "S603",  # every subprocess call; S602/S604/S605 catch the shell ones
    "S607",  # partial executable paths: normal for tools on PATH
    "UP006",  # annotation modernisation depends on the repository's minimum Python,
    "UP007",  # which one function does not tell
    "UP035",
    "UP045",
    "PERF203",  # try/except in a loop costs nothing since Python 3.11
    "ASYNC109",  # timeout parameters on async functions are a trio convention
    # Not selected by default; ignored so that a wider `select` passed in stays function-sized.
    "E501",  # line length is a style matter for the whole file
    "D1",  # missing docstrings: analyze_function reports the function's; D100/D104 are modules'
)
# The Python the service parses with; ruff flags syntax newer than its target as an error.
RUFF_TARGET: Final = "py311"

# Longest prefix wins. Codes not covered here are readability/info.
_CLASSIFICATION: Final[dict[str, tuple[Category, Severity]]] = {
    "F": (Category.BUG, Severity.WARNING),
    "F841": (Category.READABILITY, Severity.WARNING),
    "E7": (Category.READABILITY, Severity.INFO),
    "E722": (Category.BUG, Severity.WARNING),
    "E9": (Category.BUG, Severity.ERROR),
    "B": (Category.BUG, Severity.WARNING),
    "S": (Category.SECURITY, Severity.WARNING),
    "S102": (Category.SECURITY, Severity.ERROR),
    "S301": (Category.SECURITY, Severity.ERROR),
    "S307": (Category.SECURITY, Severity.ERROR),
    "S501": (Category.SECURITY, Severity.ERROR),
    "S506": (Category.SECURITY, Severity.ERROR),
    "S602": (Category.SECURITY, Severity.ERROR),
    "S604": (Category.SECURITY, Severity.ERROR),
    "S605": (Category.SECURITY, Severity.ERROR),
    "S608": (Category.SECURITY, Severity.ERROR),
    "S110": (Category.BUG, Severity.WARNING),
    "S112": (Category.BUG, Severity.WARNING),
    "PERF": (Category.PERFORMANCE, Severity.INFO),
    "ASYNC": (Category.PERFORMANCE, Severity.WARNING),
    "UP": (Category.READABILITY, Severity.INFO),
    "SIM": (Category.READABILITY, Severity.INFO),
    "SIM115": (Category.BUG, Severity.WARNING),
    "C4": (Category.READABILITY, Severity.INFO),
    "RET": (Category.READABILITY, Severity.INFO),
    "RET502": (Category.BUG, Severity.WARNING),
    "RET503": (Category.BUG, Severity.WARNING),
    "ARG": (Category.READABILITY, Severity.WARNING),
    "BLE": (Category.BUG, Severity.WARNING),
    "PLE": (Category.BUG, Severity.ERROR),
    "PLW": (Category.BUG, Severity.WARNING),
    "PLW0603": (Category.READABILITY, Severity.WARNING),
    "PLR": (Category.READABILITY, Severity.INFO),
    "TRY": (Category.READABILITY, Severity.INFO),
    "ANN": (Category.TYPING, Severity.INFO),
    "D": (Category.DOCS, Severity.INFO),
}
_CODE_RE: Final = re.compile(r"^[A-Z]+[0-9]+$")
_FIRST_PARAM_RE: Final = re.compile(r"^[ \t]*(?:async\s+)?def\s+\w+\s*\(\s*(\w*)", re.MULTILINE)
_SNIPPET_CLASS: Final = "class _Snippet:\n"


def classify(code: str) -> tuple[Category, Severity]:
    """Return the category and severity of a ruff rule code (longest matching prefix)."""
    for end in range(len(code), 0, -1):
        if found := _CLASSIFICATION.get(code[:end]):
            return found
    return Category.READABILITY, Severity.INFO


class RuffLinter:
    """Run ruff on the source of one function; see the module docstring."""

    def __init__(
        self,
        ruff_bin: str | os.PathLike[str] | None = None,
        *,
        select: tuple[str, ...] = RUFF_SELECT,
        ignore: tuple[str, ...] = RUFF_IGNORE,
    ) -> None:
        self._ruff_bin = os.fspath(ruff_bin) if ruff_bin is not None else None
        self._select = select
        self._ignore = ignore

    def lint(self, source: str, *, timeout: float = 5.0) -> list[Finding]:
        """Return ruff's findings for ``source``, lines as in ``source``; [] if ruff fails."""
        if self._ruff_bin is None:
            self._ruff_bin = _find_ruff()
        ruff_bin = self._ruff_bin
        if ruff_bin is None:
            return []
        text, offset = _prepare(source)
        command = [
            ruff_bin,
            "check",
            "--no-cache",
            "--isolated",  # the reviewed repository's config, or ours, must not apply
            "--exit-zero",  # so any other exit status means ruff itself failed
            "--target-version",
            RUFF_TARGET,
            "--select",
            ",".join(self._select),
            "--ignore",
            ",".join(self._ignore),
            "--output-format",
            "json",
            "--stdin-filename",
            "snippet.py",
            "-",
        ]
        try:
            # run() kills ruff when the timeout expires.
            completed = subprocess.run(
                command,
                input=text,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _log.warning("ruff did not finish within %.1f s; skipping its findings", timeout)
            return []
        except (OSError, ValueError) as exc:
            _log.warning("could not run ruff (%s): %s", ruff_bin, exc)
            return []
        if completed.returncode != 0:
            _log.warning(
                "ruff exited with status %d: %s", completed.returncode, completed.stderr[:500]
            )
            return []
        try:
            diagnostics = json.loads(completed.stdout)
        except ValueError as exc:
            _log.warning("ruff printed output that is not JSON: %s", exc)
            return []
        if not isinstance(diagnostics, list):
            _log.warning("ruff printed JSON that is not a list of diagnostics")
            return []
        findings = [_to_finding(d, offset) for d in diagnostics if isinstance(d, dict)]
        return [f for f in findings if f is not None]


class StaticReviewer:
    """The offline reviewer: the AST checks of ``analyze_function`` plus ruff, merged."""

    def __init__(self, linter: RuffLinter | None = None, *, ruff_timeout: float = 5.0) -> None:
        self._linter = linter if linter is not None else RuffLinter()
        self._ruff_timeout = ruff_timeout

    def findings(self, source: str) -> list[Finding]:
        """Return the merged findings, most urgent first; an AST finding wins over ruff's."""
        own = analyze_function(source)
        if any(f.rule == SYNTAX_ERROR for f in own):
            return own  # ruff would only repeat the parse error, less clearly
        return merge_findings(own, self._linter.lint(source, timeout=self._ruff_timeout))

    def review(self, source: str, limit: int = 20) -> list[str]:
        """Return up to ``limit`` suggestions (``[category] Line n: message``); [] if clean."""
        return findings_to_suggestions(self.findings(source), limit)

    def quick_review(self, source: str, limit: int = 20) -> list[str]:
        """The AST checks' suggestions alone: no ruff process, for a prompt built at once."""
        return findings_to_suggestions(analyze_function(source), limit)


def _find_ruff() -> str | None:
    try:
        from ruff import find_ruff_bin  # type: ignore[import-untyped]  # ruff ships no py.typed

        return str(find_ruff_bin())
    except (ImportError, OSError) as exc:  # RuffNotFound is a FileNotFoundError
        _log.warning("ruff is not installed (%s); skipping its findings", exc)
        return None


def _prepare(source: str) -> tuple[str, int]:
    """Return the text to lint and how many lines were added in front of the source.

    A method (an indented function, or one whose first parameter is ``self``/``cls``) is
    linted inside a class, as it will run: otherwise ruff reports ``self`` as an unused
    argument and applies function rules instead of method rules.
    """
    text = dedent_source(source)
    match = _FIRST_PARAM_RE.search(text)
    indented = text != source
    if indented or (match is not None and match.group(1) in {"self", "cls"}):
        return _SNIPPET_CLASS + textwrap.indent(text, "    "), _SNIPPET_CLASS.count("\n")
    return text, 0


def _to_finding(diagnostic: dict[str, Any], offset: int) -> Finding | None:
    code = diagnostic.get("code")
    message = diagnostic.get("message")
    location = diagnostic.get("location")
    row = location.get("row") if isinstance(location, dict) else None
    if not isinstance(message, str) or not isinstance(row, int):
        return None
    line = max(row - offset, 1)
    if not isinstance(code, str) or not _CODE_RE.match(code):
        # Syntax errors come without a code (older ruff) or as "invalid-syntax".
        return Finding(
            SYNTAX_ERROR, Category.BUG, Severity.ERROR, line, f"{_sentence(message)} (ruff)."
        )
    if code == "SIM105" and "Exception)" in message:
        # "Use contextlib.suppress(Exception)" is bad advice; S110/BLE001 report the real
        # problem (every error silently discarded).
        return None
    category, severity = classify(code)
    text = f"{_sentence(message)} ({code})"
    fix = diagnostic.get("fix")
    fix_message = fix.get("message") if isinstance(fix, dict) else None
    if isinstance(fix_message, str) and fix_message:
        text += f"; fix: {_sentence(fix_message)}"
    return Finding(code, category, severity, line, text.rstrip(".") + ".")


def _sentence(text: str) -> str:
    """Lower-case ruff's leading capital (``Use`` -> ``use``) but not acronyms (``SQL``)."""
    text = text.strip().rstrip(".")
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text
