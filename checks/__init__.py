"""Checks: each turns plain data into a :class:`CheckResult` made of :class:`Finding` s.

A finding names where it applies (file, line, column when known) so that the command line can print
``file:line:column: message`` and a forge can annotate the manifest line.  Nothing in this package does
I/O: the facts a check needs (registry metrics, cluster facts, the clock) arrive as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"      # blocks the change
    WARNING = "warning"  # reported, does not block
    NOTICE = "notice"    # information


class Conclusion(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"   # a check ran and the change does not pass
    ERROR = "error"       # the check could not run (registry down, broken policy): retry later
    NEUTRAL = "neutral"   # nothing to check


@dataclass(frozen=True, slots=True)
class Position:
    line: int    # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem or remark, located in a file where possible."""

    check: str                    # "schema" | "policy" | "metrics" | ...
    severity: Severity
    message: str
    file: str | None = None
    position: Position | None = None
    model: str | None = None
    environment: str | None = None
    hint: str | None = None

    def location(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.position}" if self.position else self.file

    def one_line(self) -> str:
        """``file:line:column: error: message (hint)``: the form compilers and editors understand."""
        where = self.location()
        text = f"{self.severity}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return f"{where}: {text}" if where else text


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    conclusion: Conclusion
    summary: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)


def conclude(name: str, findings: list[Finding] | tuple[Finding, ...], ok_summary: str) -> CheckResult:
    """Derive a result from findings: any error fails the check; warnings alone pass it."""
    findings = tuple(findings)
    errors = sum(1 for f in findings if f.severity is Severity.ERROR)
    warnings = sum(1 for f in findings if f.severity is Severity.WARNING)
    if errors:
        summary = f"{errors} error{'s' * (errors != 1)}"
        if warnings:
            summary += f", {warnings} warning{'s' * (warnings != 1)}"
        return CheckResult(name, Conclusion.FAILURE, summary, findings)
    if warnings:
        return CheckResult(name, Conclusion.SUCCESS, f"{ok_summary}; {warnings} warning{'s' * (warnings != 1)}", findings)
    return CheckResult(name, Conclusion.SUCCESS, ok_summary, findings)
