"""Review reports: the findings of a pull-request or repository review, as JSON, Markdown and
SARIF 2.1.0 (which GitHub code scanning accepts; each result can become a review comment)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from functions.core.review import CATEGORIES

TOOL_NAME = "codereview"
TOOL_URI = "https://github.com/codereview/serverless-codereview"
TOOL_VERSION = "0.1.0"


class Severity(StrEnum):
    """How much a finding matters; the SARIF levels, most severe first."""

    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"

    @property
    def rank(self) -> int:
        """0 for the most severe."""
        return list(Severity).index(self)


CATEGORY_SEVERITY: dict[str, Severity] = {
    "security": Severity.ERROR,
    "bug": Severity.ERROR,
    "performance": Severity.WARNING,
    "typing": Severity.NOTE,
    "readability": Severity.NOTE,
    "docs": Severity.NOTE,
}
"""A finding's severity follows its category (the model and the linters both give one)."""


class Finding(BaseModel):
    """One review finding, anchored to lines of the new version of a file."""

    model_config = ConfigDict(frozen=True)

    path: str
    function: str
    """The dotted name reviewed, or ``"<module>"`` for module-level code."""
    start_line: int
    end_line: int
    category: str
    severity: Severity
    message: str
    suggestion: str | None = None
    """A concrete replacement or fix, where the reviewer gave one."""


class NotReviewed(BaseModel):
    """Something the review did not cover, and why (nothing is dropped silently)."""

    model_config = ConfigDict(frozen=True)

    path: str
    function: str | None = None
    reason: str


class Report(BaseModel):
    """The result of a review job."""

    job_id: str
    kind: str
    repo_url: str
    pr_number: int | None = None
    base_commit: str | None = None
    head_commit: str | None = None
    generated_at: datetime
    reviewed: list[str] = Field(default_factory=list)
    """Dotted names of what was reviewed."""
    findings: list[Finding] = Field(default_factory=list)
    not_reviewed: list[NotReviewed] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Findings by severity."""
        return {s.value: sum(1 for f in self.findings if f.severity is s) for s in Severity}


_TAGGED_RE = re.compile(
    r"^\[(?P<category>[a-z]+)\]\s*(?:Line (?P<line>\d+):\s*)?(?P<text>.*)$", re.S
)
_FIX_RE = re.compile(r";\s*fix:\s*(?P<fix>.+)$")


def parse_suggestion(text: str) -> tuple[str, int | None, str, str | None]:
    """Split ``[category] Line N: message; fix: ...`` into its parts (line and fix optional)."""
    match = _TAGGED_RE.match(text.strip())
    category, line, message = "readability", None, text.strip()
    if match is not None and match["category"] in CATEGORIES:
        category = match["category"]
        line = int(match["line"]) if match["line"] else None
        message = match["text"].strip()
    elif (bare := re.match(r"^Line (\d+):\s*(.*)$", message, re.S)) is not None:
        line, message = int(bare[1]), bare[2].strip()
    fix = _FIX_RE.search(message)
    return category, line, message, (fix["fix"].strip() if fix else None)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    """Render the report for people (a PR comment, a terminal)."""
    counts = report.counts()
    subject = f"pull request #{report.pr_number}" if report.pr_number is not None else "repository"
    lines = [
        f"# Code review of {subject}",
        "",
        f"{report.repo_url}"
        + (f" at `{report.head_commit[:12]}`" if report.head_commit else "")
        + (f" (compared with `{report.base_commit[:12]}`)" if report.base_commit else ""),
        "",
        f"Reviewed {len(report.reviewed)} functions or code blocks: "
        f"{counts['error']} errors, {counts['warning']} warnings, {counts['note']} notes.",
        "",
    ]
    if report.findings:
        lines += ["| severity | where | function | finding |", "|---|---|---|---|"]
        for f in sorted(report.findings, key=lambda f: (f.severity.rank, f.path, f.start_line)):
            where = f"`{f.path}:{f.start_line}`"
            lines.append(
                f"| {f.severity.value} | {where} | `{f.function}` | "
                f"[{f.category}] {_md_escape(f.message)} |"
            )
        lines.append("")
    else:
        lines += ["No findings.", ""]
    if report.not_reviewed:
        lines += ["## Not reviewed", ""]
        for item in report.not_reviewed:
            name = f" `{item.function}`" if item.function else ""
            lines.append(f"- `{item.path}`{name}: {item.reason}")
        lines.append("")
    return "\n".join(lines)


def to_sarif(report: Report) -> dict[str, Any]:
    """Render the report as a SARIF 2.1.0 log (for GitHub code scanning)."""
    rules = [
        {
            "id": category,
            "name": category.title(),
            "shortDescription": {"text": f"{category.title()} finding from an AI code review"},
            "defaultConfiguration": {"level": CATEGORY_SEVERITY[category].value},
        }
        for category in CATEGORIES
    ]
    index = {category: i for i, category in enumerate(CATEGORIES)}
    results = []
    for f in report.findings:
        result: dict[str, Any] = {
            "ruleId": f.category if f.category in index else "readability",
            "ruleIndex": index.get(f.category, index["readability"]),
            "level": f.severity.value,
            "message": {"text": f"{f.message} ({f.function})"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": f.start_line, "endLine": f.end_line},
                    },
                    "logicalLocations": [{"fullyQualifiedName": f.function, "kind": "function"}],
                }
            ],
        }
        if f.suggestion:
            result["properties"] = {"suggestion": f.suggestion}
        results.append(result)
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "informationUri": TOOL_URI,
                "semanticVersion": TOOL_VERSION,
                "rules": rules,
            }
        },
        "results": results,
        "properties": {
            "jobId": report.job_id,
            "notReviewed": [item.model_dump(exclude_none=True) for item in report.not_reviewed],
        },
    }
    if report.head_commit:
        run["versionControlProvenance"] = [
            {"repositoryUri": report.repo_url, "revisionId": report.head_commit}
        ]
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    }
