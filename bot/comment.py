"""The plan as one Markdown comment on the pull request, found again by a hidden marker and edited in place.

:func:`render_plan` is pure: a :class:`~modelherd.plan.Plan` in, Markdown out.  The layout is what a
reviewer reads top to bottom: the verdict and counts, a summary table (one row per model and
environment), then per change the gated metrics side by side, the candidate's lineage, findings with
``file:line:column``, required approvals and, folded, the rendered diff and objects; a footer with the
refs and the commands.

Everything that comes from manifests, registries or users goes through :mod:`modelherd.escape`.

The comment never exceeds ``limit`` characters.  When the full text is too long it degrades in steps,
each applied only as far as needed: rendered objects are cut or dropped (largest first), then diffs, then
per-change detail is compacted and dropped (passing changes before blocked ones), and last the summary
table loses rows (blocked rows are kept longest) behind an "… and N more" line.  Each step says what it
left out and how to see everything (``modelherd plan`` locally).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import IntEnum
from typing import Callable, Iterable, Sequence

import yaml

from modelherd.checks import CheckResult, Conclusion, Finding, Severity
from modelherd.escape import clip, md_cell, md_code, md_fence, md_html, md_link, md_text
from modelherd.plan import Action, ApprovalRequirement, ChangeReport, MetricComparison, Plan
from modelherd.registry import ModelVersionInfo
from modelherd.repoconfig import CONFIG_FILE

MARKER = "<!-- modelherd:plan -->"
GITHUB_LIMIT = 65536
MIN_LIMIT = 512
COMMANDS = ("/plan", "/deploy <env>", "/rollback <env>", "/unlock", "/help")
CHECK_NAMES = ("schema", "policy", "metrics")
LOCAL_HINT = "run `modelherd plan` locally"
_DEFUSED_MARKER = MARKER.replace("modelherd:", "modelherd\u200b:")


@dataclass(frozen=True)
class PlanLinks:
    """Where things live, to link them from the comment; every field is optional.

    ``run`` and ``version`` map a model version to the URL of its training run and of its registry page
    (``version`` falls back to :attr:`ModelVersionInfo.url`); ``check_run`` is the URL of the check run
    holding the full output; ``commit`` maps a ref to its URL on the forge.  Only http(s) URLs are used.
    """

    run: Callable[[ModelVersionInfo], str | None] | None = None
    version: Callable[[ModelVersionInfo], str | None] | None = None
    check_run: str | None = None
    commit: Callable[[str], str | None] | None = None


class State(IntEnum):
    """How a change stands, ordered by how much a reviewer needs to see it (the last dropped)."""

    UNCHANGED = 0
    OK = 1
    WARNING = 2
    BLOCKED = 3
    ERROR = 4


STATE_ICON = {State.UNCHANGED: "➖", State.OK: "✅", State.WARNING: "⚠️", State.BLOCKED: "❌", State.ERROR: "🛑"}
VERDICT_ICON = {"pass": "✅", "fail": "❌", "warn": "⚠️", "missing": "❔", "n/a": "➖"}


# ---------------------------------------------------------------------------------------------------
# Facts about reports and the plan


def metric_state(m: MetricComparison) -> State:
    """A gate's verdict as a state: a failed gate in ``warn`` mode only warns."""
    if m.verdict == "fail":
        return State.BLOCKED if m.mode == "enforce" else State.WARNING
    if m.verdict in ("warn", "missing"):
        return State.WARNING
    return State.OK


def report_state(report: ChangeReport) -> State:
    """The state of one change: registry error, blocked, warnings, fine or unchanged."""
    if report.registry_error:
        return State.ERROR
    if report.blocked or any(metric_state(m) is State.BLOCKED for m in report.metrics):
        return State.BLOCKED
    if any(f.severity is Severity.WARNING for f in report.findings) or \
            any(metric_state(m) is State.WARNING for m in report.metrics):
        return State.WARNING
    return State.UNCHANGED if report.change.action is Action.NOOP and not report.findings else State.OK


def check_state(name: str, report: ChangeReport, result: CheckResult | None) -> State | None:
    """One check's state for one change; ``None`` when the check did not run."""
    states = [State.BLOCKED if f.severity is Severity.ERROR else State.WARNING
              for f in report.findings if f.check == name and f.severity is not Severity.NOTICE]
    if name == "metrics":
        states += [metric_state(m) for m in report.metrics]
        if report.registry_error:
            states.append(State.ERROR)
    if result is not None and result.conclusion is Conclusion.ERROR:
        states.append(State.ERROR)
    if not states and (result is None or result.conclusion is Conclusion.NEUTRAL):
        return None
    return max(states, default=State.OK)


def plan_state(plan: Plan) -> State:
    """The overall verdict: the worst change, the check conclusions and file-level findings."""
    worst = max((report_state(r) for r in plan.reports), default=State.UNCHANGED)
    conclusion = plan.conclusion
    if conclusion is Conclusion.ERROR:
        worst = max(worst, State.ERROR)
    elif conclusion is Conclusion.FAILURE or any(f.severity is Severity.ERROR for f in plan.file_findings):
        worst = max(worst, State.BLOCKED)
    elif any(f.severity is Severity.WARNING for f in plan.file_findings):
        worst = max(worst, State.WARNING)
    return worst


# ---------------------------------------------------------------------------------------------------
# Small formatters (return raw text; callers escape)


def short_ref(ref: str) -> str:
    """A commit SHA shortened to 7 characters; branch names and short refs unchanged."""
    is_sha = len(ref) >= 12 and all(c in "0123456789abcdef" for c in ref.lower())
    return ref[:7] if is_sha else ref


def fmt_duration(value: str | int) -> str:
    """``600`` or ``"600s"`` → ``10m``; ``"1h30m"`` stays; ``0`` → ``""``."""
    text = str(value)
    seconds = int(text) if text.isdigit() else int(text[:-1]) if text.endswith("s") and text[:-1].isdigit() else None
    if seconds is None:
        return text
    if seconds == 0:
        return ""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n)


def fmt_time(iso: str | None) -> str:
    """ISO 8601 → ``2025-05-01 10:02 UTC``; anything unparsable is returned as it is."""
    if not iso:
        return ""
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def decimals_for(candidate: float | None, current: float | None, delta: float | None) -> int:
    """Decimals showing the larger value with 4 significant digits, and a non-zero delta as non-zero."""
    values = [abs(v) for v in (candidate, current, delta) if v is not None and math.isfinite(v) and v != 0]
    if not values or all(float(v).is_integer() for v in values):
        return 0
    pair = [abs(v) for v in (candidate, current) if v is not None and math.isfinite(v)]
    largest = max(pair) if pair and max(pair) > 0 else max(values)
    d = min(6, max(0, 3 - math.floor(math.log10(largest))))
    if delta is not None and math.isfinite(delta) and delta != 0:
        while round(delta, d) == 0 and d < 10:
            d += 1
    while d > 0 and all(round(v, d - 1) == round(v, d) for v in values):
        d -= 1   # no trailing zeros shared by every number: 41.0 rather than 41.00
    return d


def fmt_number(x: float | None, decimals: int, *, signed: bool = False) -> str:
    """A number with ``decimals`` decimals; ``—`` for none, ``NaN``/``∞`` spelt out; U+2212 minus."""
    if x is None:
        return "—"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return ("−" if x < 0 else "+" if signed else "") + "∞"
    if round(x, decimals) == 0:
        return ("±" if signed else "") + f"{0:.{decimals}f}"
    text = f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"
    return text.replace("-", "−")


def fmt_relative(delta: float | None, current: float | None) -> str:
    """``(−0.94%)`` relative to ``current``, or ``""`` when it means nothing."""
    if delta is None or current is None or current == 0 or not math.isfinite(delta) or not math.isfinite(current):
        return ""
    pct = 100.0 * delta / abs(current)
    if abs(pct) < 0.005:
        return ""
    return f" ({fmt_number(pct, 2 if abs(pct) < 10 else 1, signed=True)}%)"


def metric_row_numbers(candidate: float | None, current: float | None,
                       delta: float | None) -> tuple[str, str, str]:
    """Candidate, current and delta formatted alike, the delta signed with its relative change."""
    if delta is None and candidate is not None and current is not None:
        delta = candidate - current
    d = decimals_for(candidate, current, delta)
    return (fmt_number(candidate, d), fmt_number(current, d),
            fmt_number(delta, d, signed=True) + fmt_relative(delta, current) if delta is not None else "—")


def version_label(ref_alias: str | None, ref_version: int | None, info: ModelVersionInfo | None) -> str:
    """``v7``, or ``@champion (v12)`` for an alias with the version it points at (Markdown, escaped)."""
    if ref_alias:
        pointed = f" (v{md_text(info.version)})" if info is not None else ""
        return md_code(f"@{ref_alias}", cell=True) + pointed
    if ref_version is not None:
        return f"v{ref_version}"
    return f"v{md_text(info.version)}" if info is not None else "—"


def version_cell(report: ChangeReport) -> str:
    """From → to: ``v7 → v8``, ``v8 (new)``, ``v7 (removed)`` or just ``v7`` when it stays."""
    change = report.change
    before = version_label(change.base.model.alias, change.base.model.version, report.current) \
        if change.base else None
    after = version_label(change.head.model.alias, change.head.model.version, report.candidate) \
        if change.head else None
    if before is None:
        return f"{after} (new)"
    if after is None:
        return f"{before} (removed)"
    return before if before == after else f"{before} → {after}"


def rollout_label(report: ChangeReport) -> str:
    """``direct`` or ``canary 10→50→100 every 10m`` (raw text; the numbers are validated ints)."""
    if report.change.head is None:
        return "—"
    rollout = report.change.head.rollout
    if not rollout.canary:
        return "direct"
    every = fmt_duration(rollout.verify_for)
    return "canary " + "→".join(str(s) for s in rollout.canary) + (f" every {every}" if every else "")


def approver_names(req: ApprovalRequirement) -> list[str]:
    """Who may approve, as raw names: users, teams and "code owners"."""
    return [*req.users, *req.teams, *(["code owners"] if req.owners else [])]


def approval_short(req: ApprovalRequirement) -> str:
    """``2 from @acme/risk-ml, alice`` (escaped)."""
    names = approver_names(req)
    who = f" from {md_cell(', '.join(names[:3]))}" + (f" +{len(names) - 3}" if len(names) > 3 else "") \
        if names else ""
    return f"{req.count}{who}"


def diff_stat(diff: str) -> tuple[int, int]:
    """Lines added and removed by a unified diff (file headers excluded)."""
    added = removed = 0
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


def defuse(text: str) -> str:
    """Break the marker inside content shown verbatim, so the comment holds it exactly once."""
    return text.replace(MARKER, _DEFUSED_MARKER)


def link(links: PlanLinks | None, getter: str, info: ModelVersionInfo) -> str | None:
    """The URL ``links.<getter>(info)`` gives, or ``None``; never raises on a missing callable."""
    fn = getattr(links, getter, None) if links is not None else None
    return fn(info) if fn is not None else None


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 change``, ``2 changes``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


# ---------------------------------------------------------------------------------------------------
# Sections


def headline(plan: Plan, cannot_deploy: bool = False) -> str:
    """The first visible line: verdict icon and words, then the counts. ``cannot_deploy``: the plan is
    fine, but nothing of this pull request may deploy (its base is not the default branch)."""
    state = plan_state(plan)
    live = [r for r in plan.reports if r.change.action is not Action.NOOP]
    actions = Counter(r.change.action for r in live)
    if state is State.ERROR:
        cause = "registry error" if any(r.registry_error for r in plan.reports) else "a check could not run"
        words = f"{cause}: plan incomplete, comment `/plan` to retry"
    elif state is State.BLOCKED:
        words = "blocked"
    elif not plan.has_changes:
        words = "no changes to deploy"
    elif state is State.WARNING:
        words = "ready to deploy, with warnings"
    else:
        words = "ready to deploy"
    icon = STATE_ICON[State.OK] if state is State.UNCHANGED else STATE_ICON[state]
    if cannot_deploy and plan.has_changes and state in (State.OK, State.WARNING, State.UNCHANGED):
        icon, words = "🚫", "planned, but this pull request cannot deploy"
    return f"### {icon} modelherd plan: {words}\n\n{counts_line(plan, live, actions)}"


def counts_line(plan: Plan, live: list[ChangeReport], actions: Counter) -> str:
    """``2 changes (1 create, 1 update) · 1 blocked · 3 errors, 1 warning · 1 approval required``."""
    if not live:
        return f"{plural(len(plan.files), 'manifest file')} touched; no model deployment differs from the base."
    words = {Action.CREATE: "new", Action.UPDATE: "updated", Action.DELETE: "deleted"}
    kinds = ", ".join(f"{actions[a]} {w}" for a, w in words.items() if actions[a])
    parts = [f"**{plural(len(live), 'change')}** ({kinds})"]
    unchanged = len(plan.reports) - len(live)
    if unchanged:
        parts.append(f"{unchanged} unchanged")
    states = Counter(report_state(r) for r in live)
    if states[State.BLOCKED]:
        parts.append(f"**{states[State.BLOCKED]} blocked**")
    if states[State.ERROR]:
        parts.append(f"{states[State.ERROR]} incomplete")
    severities = Counter(f.severity for f in plan.findings())
    found = [plural(severities[s], s.value) for s in (Severity.ERROR, Severity.WARNING) if severities[s]]
    if found:
        parts.append(", ".join(found))
    needed: dict[str, int] = {}
    for req in (a for r in live for a in r.approvals):
        needed[req.environment] = max(needed.get(req.environment, 0), req.count)
    if needed:
        parts.append("approvals needed: " + ", ".join(f"{md_text(env)} ({n})" for env, n in needed.items()))
    return " · ".join(parts)


TABLE_HEAD = ("| | Model | Environment | Action | Version | Rollout | Checks (schema · policy · metrics) "
              "| Approvals |\n|---|---|---|---|---|---|---|---|")


def table_row(report: ChangeReport, checks: dict[str, CheckResult]) -> str:
    """One summary row: state, model, environment, action, versions, rollout, check icons, approvals."""
    change = report.change
    icons = " ".join(STATE_ICON[s] if s is not None else "·"
                     for s in (check_state(n, report, checks.get(n)) for n in CHECK_NAMES))
    approvals = "; ".join(approval_short(a) for a in report.approvals[:3]) or "—"
    if len(report.approvals) > 3:
        approvals += f"; +{len(report.approvals) - 3}"
    cells = (STATE_ICON[report_state(report)], md_cell(clip(change.name, 100)),
             md_cell(clip(change.environment, 63)), change.action.value, version_cell(report),
             rollout_label(report), icons, approvals)
    return "| " + " | ".join(cells) + " |"


def summary_table(rows: list[str], states: list[State], budget: int | None = None) -> str:
    """The summary table; with a ``budget``, rows are dropped (least important first) behind a note."""
    full = "\n".join([TABLE_HEAD, *rows])
    if budget is None or len(full) <= budget:
        return full
    order = sorted(range(len(rows)), key=lambda i: (-states[i], i))
    note_room = 200
    kept: set[int] = set()
    size = len(TABLE_HEAD)
    for i in order:
        if size + 1 + len(rows[i]) + note_room > budget:
            break
        kept.add(i)
        size += 1 + len(rows[i])
    dropped = [i for i in range(len(rows)) if i not in kept]
    hidden = Counter(states[i] for i in dropped)
    detail = ", ".join(f"{n} {STATE_ICON[s]}" for s, n in sorted(hidden.items(), reverse=True))
    note = (f"… and {len(dropped)} more ({detail}) not shown: the plan is too large for one comment; "
            f"{LOCAL_HINT} for all of it.")
    return "\n".join([TABLE_HEAD, *(rows[i] for i in sorted(kept))]) + "\n\n" + note


def checks_line(checks: dict[str, CheckResult]) -> str:
    """``**Checks:** ✅ schema — 2 manifest file(s) valid · ❌ policy — 1 error``."""
    if not checks:
        return ""
    icon = {Conclusion.SUCCESS: "✅", Conclusion.FAILURE: "❌", Conclusion.ERROR: "🛑", Conclusion.NEUTRAL: "➖"}
    items = [f"{icon[r.conclusion]} {md_text(clip(name, 40))} — {md_text(clip(r.summary, 200))}"
             for name, r in checks.items()]
    return "**Checks:** " + " · ".join(items)


def metrics_section(report: ChangeReport) -> str:
    """Gated metrics side by side: candidate vs serving now, delta, bounds and verdict."""
    if not report.metrics:
        return ""
    cand = f"Candidate v{md_cell(report.candidate.version)}" if report.candidate else "Candidate"
    cur = f"Serving v{md_cell(report.current.version)}" if report.current else "Serving"
    lines = [f"| Metric | Goal | {cand} | {cur} | Δ | Gate | Result |", "|---|---|--:|--:|--:|---|---|"]
    for m in report.metrics:
        c, s, d = metric_row_numbers(m.candidate, m.current, m.delta)
        goal = {"maximize": "↑ higher", "minimize": "↓ lower"}.get(m.goal, md_cell(m.goal))
        verdict = f"{STATE_ICON[metric_state(m)] if m.verdict == 'fail' else VERDICT_ICON.get(m.verdict, '')} " \
                  f"{md_cell(m.verdict)}" + (" (warn only)" if m.mode == "warn" else "")
        if m.reason:
            verdict += f": {md_cell(clip(m.reason, 200))}"
        lines.append(f"| {md_code(clip(m.metric, 100), cell=True)} | {goal} | {c} | {s} | {d} | "
                     f"{md_cell(clip(m.bounds, 100)) or '—'} | {verdict} |")
    return "**Metrics**\n\n" + "\n".join(lines)


def other_metrics_section(report: ChangeReport, max_rows: int = 100) -> str:
    """Metrics without a gate, folded: candidate, serving and delta."""
    gated = {m.metric for m in report.metrics}
    cand = report.candidate.metrics if report.candidate else {}
    cur = report.current.metrics if report.current else {}
    names = sorted((set(cand) | set(cur)) - gated)
    if not names:
        return ""
    lines = ["| Metric | Candidate | Serving | Δ |", "|---|--:|--:|--:|"]
    for name in names[:max_rows]:
        c, s, d = metric_row_numbers(cand.get(name), cur.get(name), None)
        lines.append(f"| {md_code(clip(name, 100), cell=True)} | {c} | {s} | {d} |")
    if len(names) > max_rows:
        lines.append("")
        lines.append(f"… and {len(names) - max_rows} more.")
    return fold(f"Other metrics ({len(names)}, not gated)", "\n".join(lines))


def lineage_section(info: ModelVersionInfo | None, links: PlanLinks | None, title: str = "Candidate") -> str:
    """Where the candidate comes from: registry version, run, source, who registered it and when, tags."""
    if info is None:
        return ""
    version = f"{info.name} v{info.version}"
    version_url = link(links, "version", info) or (info.url if links is not None else None)
    items = [f"**{title}:** {md_link(version, version_url) if version_url else md_text(version)}"
             + ("" if info.status == "READY" else f" ⚠️ status {md_code(info.status)}")]
    if info.run_id or info.run_name:
        items.append(run_text(info, links))
    if info.source:
        items.append(f"source {md_code(clip(info.source, 300))}")
    if info.storage_uri and info.storage_uri != info.source:
        items.append(f"artifacts {md_code(clip(info.storage_uri, 300))}")
    if info.registered_by or info.created_at:
        who = f" by {md_text(clip(info.registered_by, 100))}" if info.registered_by else ""
        when = f" on {md_text(fmt_time(info.created_at))}" if info.created_at else ""
        items.append(f"registered{who}{when}")
    text = " · ".join(items)
    if info.tags:
        tags = sorted(info.tags.items())
        shown = ", ".join(md_code(clip(f"{k}={v}", 120)) for k, v in tags[:20])
        text += f"  \ntags: {shown}" + (f" and {len(tags) - 20} more" if len(tags) > 20 else "")
    if info.description:
        text += f"\n\n> {md_text(clip(info.description, 500))}"
    return text


def run_text(info: ModelVersionInfo, links: PlanLinks | None) -> str:
    """``training run [nightly-42](url) `abc123` ``: the run's name (linked when possible) and id."""
    url = link(links, "run", info)
    if info.run_name:
        name = md_link(clip(info.run_name, 100), url) if url else md_text(clip(info.run_name, 100))
        return "training run " + name + (f" {md_code(info.run_id)}" if info.run_id else "")
    return "training run " + (md_link(clip(info.run_id, 100), url) if url else md_code(info.run_id))


def finding_line(f: Finding) -> str:
    """``- ❌ **policy** `models/x.yaml:12:5` message (hint: …)``."""
    icon = {Severity.ERROR: "❌", Severity.WARNING: "⚠️", Severity.NOTICE: "ℹ️"}[f.severity]
    where = f" {md_code(clip(f.location(), 200))}" if f.location() else ""
    hint = f" _(hint: {md_text(clip(f.hint, 300))})_" if f.hint else ""
    return f"- {icon} **{md_text(clip(f.check, 40))}**{where} {md_text(clip(f.message, 1000))}{hint}"


def findings_section(findings: Iterable[Finding], title: str, max_items: int = 50) -> str:
    """A list of findings, errors first, capped at ``max_items``."""
    ordered = sorted(findings, key=lambda f: ({Severity.ERROR: 0, Severity.WARNING: 1}.get(f.severity, 2)))
    if not ordered:
        return ""
    lines = [finding_line(f) for f in ordered[:max_items]]
    if len(ordered) > max_items:
        lines.append(f"- … and {len(ordered) - max_items} more; {LOCAL_HINT} for all of them.")
    return f"**{title}**\n\n" + "\n".join(lines)


def approval_line(req: ApprovalRequirement) -> str:
    """``- 2 approvals in production from @acme/risk-ml — reason``."""
    names = approver_names(req)
    who = f" from {md_text(', '.join(names[:20]))}" + (f" and {len(names) - 20} more" if len(names) > 20 else "") \
        if names else " from anyone with write access"
    return f"- {plural(req.count, 'approval')} in {md_code(req.environment)}{who} — {md_text(clip(req.reason, 300))}"


def approvals_section(reqs: list[ApprovalRequirement]) -> str:
    """The approvals the change needs, one line per requirement."""
    if not reqs:
        return ""
    return "**Approvals required**\n\n" + "\n".join(approval_line(r) for r in reqs[:50])


def fold(summary: str, body: str) -> str:
    """A ``<details>`` block; ``summary`` is raw text, ``body`` Markdown (blank lines keep it Markdown)."""
    return f"<details><summary>{md_html(summary)}</summary>\n\n{body}\n\n</details>"


@dataclass
class Folded:
    """A large verbatim block (diff, rendered objects) that can be cut to a budget or left out."""

    noun: str          # "diff" | "rendered objects"
    summary: str       # raw text for the <summary>
    content: str       # raw text shown in the fence
    lang: str

    def full(self) -> str:
        """The whole block, folded."""
        return fold(self.summary, md_fence(defuse(self.content), self.lang))

    def omitted(self) -> str:
        """A one-line note in place of the block."""
        return f"<sub>{md_text(self.noun.capitalize())} omitted: {len(self.content):,} characters; {LOCAL_HINT}.</sub>"

    def within(self, budget: int, min_useful: int = 400) -> str:
        """The largest rendering of at most ``budget`` characters: the block cut short, or the note."""
        total_lines = self.content.count("\n") + 1
        overhead = len(self.full()) - len(self.content) + 160
        room = budget - overhead
        if room < min_useful:
            return self.omitted()
        cut = self.content[:room]
        if "\n" in cut and cut.rfind("\n") > room // 2:
            cut = cut[:cut.rfind("\n") + 1]
        shown = cut.count("\n") + (0 if cut.endswith("\n") else 1)
        note = (f"<sub>{md_text(self.noun.capitalize())} cut: {shown:,} of {total_lines:,} lines shown "
                f"({len(self.content) - len(cut):,} characters left out); {LOCAL_HINT}.</sub>")
        body = md_fence(defuse(cut), self.lang) + "\n\n" + note
        return fold(self.summary + " (cut)", body)


def diff_block(report: ChangeReport) -> Folded | None:
    """The rendered diff of the change's serving objects, or ``None`` when there is none."""
    if not report.diff.strip():
        return None
    added, removed = diff_stat(report.diff)
    return Folded("diff", f"Diff of the rendered objects (+{added} −{removed})", report.diff, "diff")


def objects_block(report: ChangeReport) -> Folded | None:
    """The rendered objects after the change (before it, for a delete), as YAML."""
    objects = report.rendered_after or report.rendered_before
    if not objects:
        return None
    names = ", ".join(f"{o.get('kind', '?')}/{(o.get('metadata') or {}).get('name', '?')}" for o in objects[:5])
    more = f" and {len(objects) - 5} more" if len(objects) > 5 else ""
    text = yaml.safe_dump_all(objects, sort_keys=False, allow_unicode=True, width=1000)
    which = "after the change" if report.rendered_after else "to delete"
    return Folded("rendered objects", f"Rendered objects {which}: {clip(names, 300)}{more}", text, "yaml")


def change_heading(report: ChangeReport) -> str:
    """``#### ❌ fraud-scorer · production — update v7 → v8``."""
    change = report.change
    return (f"#### {STATE_ICON[report_state(report)]} {md_text(clip(change.name, 100))} · "
            f"{md_text(clip(change.environment, 63))} — {change.action.value} {version_cell(report)}")


def change_intro(report: ChangeReport) -> str:
    """Registry error, description, target and changed fields, in a few lines."""
    change, dep = report.change, report.change.deployment
    lines = []
    if report.registry_error:
        lines.append(f"🛑 **Registry error:** {md_text(clip(report.registry_error, 500))}. "
                     "The plan for this change is incomplete; comment `/plan` to retry.")
    if dep.description:
        lines.append(f"> {md_text(clip(dep.description, 500))}")
    target = (f"{md_code(dep.cluster)} / {md_code(dep.namespace)} · rollout {rollout_label(report)} · "
              f"file {md_code(clip(change.file, 200))}")
    if change.changed_fields:
        fields = ", ".join(md_code(clip(f, 100)) for f in change.changed_fields[:20])
        more = f" and {len(change.changed_fields) - 20} more" if len(change.changed_fields) > 20 else ""
        target += f"  \nchanged: {fields}{more}"
    lines.append(target)
    return "\n\n".join(lines)


def removal_line(report: ChangeReport, prune: bool) -> str:
    """For a delete: what happens to the live deployment after merge (decommission, or by hand)."""
    change, dep = report.change, report.change.deployment
    if change.action is not Action.DELETE:
        return ""
    place = f"cluster {md_code(dep.cluster)} namespace {md_code(dep.namespace)}"
    name, env = md_code(clip(change.name, 100)), md_code(clip(change.environment, 63))
    if prune:
        return (f"🗑️ After merge, {name} will be removed from {place} ({env}): modelherd deletes what it "
                "manages there and checks it is gone.")
    return (f"✋ prune is off for {env} in {md_code(CONFIG_FILE)}: after merge, remove {name} from {place} "
            "by hand.")


def visible_findings(report: ChangeReport) -> list[Finding]:
    """Findings to list; gate findings are left out when the metrics table already shows each gate."""
    if not report.metrics:
        return list(report.findings)
    return [f for f in report.findings if f.check != "metrics"]


def change_detail(report: ChangeReport, links: PlanLinks | None, prune: bool = True) -> str:
    """Everything about one change except the folded diff and objects."""
    parts = [change_heading(report), change_intro(report), removal_line(report, prune), metrics_section(report),
             other_metrics_section(report), lineage_section(report.candidate, links),
             findings_section(visible_findings(report), "Findings"), approvals_section(report.approvals)]
    return "\n\n".join(p for p in parts if p)


def change_compact(report: ChangeReport, prune: bool = True) -> str:
    """The heading, what a delete removes, failing or warning gates in one line each, error findings, approvals."""
    lines = [change_heading(report)]
    if report.change.action is Action.DELETE:
        lines.append(removal_line(report, prune))
    if report.registry_error:
        lines.append(f"🛑 Registry error: {md_text(clip(report.registry_error, 200))}")
    for m in report.metrics:
        if metric_state(m) > State.OK:
            c, s, d = metric_row_numbers(m.candidate, m.current, m.delta)
            lines.append(f"- {STATE_ICON[metric_state(m)]} {md_code(clip(m.metric, 100))} {c} vs {s} "
                         f"(Δ {d}); gate {md_text(clip(m.bounds, 100))}")
    errors = [f for f in visible_findings(report) if f.severity is Severity.ERROR]
    lines += [finding_line(f) for f in errors[:5]]
    if len(errors) > 5:
        lines.append(f"- … and {len(errors) - 5} more errors")
    lines += [approval_line(r) for r in report.approvals[:3]]
    lines.append(f"<sub>Details shortened to fit the comment; {LOCAL_HINT}.</sub>")
    return "\n".join(lines[:1]) + "\n\n" + "\n".join(lines[1:])


def footer(plan: Plan, links: PlanLinks | None) -> str:
    """Base and head refs (short SHAs), the check run, the commands."""
    refs = []
    for name, ref in (("base", plan.base_ref), ("head", plan.head_ref)):
        url = links.commit(ref) if links is not None and links.commit is not None else None
        refs.append(f"{name} {md_link(short_ref(ref), url) if url else md_code(short_ref(ref))}")
    if links is not None and links.check_run:
        refs.append(md_link("check run", links.check_run))
    commands = " · ".join(md_code(c) for c in COMMANDS)
    return f"---\n<sub>{' · '.join(refs)} · Commands: {commands}</sub>"


# ---------------------------------------------------------------------------------------------------
# Assembly within the limit


class Doc:
    """Markdown blocks joined by blank lines, with the total length kept up to date as blocks change."""

    SEP = "\n\n"

    def __init__(self, blocks: list[str]):
        self.blocks = list(blocks)
        self.size = 0
        self.count = 0
        for b in self.blocks:
            self._account(b, +1)

    def _account(self, block: str, sign: int) -> None:
        if block:
            self.size += sign * len(block)
            self.count += sign

    @property
    def length(self) -> int:
        """Length of :meth:`text` (blocks, separators and the final newline)."""
        return self.size + len(self.SEP) * max(0, self.count - 1) + 1

    def set(self, i: int, block: str) -> None:
        """Replace block ``i``."""
        self._account(self.blocks[i], -1)
        self.blocks[i] = block
        self._account(block, +1)

    def text(self) -> str:
        """The document."""
        return self.SEP.join(b for b in self.blocks if b) + "\n"


@dataclass
class ChangeBlocks:
    """Where one change's blocks sit in the :class:`Doc`, and its fallbacks."""

    report: ChangeReport
    state: State
    detail: int
    diff: int
    objects: int
    diff_fold: Folded | None
    objects_fold: Folded | None
    compact: str


def render_plan(plan: Plan, *, limit: int = GITHUB_LIMIT, links: PlanLinks | None = None,
                sections: Sequence[str] = (), cannot_deploy: str | None = None) -> str:
    """The plan comment: at most ``limit`` characters, starting with :data:`MARKER`.

    Pure: no I/O, no clock.  ``links`` turns run ids, versions, refs and the check run into links.
    ``sections`` (already escaped Markdown, e.g. the approvals state) follow the checks line and are
    kept whole: they are short and say what the PR still needs. ``cannot_deploy`` (escaped Markdown):
    why nothing of this pull request may deploy, said in the headline and right under it.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT} characters")
    live = [r for r in plan.reports if r.change.action is not Action.NOOP or r.findings or r.registry_error]
    rows = [table_row(r, plan.checks) for r in plan.reports]
    states = [report_state(r) for r in plan.reports]
    blocks = [MARKER, headline(plan, cannot_deploy is not None)]
    if cannot_deploy is not None:
        blocks.append(f"🚫 **This pull request cannot deploy**: {cannot_deploy}")
    table_at = len(blocks)
    blocks.append(summary_table(rows, states) if plan.has_changes else "")
    blocks.append(checks_line(plan.checks))
    blocks.extend(sections)
    changes: list[ChangeBlocks] = []
    for report in live:
        diff_fold, objects_fold = diff_block(report), objects_block(report)
        prune = plan.config.prunes(report.change.environment) if plan.config is not None else True
        at = len(blocks)
        blocks += [change_detail(report, links, prune), diff_fold.full() if diff_fold else "",
                   objects_fold.full() if objects_fold else ""]
        changes.append(ChangeBlocks(report, report_state(report), at, at + 1, at + 2, diff_fold, objects_fold,
                                    change_compact(report, prune)))
    files_at = len(blocks)
    blocks.append(findings_section(plan.file_findings, "Manifest and configuration findings"))
    omitted_at = len(blocks)
    blocks.append("")
    blocks.append(footer(plan, links))
    doc = Doc(blocks)
    if doc.length > limit:
        shrink(doc, changes, limit, table_at, files_at, omitted_at, rows, states, plan)
    text = doc.text()
    return text if len(text) <= limit else hard_cut(text, limit)


def shrink(doc: Doc, changes: list[ChangeBlocks], limit: int, table_at: int, files_at: int,
           omitted_at: int, rows: list[str], states: list[State], plan: Plan) -> None:
    """Degrade ``doc`` step by step until it fits in ``limit`` (see the module docstring)."""
    shrink_folds(doc, [(c.objects, c.objects_fold, c.state) for c in changes if c.objects_fold], limit)
    shrink_folds(doc, [(c.diff, c.diff_fold, c.state) for c in changes if c.diff_fold], limit)
    by_importance = sorted(changes, key=lambda c: (c.state, -len(doc.blocks[c.detail])))
    for c in by_importance:
        if doc.length <= limit:
            return
        if len(c.compact) < len(doc.blocks[c.detail]):
            doc.set(c.detail, c.compact)
    if doc.length > limit and doc.blocks[files_at]:
        doc.set(files_at, findings_section(plan.file_findings, "Manifest and configuration findings", 5))
    dropped = 0
    for c in by_importance:
        if doc.length <= limit:
            return
        for i in (c.detail, c.diff, c.objects):
            doc.set(i, "")
        dropped += 1
        doc.set(omitted_at, f"<sub>Details of {plural(dropped, 'change')} omitted to fit the comment "
                            f"limit; {LOCAL_HINT} for the full plan.</sub>")
    if doc.length > limit:
        doc.set(files_at, "")
        budget = limit - (doc.length - len(doc.blocks[table_at]))
        doc.set(table_at, summary_table(rows, states, budget))


def shrink_folds(doc: Doc, folds: list[tuple[int, Folded, State]], limit: int) -> None:
    """Cut or drop folded blocks, largest first (a passing change's before a blocked one's), until it fits."""
    for i, folded, _ in sorted(folds, key=lambda x: (-len(doc.blocks[x[0]]), x[2])):
        over = doc.length - limit
        if over <= 0:
            return
        doc.set(i, folded.within(len(doc.blocks[i]) - over))


def hard_cut(text: str, limit: int) -> str:
    """Last resort: cut the text and say so (the marker, first, always survives)."""
    note = f"\n\n…\n\n**Plan cut at {limit:,} characters.** {LOCAL_HINT.capitalize()} for the full plan.\n"
    return text[:limit - len(note)] + note
