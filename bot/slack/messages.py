"""Slack messages, pure: forge-neutral events in, Block Kit out.

A pull request gets one thread per channel.  Its first message is a **summary** (the PR, the plan's
state, and per model/environment the version from → to and where the rollout is); it is edited in
place as events arrive.  Each event is a **detail** reply in the thread.  Production failures and
rollbacks are prominent (a siren, and ``reply_broadcast`` so the channel sees them too); routine
success is quiet (thread only).

Everything that came from a manifest, a registry, a forge or a person (titles, names, versions,
descriptions, error text) passes through :func:`~modelherd.escape.slack_text`, so nothing can mention,
link or notify.  Free text (:attr:`SlackEvent.text`) goes into ``plain_text`` elements, where Slack
applies no formatting at all, so ``*bold*`` in a model description shows as typed.

Nothing here does I/O: :mod:`modelherd.slack.notifier` persists events, folds them into the thread's
summary (:func:`fold`) and sends what :func:`detail_message` and :func:`summary_message` build.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from modelherd.escape import clip, one_line, safe_url, slack_text

SECTION_LIMIT = 3000        # characters of a section's text (Block Kit)
CONTEXT_ELEMENTS = 10       # elements of a context block (Block Kit)
FALLBACK_LIMIT = 400        # notification text: short is kinder
FREE_TEXT_LIMIT = 1500      # user free text shown in one message
SUMMARY_ROWS = 20           # model/environment rows in a summary before "… and N more"
DEFAULT_PROMINENT = ("production", "prod")


class Kind(StrEnum):
    """What happened.  Routing (``channels.kinds``) uses these values."""

    PLAN_READY = "plan_ready"              # the plan is posted; ``needs`` lists what still blocks it
    APPROVAL = "approval"                  # an approval arrived; ``needs`` lists what is still missing
    DEPLOY_STARTED = "deploy_started"
    CANARY_STEP = "canary_step"            # a canary step (``percent``) verified
    DEPLOY_SUCCEEDED = "deploy_succeeded"
    DEPLOY_FAILED = "deploy_failed"        # a step failed; the automatic rollback starts
    DEPLOY_CANCELLED = "deploy_cancelled"  # cancelled or superseded before it finished
    ROLLED_BACK = "rolled_back"            # automatic rollback ended: state rolled_back | failed
    MANUAL_ROLLBACK = "manual_rollback"    # /rollback: state started | succeeded | failed
    DECOMMISSION = "decommission"          # a deleted manifest's model is removed: started | succeeded | failed
    DRIFT = "drift_found"
    LOCK_CONFLICT = "lock_conflict"


class Severity(StrEnum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    CRITICAL = "critical"


#: Kinds that are prominent (siren + broadcast to the channel) in a prominent environment.
PROMINENT_KINDS = frozenset({Kind.DEPLOY_FAILED, Kind.ROLLED_BACK, Kind.MANUAL_ROLLBACK, Kind.DRIFT})


@dataclass(frozen=True)
class Links:
    """Where to look: the check run, the forge deployment, the registry version (http(s) only)."""

    check: str | None = None
    deployment: str | None = None
    registry: str | None = None


@dataclass(frozen=True)
class SlackEvent:
    """Something a team may want to read about, forge-neutral.

    ``key`` is the caller's idempotency key: the same key is sent once per channel however often it is
    notified.  ``severity`` is derived from the kind and environment unless given.  ``text`` is free
    text (an error, a description) shown verbatim; ``needs`` is what a plan still waits for;
    ``owners`` are the model's owners (users or ``@org/team``), used for routing.
    """

    kind: str
    repo: str
    key: str
    pr_number: int | None = None
    pr_url: str | None = None
    pr_title: str | None = None
    author: str | None = None
    model: str | None = None
    environment: str | None = None
    version_from: str | None = None
    version_to: str | None = None
    state: str | None = None
    severity: str | None = None
    text: str = ""
    links: Links = field(default_factory=Links)
    owners: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    percent: int | None = None
    actor: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (what the store keeps until the message is sent)."""
        data = asdict(self)
        data["owners"], data["needs"] = list(self.owners), list(self.needs)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SlackEvent:
        """The event :meth:`to_json` wrote (unknown keys from a newer version are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["links"] = Links(**(values.get("links") or {}))
        values["owners"] = tuple(values.get("owners") or ())
        values["needs"] = tuple(values.get("needs") or ())
        return cls(**values)


@dataclass(frozen=True)
class Message:
    """What to post: the notification/fallback ``text``, the ``blocks``, and whether to broadcast."""

    text: str
    blocks: list[dict[str, Any]]
    broadcast: bool = False

    def digest(self) -> str:
        """A stable hash of the content (to skip a summary update that changes nothing)."""
        body = json.dumps({"text": self.text, "blocks": self.blocks}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Small text helpers
# ---------------------------------------------------------------------------------------------------


def esc(value: object, limit: int = 200) -> str:
    """Untrusted ``value`` for mrkdwn: one line, clipped, then escaped (never cut inside an entity)."""
    return slack_text(clip(one_line(value), limit))


def link(url: str | None, label: str) -> str | None:
    """``<url|label>`` with an already-escaped ``label``, or ``None`` unless ``url`` is http(s)."""
    href = safe_url(url)
    if href is None:
        return None
    return f"<{href.replace('&', '&amp;')}|{label}>"


def version(v: str | None) -> str:
    """``v8`` (escaped), or ``nothing`` for a create / a removal."""
    return f"v{esc(v, 64)}" if v else "nothing"


def is_prominent_env(environment: str | None, prominent: Iterable[str]) -> bool:
    return bool(environment) and environment.lower() in {p.lower() for p in prominent}


def pr_ref(repo: str, number: int | None) -> str:
    """``owner/repo#42`` escaped (the ``#`` cannot reference anything in Slack)."""
    return esc(repo, 120) + (f"#{number}" if number is not None else "")


# ---------------------------------------------------------------------------------------------------
# Severity and prominence
# ---------------------------------------------------------------------------------------------------


def severity(event: SlackEvent, prominent: Iterable[str] = DEFAULT_PROMINENT) -> Severity:
    """The event's severity: as given, else from its kind, state and environment."""
    if event.severity:
        return Severity(event.severity)
    prod = is_prominent_env(event.environment, prominent)
    kind, state = event.kind, event.state
    if kind in (Kind.DEPLOY_FAILED, Kind.DRIFT) or (kind == Kind.ROLLED_BACK) or \
            (kind in (Kind.MANUAL_ROLLBACK, Kind.DECOMMISSION) and state == "failed"):
        return Severity.CRITICAL if prod else Severity.WARNING
    if kind in (Kind.MANUAL_ROLLBACK, Kind.LOCK_CONFLICT, Kind.DEPLOY_CANCELLED):
        return Severity.WARNING
    if kind == Kind.DEPLOY_SUCCEEDED or (kind == Kind.APPROVAL and not event.needs) or \
            (kind == Kind.DECOMMISSION and state == "succeeded"):
        return Severity.SUCCESS
    return Severity.INFO


def broadcast(event: SlackEvent, prominent: Iterable[str] = DEFAULT_PROMINENT) -> bool:
    """Also show the thread reply in the channel: production failures and rollbacks, critical events."""
    prominent = tuple(prominent)
    if severity(event, prominent) is Severity.CRITICAL:
        return True
    return event.kind in PROMINENT_KINDS and is_prominent_env(event.environment, prominent)


_EMOJI = {Severity.INFO: ":large_blue_circle:", Severity.SUCCESS: ":white_check_mark:",
          Severity.WARNING: ":warning:", Severity.CRITICAL: ":rotating_light:"}


# ---------------------------------------------------------------------------------------------------
# Detail messages (thread replies)
# ---------------------------------------------------------------------------------------------------


def _where(event: SlackEvent) -> str:
    """``fraud-scorer in production`` (escaped; no formatting around untrusted names)."""
    model = esc(event.model, 80) if event.model else "the model"
    return f"{model} in {esc(event.environment, 63)}" if event.environment else model


def _change(event: SlackEvent) -> str:
    return f"{version(event.version_from)} → {version(event.version_to)}"


def _by(event: SlackEvent) -> str:
    return f" by {esc(event.actor, 80)}" if event.actor else ""


def _plan_headline(event: SlackEvent) -> str:
    if event.kind == Kind.APPROVAL:
        if event.needs:
            return f"Approval{_by(event)}; still waiting on {len(event.needs)} item(s)"
        return f"Approved{_by(event)}: ready to deploy"
    if event.needs:
        return f"Plan ready; waiting on {len(event.needs)} item(s)"
    return "Plan ready: nothing blocks it"


def _rollback_headline(event: SlackEvent) -> str:
    where = _where(event)
    if event.kind == Kind.ROLLED_BACK:
        if event.state == "failed":
            return f"Automatic rollback FAILED: {where} (was restoring {version(event.version_from)})"
        restored = f"back on {version(event.version_from)}" if event.version_from else "removed"
        return f"Rolled back automatically: {where} is {restored}"
    state = event.state or "started"
    if state == "succeeded":
        return f"Manual rollback done{_by(event)}: {where} serves {version(event.version_to)}"
    if state == "failed":
        return f"Manual rollback FAILED{_by(event)}: {where} to {version(event.version_to)}"
    return f"Manual rollback started{_by(event)}: {where} to {version(event.version_to)}"


def _decommission_headline(event: SlackEvent) -> str:
    """``Decommissioned: churn in staging (was v3)``."""
    was = f" (was {version(event.version_from)})" if event.version_from else ""
    words = {"succeeded": "Decommissioned", "failed": "Decommission FAILED"}.get(event.state or "",
                                                                                 "Decommission started")
    return f"{words}: {_where(event)}{was}"


def headline(event: SlackEvent) -> str:
    """One mrkdwn line saying what happened (our words, escaped names)."""
    where, change = _where(event), _change(event)
    kind = event.kind
    if kind in (Kind.PLAN_READY, Kind.APPROVAL):
        return _plan_headline(event)
    if kind == Kind.DECOMMISSION:
        return _decommission_headline(event)
    if kind in (Kind.ROLLED_BACK, Kind.MANUAL_ROLLBACK):
        return _rollback_headline(event)
    if kind == Kind.CANARY_STEP:
        return f"Canary {event.percent if event.percent is not None else '?'}% verified: {where} ({change})"
    simple = {
        Kind.DEPLOY_STARTED: f"Deploy started: {where}, {change}",
        Kind.DEPLOY_SUCCEEDED: f"Deployed: {where} serves {version(event.version_to)}",
        Kind.DEPLOY_FAILED: f"Deploy FAILED: {where} ({change}); rolling back",
        Kind.DEPLOY_CANCELLED: f"Deploy stopped ({esc(event.state or 'cancelled', 32)}): {where} ({change})",
        Kind.DRIFT: f"Drift found: {where} does not serve what the manifest says ({change})",
        Kind.LOCK_CONFLICT: f"Lock conflict: {where} is locked by another pull request",
    }
    return simple.get(kind, f"{esc(kind, 40)}: {where}")


def link_line(event: SlackEvent) -> str | None:
    """``PR #42 · check · deployment · registry v8`` as mrkdwn links; ``None`` when there is none."""
    parts = [
        link(event.pr_url, f"PR #{event.pr_number}" if event.pr_number is not None else "pull request"),
        link(event.links.check, "check"),
        link(event.links.deployment, "deployment"),
        link(event.links.registry, f"registry {version(event.version_to)}" if event.version_to else "registry"),
    ]
    shown = [p for p in parts if p]
    return " · ".join(shown) if shown else None


def plain(text: str, limit: int = FREE_TEXT_LIMIT) -> dict[str, Any]:
    """A ``plain_text`` object: Slack formats nothing in it (``*bold*`` shows as typed)."""
    return {"type": "plain_text", "text": slack_text(clip(text, limit)) or " ", "emoji": False}


def _needs_block(needs: Iterable[str]) -> dict[str, Any]:
    lines = [f"• {esc(n, 300)}" for n in list(needs)[:15]]
    return {"type": "section", "text": {"type": "mrkdwn", "text": "*Still needs:*\n" + "\n".join(lines)}}


def fallback(event: SlackEvent, sev: Severity) -> str:
    """The notification text: emoji-free, escaped, short."""
    prefix = "[PRODUCTION] " if sev is Severity.CRITICAL else ""
    text = f"{prefix}{pr_ref(event.repo, event.pr_number)}: {headline(event)}"
    return clip(text, FALLBACK_LIMIT)


def detail_message(event: SlackEvent, prominent: Iterable[str] = DEFAULT_PROMINENT) -> Message:
    """The thread reply (or, without a pull request, the channel message) for one event."""
    prominent = tuple(prominent)
    sev = severity(event, prominent)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{_EMOJI[sev]} *{headline(event)}*"}}]
    if event.needs:
        blocks.append(_needs_block(event.needs))
    if event.text.strip():
        blocks.append({"type": "section", "text": plain(event.text)})
    links = link_line(event)
    context = [{"type": "mrkdwn", "text": links}] if links else []
    if event.pr_number is None and event.pr_url is None:
        context.insert(0, {"type": "mrkdwn", "text": esc(event.repo, 120)})
    if context:
        blocks.append({"type": "context", "elements": context[:CONTEXT_ELEMENTS]})
    return Message(text=fallback(event, sev), blocks=blocks, broadcast=broadcast(event, prominent))


# ---------------------------------------------------------------------------------------------------
# The summary (first message of the thread, edited in place)
# ---------------------------------------------------------------------------------------------------


def new_summary(repo: str, pr_number: int | None) -> dict[str, Any]:
    """An empty summary state (JSON-able; the store keeps it with the thread)."""
    return {"repo": repo, "pr_number": pr_number, "pr_url": None, "pr_title": None, "author": None,
            "plan": None, "rows": []}


def _row_state(event: SlackEvent) -> tuple[str, str] | None:
    """(severity, words) of a model/environment row after ``event`` (words already escaped); ``None``
    leaves the row as it is."""
    kind, state = event.kind, event.state
    table: dict[str, tuple[str, str]] = {
        Kind.PLAN_READY: ("info", "planned"),
        Kind.DEPLOY_STARTED: ("info", "deploying"),
        Kind.DEPLOY_SUCCEEDED: ("success", "deployed"),
        Kind.DEPLOY_FAILED: ("critical", "failed, rolling back"),
        Kind.DEPLOY_CANCELLED: ("warning", esc(state or "cancelled", 32)),
        Kind.DRIFT: ("critical", "drift found"),
        Kind.LOCK_CONFLICT: ("warning", "locked by another pull request"),
    }
    if kind == Kind.CANARY_STEP:
        return ("info", f"canary {event.percent}% verified")
    if kind == Kind.DECOMMISSION:
        return {"succeeded": ("success", "decommissioned"), "failed": ("critical", "decommission failed")
                }.get(state or "", ("info", "decommissioning"))
    if kind == Kind.ROLLED_BACK:
        return ("critical", "rollback failed") if state == "failed" else ("critical", "rolled back")
    if kind == Kind.MANUAL_ROLLBACK:
        to = version(event.version_to)
        return {"succeeded": ("warning", f"rolled back manually to {to}"),
                "failed": ("critical", f"manual rollback to {to} failed")
                }.get(state or "", ("warning", f"manual rollback to {to} running"))
    return table.get(kind)


def _upsert_row(rows: list[dict[str, Any]], event: SlackEvent, sev: str, words: str) -> list[dict[str, Any]]:
    """Rows with the event's model/environment row set (appended when new)."""
    out = [dict(r) for r in rows]
    row = next((r for r in out if r["model"] == event.model and r["environment"] == event.environment), None)
    if row is None:
        row = {"model": event.model, "environment": event.environment, "from": None, "to": None}
        out.append(row)
    if event.kind != Kind.MANUAL_ROLLBACK:  # a /rollback's versions are in its state words; the row keeps the PR's
        row["from"] = event.version_from if event.version_from is not None else row["from"]
        row["to"] = event.version_to if event.version_to is not None else row["to"]
    if event.kind == Kind.DECOMMISSION:     # nothing serves after it
        row["to"] = None
    row["severity"], row["state"] = sev, words
    for name in ("check", "deployment", "registry"):
        url = getattr(event.links, name)
        if url:
            row[name] = url
    return out


def fold(summary: Mapping[str, Any], event: SlackEvent) -> dict[str, Any]:
    """The summary after ``event`` (a new dict; PR facts kept unless the event brings newer ones)."""
    out = dict(summary)
    for name in ("pr_url", "pr_title", "author"):
        if getattr(event, name):
            out[name] = getattr(event, name)
    if event.kind in (Kind.PLAN_READY, Kind.APPROVAL):
        done = "ready" if event.kind == Kind.PLAN_READY else "approved"
        check = event.links.check or (out.get("plan") or {}).get("check")
        out["plan"] = {"state": "waiting" if event.needs else done, "needs": list(event.needs), "check": check}
    row = _row_state(event)
    if row is not None and event.model and event.environment:
        out["rows"] = _upsert_row(out.get("rows") or [], event, *row)
    return out


def _title_line(summary: Mapping[str, Any]) -> str:
    ref = pr_ref(summary["repo"], summary.get("pr_number"))
    linked = link(summary.get("pr_url"), ref) or ref
    title = f": {esc(summary['pr_title'], 150)}" if summary.get("pr_title") else ""
    author = f"\nby {esc(summary['author'], 80)}" if summary.get("author") else ""
    return f":package: *{linked}*{title}{author}"


def _plan_line(plan: Mapping[str, Any] | None) -> str:
    if not plan:
        return "Plan: not posted yet"
    if plan["state"] == "approved":
        return ":white_check_mark: Plan approved"
    if plan["state"] == "ready":
        return ":clipboard: Plan ready"
    needs = "; ".join(esc(n, 120) for n in plan.get("needs", [])[:5])
    more = len(plan.get("needs", [])) - 5
    return f":hourglass_flowing_sand: Plan waiting on: {needs}" + (f" (and {more} more)" if more > 0 else "")


def _row_line(row: Mapping[str, Any]) -> str:
    sev = Severity(row.get("severity") or "info")
    links = [link(row.get("deployment"), "deployment"), link(row.get("registry"), "registry")]
    shown = " · ".join(x for x in links if x)
    return (f"{_EMOJI[sev]} {esc(row['model'], 63)} · {esc(row['environment'], 63)}: "
            f"{version(row.get('from'))} → {version(row.get('to'))}, {row.get('state')}"
            + (f" ({shown})" if shown else ""))


def summary_message(summary: Mapping[str, Any]) -> Message:
    """The thread's first message: the PR, the plan's state, one line per model/environment."""
    rows = summary.get("rows") or []
    lines = [_row_line(r) for r in rows[:SUMMARY_ROWS]]
    if len(rows) > SUMMARY_ROWS:
        lines.append(f"… and {len(rows) - SUMMARY_ROWS} more")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _title_line(summary)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _plan_line(summary.get("plan"))}},
    ]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip("\n".join(lines), SECTION_LIMIT)}})
    check = link((summary.get("plan") or {}).get("check") or _first(rows, "check"), "check")
    if check:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Details in the thread · {check}"}]})
    else:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "Details in the thread"}]})
    states = "; ".join(f"{esc(r['environment'], 63)} {r.get('state')}" for r in rows[:5])
    title = f" {esc(summary['pr_title'], 120)}" if summary.get("pr_title") else ""
    text = clip(f"{pr_ref(summary['repo'], summary.get('pr_number'))}{title}" + (f": {states}" if states else ""),
                FALLBACK_LIMIT)
    return Message(text=text, blocks=blocks)


def _first(rows: Iterable[Mapping[str, Any]], key: str) -> str | None:
    return next((r[key] for r in rows if r.get(key)), None)


# ---------------------------------------------------------------------------------------------------
# From the rollout engine
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullContext:
    """What the rollout engine does not know about a pull request: its URL, title, author and links."""

    url: str | None = None
    title: str | None = None
    author: str | None = None
    links: Links = field(default_factory=Links)


def _moved_to(record: Any, event: Any, state: str) -> tuple[bool, str | None]:
    """(``event`` was logged in the transaction that moved ``record`` into ``state``, the state before)."""
    transitions = list(getattr(record, "transitions", None) or [])
    if event.state != state or not transitions or transitions[-1].get("state") != state:
        return False, None
    try:
        at = datetime.fromisoformat(transitions[-1]["at"])
    except (KeyError, TypeError, ValueError):
        return False, None
    if at != event.at:
        return False, None
    before = transitions[-2].get("state") if len(transitions) > 1 else None
    return True, before


def _entered_rolling_back(record: Any, event: Any) -> bool:
    """The failure that starts the automatic rollback: a ``failed: …; rolling back`` transition, or the
    failed outcome of the candidate's apply (a refused restore is an outcome of the restore instead)."""
    if event.state != "rolling_back" or not _moved_to(record, event, "rolling_back")[0]:
        return False
    if event.kind == "transition":
        return True
    return event.kind == "outcome" and event.ok is False and event.action == "apply" \
        and event.version == record.to_version


def _rollout_kind(record: Any, event: Any) -> tuple[str, str | None] | None:
    """(kind, state) of the Slack event a rollout log entry makes, or ``None`` for the noise."""
    manual = record.trigger == "rollback"
    if getattr(record, "action", "deploy") == "decommission":
        return _decommission_kind(record, event)
    if event.kind == "transition" and event.action == "state" and event.state == "applying" \
            and _moved_to(record, event, "applying") == (True, "pending"):
        return (Kind.MANUAL_ROLLBACK, "started") if manual else (Kind.DEPLOY_STARTED, None)
    if _entered_rolling_back(record, event):
        return Kind.DEPLOY_FAILED, "rolling_back"
    if event.state == "succeeded":
        return (Kind.MANUAL_ROLLBACK, "succeeded") if manual else (Kind.DEPLOY_SUCCEEDED, None)
    if event.state == "rolled_back":
        return Kind.ROLLED_BACK, "rolled_back"
    if event.state == "failed":
        return (Kind.MANUAL_ROLLBACK, "failed") if manual else (Kind.ROLLED_BACK, "failed")
    if event.state in ("cancelled", "superseded") and record.started_at is not None:
        return Kind.DEPLOY_CANCELLED, event.state
    if (not manual and event.kind == "outcome" and event.action == "verify" and event.ok
            and event.step is not None and record.steps[event.step] < 100):
        return Kind.CANARY_STEP, None
    return None


def _decommission_kind(record: Any, event: Any) -> tuple[str, str | None] | None:
    """Started, decommissioned, failed, or stopped after it started."""
    if event.kind == "transition" and event.action == "state" and event.state == "applying" \
            and _moved_to(record, event, "applying") == (True, "pending"):
        return Kind.DECOMMISSION, "started"
    if event.state in ("succeeded", "failed"):
        return Kind.DECOMMISSION, event.state
    if event.state in ("cancelled", "superseded") and record.started_at is not None:
        return Kind.DEPLOY_CANCELLED, event.state
    return None


def rollout_event(record: Any, event: Any, pull: PullContext | None = None) -> SlackEvent | None:
    """The :class:`SlackEvent` for one rollout log entry (``notify(record, event)``), or ``None``.

    Started, each verified canary step below 100 %, succeeded, failed (rolling back), rolled back,
    cancelled after starting (a final state is logged once, by the entry that reached it), and ``/rollback`` (started / succeeded / failed) make messages; intents,
    polls and the like do not.  The key is the log entry's id, so a repeated notify sends nothing twice.
    """
    found = _rollout_kind(record, event)
    if found is None:
        return None
    kind, state = found
    pull = pull or PullContext()
    percent = record.steps[event.step] if kind == Kind.CANARY_STEP else None
    text = ""
    if kind in (Kind.DEPLOY_FAILED, Kind.DEPLOY_CANCELLED) or state == "failed":
        text = record.error or event.message
    elif kind == Kind.MANUAL_ROLLBACK and state == "started":
        text = record.reason or ""
    owners = tuple((record.spec or {}).get("owners") or ())
    removed = getattr(record, "action", "deploy") == "decommission"
    return SlackEvent(
        kind=str(kind), repo=record.repo, key=f"rollout:{record.id}:{event.id}", pr_number=record.pr_number,
        pr_url=pull.url, pr_title=pull.title, author=pull.author, model=record.model,
        environment=record.environment, version_from=record.from_version,
        version_to=None if removed else record.to_version, state=state, text=text or "", links=pull.links, owners=owners, percent=percent,
        actor=record.actor if kind == Kind.MANUAL_ROLLBACK else None)


__all__ = ["Kind", "Links", "Message", "PullContext", "Severity", "SlackEvent", "broadcast", "detail_message",
           "fold", "headline", "new_summary", "rollout_event", "severity", "summary_message"]
