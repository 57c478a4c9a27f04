"""A plan as a check report: conclusion, title, summary and line annotations (pure)."""

from __future__ import annotations

from modelherd.checks import Conclusion, Finding, Severity
from modelherd.comment import render_plan
from modelherd.forges.base import Annotation, CheckReport, CheckStatus
from modelherd.plan import Plan

PLAN_CHECK = "modelherd/plan"
SUMMARY_LIMIT = 60_000          # GitHub allows 65,535 characters in a check run's summary

_LEVEL = {Severity.ERROR: "failure", Severity.WARNING: "warning"}
# Conclusion.ERROR (the registry or the policies could not be asked) blocks like a failure; its title
# says to re-run the check once the cause is fixed.
_CONCLUSION = {Conclusion.SUCCESS: "success", Conclusion.FAILURE: "failure", Conclusion.ERROR: "failure",
               Conclusion.NEUTRAL: "neutral"}


def annotation(finding: Finding) -> Annotation | None:
    """The annotation for an error or warning that has a file and line. Notices (e.g. "nothing serves
    yet to compare with") stay in the summary: beside the diff they would be noise."""
    if not finding.file or not finding.position or finding.severity is Severity.NOTICE:
        return None
    message = finding.message + (f"\nHint: {finding.hint}" if finding.hint else "")
    where = " · ".join(x for x in (finding.model, finding.environment) if x)
    return Annotation(path=finding.file, start_line=finding.position.line, end_line=finding.position.line,
                      level=_LEVEL[finding.severity], message=message,
                      title=f"modelherd {finding.check}" + (f" ({where})" if where else ""),
                      start_column=finding.position.column, end_column=finding.position.column)


def _unique(annotations: list[Annotation]) -> tuple[Annotation, ...]:
    """One annotation per line and message (a gate failing in two environments is one remark)."""
    seen, out = set(), []
    for a in annotations:
        key = (a.path, a.start_line, a.message)
        if key not in seen:
            seen.add(key)
            out.append(a)
    return tuple(out)


def title(plan: Plan) -> str:
    if not plan.files:
        return "No model manifest changed"
    if plan.conclusion is Conclusion.ERROR:
        failed = next(c for c in plan.checks.values() if c.conclusion is Conclusion.ERROR)
        return f"Could not check {failed.name}: re-run when the cause is fixed"
    blocked = sum(r.blocked for r in plan.reports)
    changes = sum(r.change.action.value != "no change" for r in plan.reports)
    if not changes:
        return "No changes to deploy"
    return f"{changes} change(s): {blocked} blocked" if blocked else f"{changes} change(s) ready"


def plan_check(plan: Plan) -> CheckReport:
    """The ``modelherd/plan`` check for a plan: one write, whatever the number of manifests."""
    annotations = [a for f in plan.findings() if (a := annotation(f)) is not None]
    summary = "\n".join(f"- **{c.name}**: {c.conclusion.value} — {c.summary}" for c in plan.checks.values())
    text = render_plan(plan, limit=SUMMARY_LIMIT) if plan.files else ""
    return CheckReport(name=PLAN_CHECK, status=CheckStatus.COMPLETED, conclusion=_CONCLUSION[plan.conclusion],
                       title=title(plan), summary=summary, text=text, annotations=_unique(annotations))
