"""Decommission: a merged pull request deleted a model's manifest (or one of its environments), so the
model stops serving there — through the same durable engine as any rollout (:mod:`modelherd.rollout`).

A decommission is a rollout row with ``action = "decommission"``; ``from_version`` (and ``to_version``)
is the version it removes. It queues like any rollout (one active rollout per model/environment,
promotion order through ``after_id``, superseded by a newer rollout of the key) and then::

    pending --> applying --remove (intent, Target.remove, outcome)--> verifying
                                       --Target.absent READY--> verify outcome
                                       --mark-removed: the registry alias <env> is deleted--> succeeded

**Intent, then outcome**, as for every side effect: a worker killed after the ``remove`` intent asks the
target whether anything is left (``absent``); READY confirms the earlier call without a second one,
otherwise ``remove`` is sent again (removing what is absent is fine).  ``mark-removed`` is repeated with
the values its intent recorded (it deletes the alias only while it still points at the removed version).

**No automatic rollback**: a decommission that fails (the target refuses until the step timeout, or the
objects are still there when it runs out) ends ``failed`` and nothing is re-created — the merged pull
request said the model should not serve there.  ``/rollback`` re-creates the last good version (a
``rollback`` rollout of it, a create) and opens the revert pull request that puts the manifest back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modelherd.manifest import Deployment, parse_duration
from modelherd.registry import ModelVersionInfo, VersionNotFound
from modelherd.rollout import TRIGGERS, Clock, Decision, _Advance, _dep, _text, version_json
from modelherd.store import Store
from modelherd.store.rollouts import DECOMMISSION, NewRollout, RolloutEventRecord, RolloutRecord
from modelherd.targets import Health, Readiness, TargetError

#: The one step of a decommission: no traffic is left.
STEPS = [0]


def start_decommission(store: Store, *, repo: str, dep: Deployment, current: ModelVersionInfo | None,
                       trigger: str, actor: str | None, pr: int | None = None, sha: str | None = None,
                       after_id: int | None = None, target: str = "kubernetes", reason: str | None = None,
                       key: str | None = None, clock: Clock) -> int:
    """Record a pending decommission of ``dep`` (the base side of a deleted manifest); its id.

    ``current`` is what serves there now (the base manifest's version); when the registry does not know
    it, the version of the last successful rollout of the key is used.  ``key``: the idempotency key, as
    for :func:`~modelherd.rollout.start_rollout`.  Enqueue the id to run it.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}; one of {', '.join(TRIGGERS)}")
    serving = current.version if current is not None else None
    candidate = version_json(current)
    if serving is None:
        last = store.last_succeeded_rollout(repo, dep.name, dep.environment)
        if last is not None:
            serving, candidate = last.to_version, last.candidate
    new = NewRollout(
        repo=repo, model=dep.name, environment=dep.environment, target=target, cluster=dep.cluster,
        from_version=serving, to_version=serving or "", spec=dep.model_dump(mode="json"),
        candidate=candidate or {}, stable=None, trigger=trigger, actor=actor, pr_number=pr, sha=sha,
        steps=list(STEPS), verify_seconds=0, step_timeout_seconds=parse_duration(dep.rollout.timeout),
        after_id=after_id, reason=reason or "its manifest was deleted", action=DECOMMISSION,
        notes=[f"decommission: remove {dep.name} from {dep.cluster} namespace {dep.namespace}"],
        idempotency_key=key)
    return store.create_rollout(new, now=clock()).id


def where(record: RolloutRecord) -> str:
    """``cluster onprem-a namespace risk`` for a decommission record."""
    namespace = (record.spec or {}).get("namespace")
    return f"cluster {record.cluster}" + (f" namespace {namespace}" if namespace else "")


def was(record: RolloutRecord) -> str:
    """`` (was v3)``, or nothing when the removed version is not known."""
    return f" (was v{record.from_version})" if record.from_version else ""


class DecommissionAdvance(_Advance):
    """One advance of a leased decommission (the engine picks it for ``action = "decommission"``)."""

    def start_message(self, r: RolloutRecord) -> str:
        return f"started: decommission of {r.model} from {r.environment} ({where(r)})"

    # -- applying: the remove --------------------------------------------------------------------
    def apply_step(self, r: RolloutRecord) -> Decision:
        if self.timed_out(r):
            return self.fail(r, f"could not remove {r.model} from {where(r)} within {r.step_timeout_seconds}s: "
                                f"{r.error or 'the target refused it'}")
        intent = self.record(self.store.rollout_intent(
            r.id, self.holder, action="remove", now=self.clock(), step=0, version=r.from_version, percent=0,
            message=f"remove {r.model} from {r.environment} ({where(r)}){was(r)}")).event
        return self.remove_for_good(r, intent, again=False)

    def remove_for_good(self, r: RolloutRecord, intent: RolloutEventRecord, *, again: bool) -> Decision:
        """The side effect of the ``remove`` intent, and its outcome."""
        try:
            self.target(r).remove(_dep(r))
        except TargetError as exc:
            retry = self.retry_in(r)
            return self.done(self.store.rollout_outcome(
                r.id, self.holder, intent, ok=False, release=True, now=self.clock(), message=f"target error: {exc}",
                changes={"error": str(exc), "next_check_at": self.clock() + timedelta(seconds=retry)}), retry)
        except Exception as exc:
            return self.fail(r, f"remove failed: {_text(exc)}", intent=intent)
        message = "removed again after a restart: the earlier attempt's outcome is unknown" if again else "removed"
        return self.done(self.store.rollout_outcome(
            r.id, self.holder, intent, ok=True, release=True, now=self.clock(), message=message,
            detail={"again": again},
            changes={"state": "verifying", "ready_at": None, "error": None, "next_check_at": self.clock()}), 0.0)

    # -- verifying: gone? --------------------------------------------------------------------------
    def verify_step(self, r: RolloutRecord) -> Decision:
        health = self.absence(r)
        if health.state is Readiness.FAILED:
            return self.fail(r, f"removal failed: {health.message or 'target reports failed'}")
        if health.state is Readiness.PROGRESSING:
            return self.progressing(r, "removal", health)
        now = self.clock()
        self.record(self.store.rollout_transition(
            r.id, self.holder, now=now, kind="outcome", action="verify", ok=True, step=0,
            message=f"removal verified: {health.message or 'absent'}", changes={"ready_at": now}))
        return self.mark_removed(r)

    def absence(self, r: RolloutRecord) -> Health:
        """The target's ``absent``; an unreachable target counts as progressing (the timeout bounds it)."""
        try:
            return self.target(r).absent(_dep(r))
        except TargetError as exc:
            return Health(Readiness.PROGRESSING, f"target unreachable: {exc}")

    # -- the registry forgets ----------------------------------------------------------------------
    def mark_removed(self, r: RolloutRecord) -> Decision:
        """Delete the registry alias ``<environment>`` (if it still names the removed version) → succeeded."""
        detail = {"alias": r.environment, "version": r.from_version}
        intent = self.record(self.store.rollout_intent(
            r.id, self.holder, action="mark-removed", now=self.clock(), version=r.from_version,
            message=f"registry: delete alias {r.environment}", detail=detail)).event
        return self.mark_removed_effect(r, intent)

    def mark_removed_effect(self, r: RolloutRecord, intent: RolloutEventRecord) -> Decision:
        d = intent.detail
        model = _dep(r).model.name
        kept: list[str] = []

        def write(reg: Any) -> None:
            if not hasattr(reg, "delete_alias"):
                kept.append("the registry cannot delete aliases")
                return
            try:
                now = reg.resolve(model, alias=d["alias"])
            except VersionNotFound:
                return                                   # already gone
            if d.get("version") is not None and str(now.version) != str(d["version"]):
                kept.append(f"alias {d['alias']} -> v{now.version} kept (not the removed version)")
                return
            reg.delete_alias(model, d["alias"])

        ok, message = self.registry_write(r, write)
        if ok and kept:
            message = f"registry: {kept[0]}"
        return self.finish(r, "succeeded", f"decommissioned: removed from {where(r)}", intent=intent, ok=ok,
                           outcome_message=message)

    # -- failure: final, nothing re-created --------------------------------------------------------
    def fail(self, r: RolloutRecord, error: str, *, intent: RolloutEventRecord | None = None) -> Decision:
        return self.finish(r, "failed", error, intent=intent, ok=False)

    def roll_back(self, r: RolloutRecord) -> Decision:  # pragma: no cover - a decommission never rolls back
        return self.finish(r, "failed", r.error or "decommission failed")

    # -- crash recovery ----------------------------------------------------------------------------
    def recover(self, r: RolloutRecord) -> Decision:
        intent = self.store.get_rollout_event(r.open_intent)
        if intent.action == "remove":
            health = self.absence(r)
            if health.state is Readiness.READY:
                return self.confirmed(r, intent, health, {"state": "verifying", "ready_at": None, "error": None,
                                                          "next_check_at": self.clock()})
            return self.remove_for_good(r, intent, again=True)
        return self.mark_removed_effect(r, intent)


__all__ = ["STEPS", "DecommissionAdvance", "start_decommission", "was", "where"]
