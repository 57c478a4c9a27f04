"""Rollout progress back to the pull request: a forge deployment per model and environment, the
``modelherd/rollout`` check on the deployed commit, and a "Rollouts" section in the plan comment.

Only state changes that a person follows are reported (a step starts, the rollout succeeds, fails,
rolls back or is cancelled), so a three-step canary costs about a dozen writes, not one per engine
event. Errors here never stop a rollout.

**Published once, and surely.** What was published is recorded on the rollout (``reported``:
``state:step``), after the forge took every write of it; a state already published is not published
again. A publication that fails (a 5xx, a timeout, a killed worker) is published again from the queue
(:meth:`Progress.publish_job`, soon after the failure, and by the periodic sweep of unpublished
rollouts), with the rollout's state at that time: the check ends completed, the deployment at its
final state. Each write is safe to repeat: the deployment is found by its rollout id, the check run
is updated in place (found on the forge, never created twice), the comment is edited by its marker.
Publications of one pull request are serialised across workers (a store mutex).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from modelherd.comment import GITHUB_LIMIT
from modelherd.escape import md_cell, md_code, md_text
from modelherd.forges.base import CheckReport, CheckStatus, Forge
from modelherd.store.rollouts import RolloutEventRecord, RolloutRecord

log = logging.getLogger(__name__)

ROLLOUT_CHECK = "modelherd/rollout"
RETRY_SECONDS = 30.0             # a failed publication is tried again after this (then by the sweep)
GIVE_UP_AFTER = timedelta(days=1)  # the sweep stops publishing a rollout that finished this long ago
REPORTED = frozenset({"applying", "rolling_back", "succeeded", "failed", "rolled_back", "cancelled", "superseded"})
DEPLOYMENT_STATE = {"pending": "queued", "applying": "in_progress", "verifying": "in_progress",
                    "rolling_back": "in_progress", "succeeded": "success", "failed": "failure",
                    "rolled_back": "failure", "cancelled": "inactive", "superseded": "inactive"}
ICON = {"pending": "⏳", "applying": "🔄", "verifying": "🔎", "rolling_back": "↩️", "succeeded": "✅",
        "failed": "❌", "rolled_back": "↩️", "cancelled": "⏹️", "superseded": "⏭️"}


def deployment_state(record: RolloutRecord) -> str:
    """The forge deployment state; a finished decommission is ``inactive`` (nothing serves there now)."""
    if record.decommission and record.state == "succeeded":
        return "inactive"
    return DEPLOYMENT_STATE[record.state]


def version_text(record: RolloutRecord) -> str:
    """``v1 → v2``, ``v2`` for a create, ``v3 → removed`` for a decommission."""
    if record.decommission:
        return f"v{record.from_version} → removed" if record.from_version else "removed"
    return f"v{record.from_version} → v{record.to_version}" if record.from_version else f"v{record.to_version}"


def environment_name(record: RolloutRecord) -> str:
    """The forge environment of a rollout: one per environment and model (``production/fraud-detector``)."""
    return f"{record.environment}/{record.model}"


def step_text(record: RolloutRecord) -> str:
    """``canary 50% (step 2 of 3)``, ``100%``, or the final state in words."""
    if record.decommission:
        return decommission_step_text(record)
    if record.state in ("applying", "verifying") and record.steps:
        k = min(record.current_step, len(record.steps) - 1)
        percent = record.steps[k]
        label = f"{percent}%" if len(record.steps) == 1 else f"canary {percent}% (step {k + 1} of {len(record.steps)})"
        return label if record.state == "applying" else f"{label}, verifying"
    if record.state == "rolling_back":
        return f"rolling back to v{record.from_version}" if record.from_version else "removing the failed create"
    if record.state == "rolled_back":
        return f"rolled back to v{record.from_version}" if record.from_version else "removed"
    return record.state.replace("_", " ")


def decommission_step_text(record: RolloutRecord) -> str:
    """A decommission's state in words, saying where it removes from."""
    from modelherd.decommission import where

    return {"pending": f"to be removed from {where(record)}",
            "applying": f"removing from {where(record)}",
            "verifying": f"removed from {where(record)}, verifying it is gone",
            "succeeded": f"decommissioned: removed from {where(record)}",
            "failed": f"decommission failed in {where(record)}"}.get(record.state,
                                                                            record.state.replace("_", " "))


def description(record: RolloutRecord) -> str:
    text = f"{record.model} {version_text(record)}: {step_text(record)}"
    if record.error and record.state in ("failed", "rolled_back", "rolling_back"):
        text += f" ({record.error})"
    return text


def rollouts_table(records: list[RolloutRecord]) -> str:
    """Markdown: one row per rollout (all text escaped)."""
    rows = ["| | Model | Environment | Version | State |", "|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: r.id):
        change = md_cell(version_text(r))
        state = step_text(r) + (f" — {r.error}" if r.error and r.final and r.state != "succeeded" else "")
        rows.append(f"| {ICON.get(r.state, '')} | {md_cell(r.model)} | {md_cell(r.environment)} | {change} "
                    f"| {md_cell(state)} |")
    return "\n".join(rows)


def rollout_check(records: list[RolloutRecord]) -> CheckReport:
    """``modelherd/rollout`` on a commit: in progress until every rollout of it is final."""
    summary = rollouts_table(records)
    if not all(r.final for r in records):
        active = [r for r in records if not r.final]
        return CheckReport(ROLLOUT_CHECK, CheckStatus.IN_PROGRESS, None,
                           f"Rolling out: {', '.join(f'{r.model}/{r.environment}' for r in active)}"[:250], summary)
    failed = [r for r in records if r.state not in ("succeeded", "superseded")]
    removed = sum(1 for r in records if r.decommission and r.state == "succeeded")
    title = (f"{len(failed)} of {len(records)} rollout(s) did not succeed" if failed
             else f"{len(records)} rollout(s) succeeded")
    if removed:
        title += f" ({removed} decommissioned)"
    return CheckReport(ROLLOUT_CHECK, CheckStatus.COMPLETED, "failure" if failed else "success", title, summary)


class Progress:
    """The rollout engine's ``notify(record, event)``: publishes progress through the repository's forge.

    ``queue`` (a :class:`~modelherd.queue.JobQueue`): where a failed publication is retried
    (:meth:`bind` makes :meth:`publish_job` its progress job and :meth:`sweep` part of its sweep)."""

    def __init__(self, store: Any, forge_for_repo: Callable[[str], Forge | None], *, queue: Any = None,
                 retry_seconds: float = RETRY_SECONDS, mutex_wait: float = 10.0):
        self.store = store
        self.forge_for_repo = forge_for_repo
        self.queue = queue
        self.retry_seconds = retry_seconds
        self.mutex_wait = mutex_wait

    def bind(self) -> Progress:
        self.queue.bind_progress(self.publish_job, self.sweep)
        return self

    def __call__(self, record: RolloutRecord, event: RolloutEventRecord) -> None:
        # State changes are logged as transitions or as the outcome of the side effect that caused them
        # (a verified step moves to the next one; marking the version live completes the rollout).
        if event.kind not in ("transition", "outcome") or record.state not in REPORTED:
            return
        try:
            self.publish(record.id)
        except Exception:
            log.warning("rollout %s: progress not published; again in %.0fs", record.id, self.retry_seconds,
                        exc_info=True)
            if self.queue is not None:
                self.queue.enqueue_progress(record.id, delay=self.retry_seconds)

    def publish_job(self, rollout_id: int) -> bool:
        """The queue's job: publish again (a failure waits for the sweep). Never raises."""
        try:
            return self.publish(rollout_id)
        except Exception:
            log.warning("rollout %s: progress not published; the sweep will try again", rollout_id, exc_info=True)
            return False

    def sweep(self) -> list[int]:
        """Queue the publication of every rollout whose state was not published (periodic); one that
        finished more than :data:`GIVE_UP_AFTER` ago is left as it is (its forge keeps refusing)."""
        ids = self.store.unreported_rollouts(tuple(REPORTED), finished_after=self.store.now() - GIVE_UP_AFTER)
        for rollout_id in ids:
            self.queue.enqueue_progress(rollout_id)
        return ids

    def publish(self, rollout_id: int) -> bool:
        """Publish the rollout's current state unless it was published; whether anything was written.
        Raises when a write fails (nothing is recorded then)."""
        record = self.store.get_rollout(rollout_id)
        if record is None or record.state not in REPORTED or record.reported == record.publication:
            return False
        forge = self.forge_for_repo(record.repo)
        if forge is None:
            self.store.mark_reported(record.id, record.publication)
            return False
        scope = record.pr_number if record.pr_number is not None else (record.sha or f"rollout-{record.id}")
        with self.store.mutex(f"progress:{record.repo}#{scope}", ttl=120.0, wait=self.mutex_wait):
            record = self.store.get_rollout(rollout_id)          # the newest state, under the mutex
            if record.state not in REPORTED or record.reported == record.publication:
                return False
            self._deployment(forge, record)
            if record.sha:
                same_commit = [r for r in self._related(record) if r.sha == record.sha]
                forge.report_check(record.sha, rollout_check(same_commit))
            if record.pr_number:
                self._comment(forge, record)
            self.store.mark_reported(record.id, record.publication)
        return True

    def _related(self, record: RolloutRecord) -> list[RolloutRecord]:
        if record.pr_number is None:
            return [record]
        return self.store.list_rollouts(repo=record.repo, pr_number=record.pr_number, newest_first=False)

    def _deployment(self, forge: Forge, record: RolloutRecord) -> None:
        if not record.sha:
            return
        deployment_id = self.store.run_once(
            f"deployment:{record.repo}:{record.id}",
            lambda: forge.create_deployment(record.sha, environment_name(record), description=description(record),
                                            payload={"modelherd_rollout": record.id, "model": record.model,
                                                     "version": record.to_version, "action": record.action},
                                            production=record.environment.startswith("prod")))
        url = None if record.decommission else (record.spec or {}).get("url")
        forge.set_deployment_status(str(deployment_id), deployment_state(record),
                                    description=description(record), environment_url=url)
        if record.decommission and record.state == "succeeded":
            forge.retire_environment(environment_name(record))

    def _comment(self, forge: Forge, record: RolloutRecord) -> None:
        saved = self.store.pull(record.repo, record.pr_number)
        if saved is None or not saved.comment_body:
            return
        section = "\n\n#### Rollouts\n\n" + rollouts_table(self._related(record))
        body = saved.comment_body[: GITHUB_LIMIT - len(section) - 1] + section
        from modelherd.comment import MARKER

        forge.upsert_comment(record.pr_number, MARKER, body, create=False)


def rollout_reply(started: list[tuple[Any, int]], skipped: list[tuple[Any, str]]) -> str:
    """The reply to a command (or merge note) that started rollouts: what started, what did not and why."""
    lines = []
    for report, rollout_id in started:
        c = report.change
        if c.action.value == "delete":
            dep = c.deployment
            was = f" (was v{report.current.version})" if report.current else ""
            lines.append(f"🗑️ {md_code(c.name)}{was} will be removed from {md_code(c.environment)}: cluster "
                         f"{md_code(dep.cluster)} namespace {md_code(dep.namespace)} (rollout #{rollout_id}, decommission)")
            continue
        frm = f"v{report.current.version} → " if report.current else ""
        lines.append(f"🚀 {md_code(c.name)} {frm}v{report.candidate.version} to {md_code(c.environment)} "
                     f"(rollout #{rollout_id}, {c.deployment.rollout.strategy})")
    for report, reason in skipped:
        lines.append(f"⏭️ {md_code(report.change.name)} in {md_code(report.change.environment)} not deployed: "
                     f"{md_text(reason)}")
    return "\n".join(f"- {line}" for line in lines) if lines else "nothing to deploy"
