"""``modelherd history [MODEL] [ENV]``: every deployment and rollback the store recorded, newest first.

Who started it (and how: merge, ``/deploy``, ``/rollback``, self-heal), from which pull request and
commit, which version replaced which, the outcome, and the timings of each traffic step and of an
automatic rollback.  Reads the store named by the settings' ``database_url``; never writes to it.

Exported as :data:`command`; the main ``modelherd`` group attaches it.
"""

from __future__ import annotations

import json
from datetime import datetime

import click

from modelherd.rollout import HistoryRecord, history
from modelherd.settings import load_settings


def _user_error(message: str) -> click.ClickException:
    from modelherd.cli import UserError   # imported late: the main group imports this module

    return UserError(message)


def _clock(at: datetime | None, *, date: bool = False) -> str:
    if at is None:
        return "-"
    return at.strftime("%Y-%m-%d %H:%M:%SZ" if date else "%H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "running"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or hours else "") + f"{secs}s"


def render_text(record: HistoryRecord) -> list[str]:
    """A few lines per rollout: headline, timing, steps, rollback, error."""
    versions = f"v{record.from_version} -> v{record.to_version}" if record.from_version else f"new v{record.to_version}"
    if record.action == "decommission":
        versions = f"decommission (was v{record.from_version})" if record.from_version else "decommission"
    who = f" by {record.actor}" if record.actor else ""
    where = " ".join(filter(None, [(f"PR #{record.pr_number}" if record.pr_number else ""),
                                   (f"@ {record.sha[:12]}" if record.sha else "")]))
    headline = f"#{record.id}  {record.model}/{record.environment}  {versions}  {record.outcome}  {record.trigger}{who}"
    started = _clock(record.started_at or record.requested_at, date=True)
    timing = (f"    {started} -> {_clock(record.finished_at)}  ({_duration(record.duration_seconds)})  "
              f"{record.target} on {record.cluster}")
    lines = [headline + (f"  {where}" if where else ""), timing]
    for step in record.steps:
        if step.outcome == "not reached":
            continue
        if record.action == "decommission":
            lines.append(f"    remove  removed {_clock(step.applied_at)}  verified absent {_clock(step.verified_at)}  "
                         f"{step.outcome}")
            continue
        lines.append(f"    step {step.step} {step.percent:>3}%  applied {_clock(step.applied_at)}  "
                     f"ready {_clock(step.ready_at)}  verified {_clock(step.verified_at)}  {step.outcome}")
    if record.rollback is not None:
        rb = record.rollback
        what = f"restore v{rb.version} at 100%" if rb.action == "restore" else "remove the failed create"
        lines.append(f"    rollback: {what}  started {_clock(rb.started_at)}  done {_clock(rb.done_at)}  {rb.outcome}")
    if record.reason:
        lines.append(f"    reason: {record.reason}")
    if record.error and record.outcome != "succeeded":
        lines.append(f"    error: {record.error}")
    lines.extend(f"    note: {note}" for note in record.notes)
    return lines


@click.command("history")
@click.argument("model", required=False)
@click.argument("environment", required=False)
@click.option("--settings", "settings_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Settings file (YAML/JSON); env MODELHERD_CONFIG.")
@click.option("--repo", default=None, help="Only this repository (owner/name).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def command(model: str | None, environment: str | None, settings_path: str | None, repo: str | None,
            limit: int, fmt: str) -> None:
    """Show the deployments and rollbacks of MODEL (in ENV), newest first."""
    from sqlalchemy.exc import SQLAlchemyError

    from modelherd.store import Store

    try:
        settings = load_settings(settings_path)
    except Exception as exc:
        raise _user_error(f"settings: {exc}") from None
    store = Store.from_url(settings.database_url)
    try:
        records = history(store, repo=repo, model=model, environment=environment, limit=limit)
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0]
        raise _user_error(f"cannot read the store ({first}); run `modelherd db upgrade`?") from None
    finally:
        store.dispose()
    if fmt == "json":
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    if not records:
        scope = "/".join(filter(None, [model, environment]))
        click.echo(f"no rollouts recorded{' for ' + scope if scope else ''}")
        return
    for record in records:
        click.echo("\n".join(render_text(record)))


__all__ = ["command", "render_text"]
