"""The durable rollout engine: a state machine in the store, advanced one step per queue job.

A rollout moves one model version into one environment through a :class:`~modelherd.targets.Target`::

                 +--> superseded (a newer rollout of the same model/environment was queued behind it)
                 +--> cancelled  (/rollback, or the promotion-order predecessor did not succeed)
                 |
    pending --(no other rollout of the key ahead, `after_id` succeeded)--+
                                                                         v
          +-------------------------------------------------> applying(k) --apply step k--+
          |                                                       ^   (TargetError: retried   |
          |                                                       |    until the step timeout) |
          |                                                       |                           v
          |                 +----------- next step k+1 -----------+---------------------- verifying(k)
          |                 |                                       READY, verify period over,  |  |
          |                 |                                       metric gates pass           |  |
          |     last step verified: registry alias <env> + tag  --> succeeded                   |  |
          |                                                                                     |  |
          |      FAILED, step timeout, gates fail, apply error                                  |  |
          |      +------------------------------------------------------------------------------+  |
          |      v                                                                                 |
          |   failed --(auto: trigger is not `rollback`)--> rolling_back --restore from-version     |
          |   (final when the rollback itself fails,         at 100% and wait READY, or remove a    |
          |    or for trigger=rollback)                      create; tag candidate rejected-->  rolled_back
          +-- (rollback_to: trigger=rollback, one step at 100%, the versions in play swapped)

**One call of** :func:`advance` **does one thing**: it takes a lease on the rollout row (two workers
never advance the same rollout), reads the persisted state and either applies one step, or checks
health once (and, when that check completes the rollout, records what is live in the registry), or
moves a pending rollout forward.  It returns :class:`Decision` with ``next_check_in``: the job
function (:meth:`RolloutWorker.run_rollout_job`) re-enqueues the rollout with that delay, so a canary
step's verification period holds no worker.

**Intent, then outcome.**  Every side effect (``apply``, ``remove``, ``mark-live``,
``mark-rejected``) is logged in ``rollout_events`` as an *intent* before it happens and as an
*outcome* after it, and the outcome commits in the same transaction as the state change.  A worker
killed between the two leaves the intent *open* on the row; the next :func:`advance` resolves it before
doing anything else:

- ``apply`` (a step, or the restore of the previous version): the target is asked for the step's health
  first.  READY or FAILED is the target reporting on that very step, which proves the earlier apply
  took effect: the outcome is recorded *confirmed after restart*, the step is **not applied again**, and
  the next check judges it as usual.  PROGRESSING leaves the earlier attempt's outcome unknown (it may
  not have reached the target, or it did and is still starting): the apply is **sent again**, and the
  outcome says so.  That repeat is safe because targets apply idempotently
  (server-side apply of the same body, setting an alias to the same version), and it is the only way an
  apply can reach a target twice; a completed step (outcome recorded) is never re-run.
- ``remove``: confirmed without a second call when the target shows nothing live, else repeated.
- ``mark-live`` and ``mark-rejected`` are repeated with the values the intent recorded (idempotent
  registry writes: set alias, set tag to the recorded time and reason).

**Verification** of a step: the target's health READY for the step, held for ``verify_for``, then the
manifest's metric gates when a :class:`MetricSource` is configured; without a source the verification
is readiness only, and the step's record says so.  A step that is not READY within its ``timeout``
(counted from the start of the step, the verify period excluded) fails.

**Queueing.**  One active rollout per (repo, model, environment): a new one waits (``pending``,
``waits_for``) until everything created before it for the same key is final; when it could start but a
newer rollout of the key is already queued, it is ``superseded`` (the newer desired state wins; a
``rollback`` is never superseded).  Promotion order: a rollout with ``after_id`` starts only after that
rollout succeeded, and is cancelled when it ended otherwise.  Waiters are woken (``Decision.wake``) when
what they wait for finishes.

**The registry learns what is live**: on success, alias ``<environment>`` → the version and the version
tag ``modelherd.deployed.<environment>=<iso time>``; on an automatic rollback, the bad version gets
``modelherd.rejected=<reason>`` (the ``rejected-version`` policy refuses it until the tag is cleared), and
a successful ``/rollback`` tags the version it replaced the same way.

**Decommissions** (``action = "decommission"``: a merged pull request deleted the manifest) go through
the same queue, leases and intent/outcome log, with ``remove`` as the side effect and the target's
``absent`` as readiness; see :mod:`modelherd.decommission`.

The engine knows nothing of forges: progress goes out through ``notify(record, event)``.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from modelherd.manifest import Deployment, GateMode, Goal, Runtime, parse_duration
from modelherd.metrics_source import Inconclusive, Measurement, MetricSourceError
from modelherd.registry import ModelVersionInfo
from modelherd.store import Store
from modelherd.store.rollouts import LeaseLost, NewRollout, RolloutEventRecord, RolloutRecord, Written
from modelherd.targets import Health, Readiness, Target, TargetError

log = logging.getLogger(__name__)

TRIGGERS = ("merge", "deploy-command", "rollback", "self-heal")
#: Targets without a traffic split: a canary runs as one 100% step (with a note in the record).
SINGLE_STEP_TARGETS = frozenset({"mlflow-alias"})
REJECTED_TAG = "modelherd.rejected"
DEPLOYED_TAG = "modelherd.deployed.{environment}"

DEFAULT_LEASE_SECONDS = 120.0   # one advance does one short thing; a killed worker's lease frees after this
POLL_SECONDS = 5.0              # health poll while a step progresses
RETRY_SECONDS = 10.0            # after a TargetError on apply
WAIT_SECONDS = 30.0             # a pending rollout re-checks what it waits for (it is also woken)
EARLY_TOLERANCE = 1.0           # a job more than this early is a duplicate: the scheduled one will come
INCONCLUSIVE_RETRY_SECONDS = 60.0   # an allowed inconclusive measurement: measure again after this

TargetFactory = Callable[[str, str], Target]
Notify = Callable[[RolloutRecord, RolloutEventRecord], Any]
Clock = Callable[[], datetime]


class MetricSource(Protocol):
    """Live metrics of a serving version (Prometheus, a model monitor…), for the manifest's gates."""

    def measure(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None,
                window_seconds: int) -> Mapping[str, Measurement]:
        """The latest values of the metrics it knows for ``version`` over the last ``window_seconds``:
        a number, or :class:`~modelherd.metrics_source.Inconclusive` (NaN counts as inconclusive too)."""
        ...


@dataclass(frozen=True)
class Decision:
    """What one :func:`advance` call concluded.

    ``next_check_in``: advance again after this many seconds (``0``: at once); ``None``: nothing to
    schedule (final, or another worker holds the rollout, or this was a duplicate early job).
    ``wake``: other rollouts to enqueue now (they waited for this one).
    """

    next_check_in: float | None
    state: str = ""
    wake: tuple[int, ...] = ()
    note: str = ""


# ---------------------------------------------------------------------------------------------------
# Serialisation of what a rollout carries
# ---------------------------------------------------------------------------------------------------


def version_json(info: ModelVersionInfo | None) -> dict[str, Any] | None:
    """A :class:`ModelVersionInfo` as JSON for the store."""
    return None if info is None else asdict(info)


def version_of(data: Mapping[str, Any] | None) -> ModelVersionInfo | None:
    """The :class:`ModelVersionInfo` back from :func:`version_json`."""
    if data is None:
        return None
    values = dict(data)
    values["aliases"] = tuple(values.get("aliases") or ())
    return ModelVersionInfo(**values)


def pinned(dep: Deployment, version: ModelVersionInfo) -> Deployment:
    """``dep`` with its model reference pinned to ``version`` (what a restore or /rollback applies)."""
    model = dep.model.model_copy(update={"version": int(version.version) if version.version.isdigit() else None,
                                         "alias": None if version.version.isdigit() else dep.model.alias})
    return dep.model_copy(update={"model": model})


def plan_steps(dep: Deployment, *, target: str, stable: ModelVersionInfo | None) -> tuple[list[int], list[str]]:
    """The traffic steps of a rollout and notes on why they differ from the manifest's canary.

    A canary needs a traffic split and a version to split with: on a target without a split
    (``mlflow-alias``), for ``runtime: deployment`` (a plain Deployment has none) or for a create
    (nothing serves yet) the canary runs as one 100% step.
    """
    canary = list(dep.rollout.canary or [])
    if not canary or canary == [100]:
        return [100], []
    shown = ", ".join(f"{p}%" for p in canary)
    if target in SINGLE_STEP_TARGETS:
        return [100], [f"the {target} target has no traffic split: canary [{shown}] runs as one 100% step"]
    if dep.serving.runtime is Runtime.DEPLOYMENT:
        return [100], [f"runtime: deployment has no traffic split: canary [{shown}] runs as one 100% step"]
    if stable is None:
        return [100], [f"nothing serves yet (a create): canary [{shown}] runs as one 100% step"]
    return canary, []


# ---------------------------------------------------------------------------------------------------
# Starting rollouts (plain store writes; the caller enqueues the returned id)
# ---------------------------------------------------------------------------------------------------


def start_rollout(store: Store, *, repo: str, dep: Deployment, candidate: ModelVersionInfo,
                  stable: ModelVersionInfo | None, trigger: str, actor: str | None, pr: int | None = None,
                  sha: str | None = None, after_id: int | None = None, target: str = "kubernetes",
                  reason: str | None = None, key: str | None = None, clock: Clock) -> int:
    """Record a pending rollout of ``candidate`` (replacing ``stable``, None for a create); its id.

    Steps come from ``dep.rollout`` (see :func:`plan_steps`); ``after_id`` makes it wait for that
    rollout's success (production after staging).  ``key``: the idempotency key (what started it);
    the rollout already started under it is returned instead of a new one.  Enqueue the id to run it.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}; one of {', '.join(TRIGGERS)}")
    steps, notes = plan_steps(dep, target=target, stable=stable)
    previous = (store.last_succeeded_rollout(repo, dep.name, dep.environment, stable.version)
                if stable is not None else None)
    new = NewRollout(
        repo=repo, model=dep.name, environment=dep.environment, target=target, cluster=dep.cluster,
        from_version=stable.version if stable else None, to_version=candidate.version,
        spec=dep.model_dump(mode="json"), candidate=version_json(candidate), stable=version_json(stable),
        trigger=trigger, actor=actor, pr_number=pr, sha=sha, steps=steps,
        verify_seconds=dep.rollout.verify_seconds, step_timeout_seconds=parse_duration(dep.rollout.timeout),
        after_id=after_id, stable_spec=previous.spec if previous else None, reason=reason, notes=notes,
        idempotency_key=key)
    return store.create_rollout(new, now=clock()).id


def rollback_to(store: Store, *, repo: str, dep: Deployment, version: ModelVersionInfo,
                current: ModelVersionInfo | None, actor: str | None, pr: int | None = None,
                sha: str | None = None, reason: str | None = None, target: str = "kubernetes",
                key: str | None = None, clock: Clock) -> int:
    """``/rollback``: restore ``version`` at once (one 100% step, no verify period), trigger ``rollback``.

    Unfinished rollouts of the model/environment are asked to cancel (they stop at their next advance;
    this one waits for them, and wakes them so that happens now).  ``current`` is what serves now; on
    success it is tagged ``modelherd.rejected`` with ``reason``.  ``key``: the idempotency key; when a
    rollback was already started under it, its id is returned and nothing is cancelled again.  Returns
    the id to enqueue.
    """
    if key is not None:
        started = store.rollout_by_key(repo, key)
        if started is not None:
            return started.id
    now = clock()
    who = f" by {actor}" if actor else ""
    for open_rollout in store.list_rollouts(repo=repo, model=dep.name, environment=dep.environment,
                                            states=_UNFINISHED):
        store.request_cancel(open_rollout.id, f"cancelled: /rollback to v{version.version}{who}", now=now)
    restored = store.last_succeeded_rollout(repo, dep.name, dep.environment, version.version)
    spec = restored.spec if restored else pinned(dep, version).model_dump(mode="json")
    new = NewRollout(
        repo=repo, model=dep.name, environment=dep.environment, target=target, cluster=dep.cluster,
        from_version=current.version if current else None, to_version=version.version, spec=spec,
        candidate=version_json(version), stable=version_json(current), trigger="rollback", actor=actor,
        pr_number=pr, sha=sha, steps=[100], verify_seconds=0,
        step_timeout_seconds=parse_duration(dep.rollout.timeout),
        reason=reason or f"rolled back to v{version.version}{who}",
        notes=["/rollback: one 100% step, no verify period"], idempotency_key=key)
    return store.create_rollout(new, now=now).id


def cancel_rollout(store: Store, rollout_id: int, reason: str, *, clock: Clock) -> bool:
    """Ask an unfinished rollout to stop at its next advance (enqueue it to make that now).

    A pending, applying or verifying rollout becomes ``cancelled`` without touching the target again (what
    it applied stays: the caller restores what it wants, as :func:`rollback_to` does); one already
    ``rolling_back`` finishes its rollback first."""
    return store.request_cancel(rollout_id, reason, now=clock())


_UNFINISHED = ("pending", "applying", "verifying", "rolling_back")


def active_rollouts(store: Store, repo: str, pr: int | None = None) -> list[RolloutRecord]:
    """Unfinished rollouts of ``repo`` (of one pull request when ``pr`` is given), oldest first."""
    return store.list_rollouts(repo=repo, pr_number=pr, states=_UNFINISHED, newest_first=False)


# ---------------------------------------------------------------------------------------------------
# advance
# ---------------------------------------------------------------------------------------------------


def advance(rollout_id: int, *, store: Store, targets: TargetFactory, registry: Any, clock: Clock,
            notify: Notify | None = None, metrics: MetricSource | None = None,
            lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Decision:
    """Do the next piece of work of a rollout (see the module docstring); never blocks on a wait.

    ``targets(kind, cluster)`` gives the target; ``registry`` is the registry writer (``set_alias``,
    ``set_version_tag``) or a mapping of them by the manifest's registry name.  The lease is released on
    return or on an exception; a killed process leaves it to expire after ``lease_seconds``.
    """
    holder = uuid.uuid4().hex
    record = store.lease_rollout(rollout_id, holder, ttl=lease_seconds, now=clock())
    if record is None:
        found = store.get_rollout(rollout_id)
        if found is None:
            return Decision(None, note=f"no rollout {rollout_id}")
        return Decision(None, state=found.state, note="another worker holds this rollout")
    run = _advance_class(record)(store, holder, targets, registry, clock, notify, metrics)
    try:
        decision = run.step(record)
    except LeaseLost:
        return Decision(None, state=record.state, note="lease lost to another worker")
    except Exception:
        store.release_rollout(rollout_id, holder)
        raise
    if not run.released:
        store.release_rollout(rollout_id, holder)
    return decision


def _advance_class(record: RolloutRecord) -> type[_Advance]:
    """How to advance this rollout: deploy a version, or decommission (:mod:`modelherd.decommission`)."""
    if record.decommission:
        from modelherd.decommission import DecommissionAdvance

        return DecommissionAdvance
    return _Advance


class _Advance:
    """One advance of one leased rollout; every store write is fenced by ``holder``."""

    def __init__(self, store: Store, holder: str, targets: TargetFactory, registry: Any, clock: Clock,
                 notify: Notify | None, metrics: MetricSource | None):
        self.store, self.holder, self.targets, self.registry = store, holder, targets, registry
        self.clock, self.notify, self.metrics = clock, notify, metrics
        self.wake: list[int] = []
        self.released = False   # the last write gave the lease up (saves a transaction)
        self.inconclusive_now: list[str] = []   # metrics the last gates() found inconclusive

    # -- dispatch ----------------------------------------------------------------------------------
    def step(self, r: RolloutRecord) -> Decision:
        """Resolve an open intent first; otherwise act on the state."""
        if r.final:
            return Decision(None, state=r.state, note="already final")
        if r.open_intent is not None:
            return self.recover(r)
        now = self.clock()
        if r.next_check_at is not None and r.next_check_at > now + timedelta(seconds=EARLY_TOLERANCE) \
                and not r.cancel_reason:
            return Decision(None, state=r.state, note="early: a scheduled advance is due later")
        if r.cancel_reason and r.state in ("pending", "applying", "verifying"):
            return self.finish(r, "cancelled", r.cancel_reason)
        return {"pending": self.begin, "applying": self.apply_step, "verifying": self.verify_step,
                "rolling_back": self.roll_back}[r.state](r)

    # -- pending -----------------------------------------------------------------------------------
    def begin(self, r: RolloutRecord) -> Decision:
        """Start when nothing is ahead and the promotion predecessor succeeded; else wait or give way."""
        if r.after_id is not None:
            after = self.store.get_rollout(r.after_id)
            if after is not None and after.state != "succeeded":
                if after.final:
                    return self.finish(r, "cancelled", f"promotion order: rollout #{after.id} "
                                                       f"({after.environment}) ended {after.state}")
                return self.wait(r, f"waiting for rollout #{after.id} ({after.environment}) to succeed")
        ahead = self.store.open_rollouts_before(r)
        if ahead:
            self.wake.extend(a.id for a in ahead if a.cancel_reason)
            return self.wait(r, f"queued behind rollout #{ahead[0].id} ({ahead[0].state})")
        newer = self.store.newer_pending_rollouts(r)
        if r.trigger != "rollback" and newer:
            return self.finish(r, "superseded", f"superseded by rollout #{newer[-1].id}")
        now = self.clock()
        written = self.store.start_rollout_row(
            r.id, self.holder, now=now, message=self.start_message(r), release=True,
            changes={"state": "applying", "current_step": 0, "started_at": now, "step_started_at": now,
                     "ready_at": None, "next_check_at": now})
        if written is None:
            return self.wait(r, "another rollout of this model/environment is active")
        return self.done(written, 0.0)

    def start_message(self, r: RolloutRecord) -> str:
        return f"started: {len(r.steps)} step(s) {r.steps}"

    def wait(self, r: RolloutRecord, why: str) -> Decision:
        """Stay pending; look again after :data:`WAIT_SECONDS` (or when woken)."""
        written = self.store.rollout_observation(
            r.id, self.holder, now=self.clock(), message=why, release=True,
            changes={"next_check_at": self.clock() + timedelta(seconds=WAIT_SECONDS)})
        return self.done(written, WAIT_SECONDS)

    # -- applying ----------------------------------------------------------------------------------
    def apply_step(self, r: RolloutRecord) -> Decision:
        """Apply step ``current_step`` (intent, apply, outcome), unless its time is up."""
        k, percent = r.current_step, r.steps[r.current_step]
        if self.timed_out(r):
            return self.fail(r, f"step {k + 1} ({percent}%) could not be applied within "
                                f"{r.step_timeout_seconds}s: {r.error or 'the target refused it'}")
        intent = self.record(self.store.rollout_intent(
            r.id, self.holder, action="apply", now=self.clock(), step=k, version=r.to_version, percent=percent,
            message=f"apply v{r.to_version} at {percent}% (step {k + 1} of {len(r.steps)})")).event
        return self.apply_candidate(r, intent, again=False)

    def apply_candidate(self, r: RolloutRecord, intent: RolloutEventRecord, *, again: bool) -> Decision:
        """The side effect of an ``apply`` intent for the candidate, and its outcome."""
        percent = r.steps[r.current_step]
        try:
            self.target(r).apply(_dep(r), _candidate(r), canary_percent=_canary(percent), stable=_stable(r))
        except TargetError as exc:
            retry = self.retry_in(r)
            return self.done(self.store.rollout_outcome(
                r.id, self.holder, intent, ok=False, release=True, now=self.clock(),
                message=f"target error: {exc}",
                changes={"error": str(exc), "next_check_at": self.clock() + timedelta(seconds=retry)}), retry)
        except Exception as exc:
            return self.fail(r, f"step {r.current_step + 1} ({percent}%) apply failed: {_text(exc)}", intent=intent)
        message = ("applied again after a restart: the earlier attempt's outcome is unknown "
                   "(idempotent apply)" if again else "applied")
        return self.done(self.store.rollout_outcome(
            r.id, self.holder, intent, ok=True, release=True, now=self.clock(), message=message,
            detail={"again": again},
            changes={"state": "verifying", "ready_at": None, "error": None, "next_check_at": self.clock()}), 0.0)

    # -- verifying ---------------------------------------------------------------------------------
    def verify_step(self, r: RolloutRecord) -> Decision:
        """One health check of the current step; on success the next step (or the end) follows."""
        k, percent = r.current_step, r.steps[r.current_step]
        health = self.health(r, _dep(r), _candidate(r), _canary(percent))
        if health.state is Readiness.FAILED:
            return self.fail(r, f"step {k + 1} ({percent}%) failed: {health.message or 'target reports failed'}")
        if health.state is Readiness.PROGRESSING:
            return self.progressing(r, f"step {k + 1} ({percent}%)", health)
        now = self.clock()
        ready_at = r.ready_at or now
        if r.ready_at is None:
            r = self.record(self.store.rollout_observation(
                r.id, self.holder, now=now, ok=True, step=k, message=f"step {k + 1} ({percent}%) ready",
                detail={"health": health.message}, changes={"ready_at": now})).record
        held = (now - ready_at).total_seconds()
        if held < r.verify_seconds:
            return self.later(r, r.verify_seconds - held)
        ok, verdict = self.gates(r, percent)
        if ok is None:   # inconclusive, and the manifest allows it: wait and measure again
            written = self.store.rollout_transition(
                r.id, self.holder, now=now, kind="observation", action="verify", step=k, release=True,
                message=f"step {k + 1} ({percent}%): {verdict}; measuring again in {INCONCLUSIVE_RETRY_SECONDS:.0f}s",
                detail={"inconclusive": self.inconclusive_now},
                changes={"next_check_at": now + timedelta(seconds=INCONCLUSIVE_RETRY_SECONDS)})
            return self.done(written, INCONCLUSIVE_RETRY_SECONDS)
        if not ok:
            return self.fail(r, f"step {k + 1} ({percent}%) failed its gates: {verdict}")
        self.record(self.store.rollout_transition(
            r.id, self.holder, now=now, kind="outcome", action="verify", ok=True, step=k,
            release=k + 1 < len(r.steps),
            message=f"step {k + 1} ({percent}%) verified after {r.verify_seconds}s: {verdict}",
            changes={} if k + 1 == len(r.steps) else
            {"state": "applying", "current_step": k + 1, "step_started_at": now, "ready_at": None,
             "next_check_at": now}))
        if k + 1 < len(r.steps):
            return Decision(0.0, state="applying", wake=tuple(self.wake))
        return self.mark_live(r)

    def progressing(self, r: RolloutRecord, what: str, health: Health) -> Decision:
        """Not ready yet: fail when the step's time is up, else poll again."""
        if self.timed_out(r):
            return self.fail(r, f"{what} not ready after {r.step_timeout_seconds}s: "
                                f"{health.message or 'still progressing'}")
        poll = min(POLL_SECONDS, self.remaining(r))
        written = self.store.rollout_observation(
            r.id, self.holder, now=self.clock(), step=r.current_step if r.state != "rolling_back" else None,
            release=True,
            message=f"{what}: {health.message or 'progressing'}",
            changes={"next_check_at": self.clock() + timedelta(seconds=poll)})
        return self.done(written, poll)

    def gates(self, r: RolloutRecord, percent: int) -> tuple[bool | None, str]:
        """The manifest's metric gates against live metrics, or why verification is readiness only.

        ``(True, note)``: passed; ``(False, reason)``: failed; ``(None, reason)``: inconclusive within
        the manifest's ``rollout.inconclusive_limit`` (counted over the whole rollout): measure again."""
        dep = _dep(r)
        self.inconclusive_now = []
        if not dep.gates.metrics:
            return True, "ready; readiness only (the manifest has no metric gates)"
        if self.metrics is None:
            return True, "ready; readiness only (no metric source configured)"
        window = max(r.verify_seconds, 60)
        stable = _stable(r)
        try:
            live = self.metrics.measure(dep, _candidate(r), canary_percent=_canary(percent), window_seconds=window)
            baseline = (self.metrics.measure(dep, stable, canary_percent=None, window_seconds=window)
                        if stable is not None else {})
        except MetricSourceError as exc:   # says what is wrong in words already
            return False, f"metric source failed: {exc}"
        except Exception as exc:
            return False, f"metric source failed: {_text(exc)}"
        verdict = evaluate_gates(dep, live, baseline, baseline_required=stable is not None and percent < 100)
        if verdict.failures:
            return False, "; ".join(verdict.failures)
        if verdict.inconclusive:
            allowed = dep.rollout.inconclusive_limit
            used = sum(len(e.detail.get("inconclusive") or ()) for e in self.store.rollout_events(r.id)
                       if e.action == "verify")
            self.inconclusive_now = [name for name, _ in verdict.inconclusive]
            texts = [f"canary metric {name} inconclusive ({why}) {used + i} of {allowed} allowed"
                     for i, (name, why) in enumerate(verdict.inconclusive, 1)]
            return (False if used + len(texts) > allowed else None), "; ".join(texts)
        return True, "ready; gates passed" + (f" ({'; '.join(verdict.notes)})" if verdict.notes else "")

    # -- success -----------------------------------------------------------------------------------
    def mark_live(self, r: RolloutRecord) -> Decision:
        """Last step verified: tell the registry what serves (intent, writes, outcome → succeeded)."""
        detail = {"alias": r.environment, "version": r.to_version, "at": _iso(self.clock())}
        if r.trigger == "rollback" and r.from_version and r.from_version != r.to_version:
            detail["rejected"] = {"version": r.from_version, "reason": r.reason or "rolled back"}
        intent = self.record(self.store.rollout_intent(
            r.id, self.holder, action="mark-live", now=self.clock(), version=r.to_version,
            message=f"registry: alias {r.environment} -> v{r.to_version}", detail=detail)).event
        return self.mark_live_effect(r, intent)

    def mark_live_effect(self, r: RolloutRecord, intent: RolloutEventRecord) -> Decision:
        d = intent.detail
        model = _dep(r).model.name

        def write(reg: Any) -> None:
            reg.set_alias(model, d["alias"], d["version"])
            reg.set_version_tag(model, d["version"], DEPLOYED_TAG.format(environment=r.environment), d["at"])
            if "rejected" in d:
                reg.set_version_tag(model, d["rejected"]["version"], REJECTED_TAG, d["rejected"]["reason"])

        ok, message = self.registry_write(r, write)
        return self.finish(r, "succeeded", "succeeded", intent=intent, ok=ok, outcome_message=message)

    # -- failure and rollback ----------------------------------------------------------------------
    def fail(self, r: RolloutRecord, error: str, *, intent: RolloutEventRecord | None = None) -> Decision:
        """A step failed: roll back automatically (final ``failed`` for a /rollback or a failed restore)."""
        now = self.clock()
        if r.trigger == "rollback" or r.state == "rolling_back":
            return self.finish(r, "failed", error, intent=intent, ok=False)
        changes = {"via": "failed", "state": "rolling_back", "error": error, "restored": False,
                   "step_started_at": now, "ready_at": None, "next_check_at": now}
        if intent is not None:
            written = self.store.rollout_outcome(r.id, self.holder, intent, ok=False, now=now, message=error,
                                                 changes=changes, release=True)
        else:
            written = self.store.rollout_transition(r.id, self.holder, now=now, changes=changes, ok=False,
                                                    release=True,
                                                    message=f"failed: {error}; rolling back",
                                                    step=r.current_step)
        return self.done(written, 0.0)

    def roll_back(self, r: RolloutRecord) -> Decision:
        """Restore the previous version at 100% (or remove a create), wait READY, tag the candidate."""
        stable = _stable(r)
        if not r.restored:
            if stable is None:
                intent = self.record(self.store.rollout_intent(
                    r.id, self.holder, action="remove", now=self.clock(), version=r.to_version,
                    message=f"remove {r.model} from {r.environment} (nothing served before)")).event
                return self.remove_effect(r, intent)
            if self.timed_out(r):
                return self.finish(r, "failed", f"rollback could not restore v{stable.version}: {r.error}")
            intent = self.record(self.store.rollout_intent(
                r.id, self.holder, action="apply", now=self.clock(), version=stable.version, percent=100,
                message=f"restore v{stable.version} at 100%")).event
            return self.restore_effect(r, intent, again=False)
        if stable is not None:
            health = self.health(r, _restore_dep(r), stable, None)
            if health.state is Readiness.FAILED:
                return self.finish(r, "failed", f"rollback to v{stable.version} failed: {health.message}")
            if health.state is Readiness.PROGRESSING:
                return self.progressing(r, f"restore of v{stable.version}", health)
        return self.mark_rejected(r)

    def restore_effect(self, r: RolloutRecord, intent: RolloutEventRecord, *, again: bool) -> Decision:
        stable = _stable(r)
        try:
            self.target(r).apply(_restore_dep(r), stable, canary_percent=None, stable=None)
        except TargetError as exc:
            retry = self.retry_in(r)
            return self.done(self.store.rollout_outcome(
                r.id, self.holder, intent, ok=False, release=True, now=self.clock(),
                message=f"target error: {exc}",
                changes={"error": str(exc), "next_check_at": self.clock() + timedelta(seconds=retry)}), retry)
        except Exception as exc:
            return self.finish(r, "failed", f"restore of v{stable.version} failed: {_text(exc)}", intent=intent,
                               ok=False)
        message = "applied again after a restart (idempotent apply)" if again else "applied"
        return self.done(self.store.rollout_outcome(
            r.id, self.holder, intent, ok=True, release=True, now=self.clock(), message=message,
            detail={"again": again},
            changes={"restored": True, "next_check_at": self.clock()}), 0.0)

    def remove_effect(self, r: RolloutRecord, intent: RolloutEventRecord) -> Decision:
        try:
            self.target(r).remove(_dep(r))
        except Exception as exc:
            if self.timed_out(r):
                return self.finish(r, "failed", f"could not remove the failed create: {_text(exc)}",
                                   intent=intent, ok=False)
            return self.done(self.store.rollout_outcome(
                r.id, self.holder, intent, ok=False, release=True, now=self.clock(), message=f"target error: {_text(exc)}",
                changes={"next_check_at": self.clock() + timedelta(seconds=RETRY_SECONDS)}), RETRY_SECONDS)
        return self.done(self.store.rollout_outcome(
            r.id, self.holder, intent, ok=True, release=True, now=self.clock(), message="removed",
            changes={"restored": True, "next_check_at": self.clock()}), 0.0)

    def mark_rejected(self, r: RolloutRecord) -> Decision:
        """Tag the failed version rejected (and point the alias back), then ``rolled_back``."""
        detail = {"version": r.to_version, "reason": _short(r.error or "failed rollout"),
                  "alias": r.environment, "restored": r.from_version}
        intent = self.record(self.store.rollout_intent(
            r.id, self.holder, action="mark-rejected", now=self.clock(), version=r.to_version,
            message=f"registry: tag v{r.to_version} {REJECTED_TAG}", detail=detail)).event
        return self.mark_rejected_effect(r, intent)

    def mark_rejected_effect(self, r: RolloutRecord, intent: RolloutEventRecord) -> Decision:
        d = intent.detail
        model = _dep(r).model.name

        def write(reg: Any) -> None:
            reg.set_version_tag(model, d["version"], REJECTED_TAG, d["reason"])
            if d.get("restored"):
                reg.set_alias(model, d["alias"], d["restored"])

        ok, message = self.registry_write(r, write)
        restored = f"v{r.from_version} restored" if r.from_version else "removed (it was a create)"
        return self.finish(r, "rolled_back", f"rolled back: {restored}", intent=intent, ok=ok,
                           outcome_message=message)

    # -- crash recovery ----------------------------------------------------------------------------
    def recover(self, r: RolloutRecord) -> Decision:
        """Resolve the intent a killed worker left open (see the module docstring)."""
        intent = self.store.get_rollout_event(r.open_intent)
        if intent.action == "apply" and r.state == "applying":
            health = self.health(r, _dep(r), _candidate(r), _canary(intent.percent))
            if health.state is not Readiness.PROGRESSING:
                return self.confirmed(r, intent, health, {"state": "verifying", "ready_at": None, "error": None,
                                                  "next_check_at": self.clock()})
            return self.apply_candidate(r, intent, again=True)
        if intent.action == "apply":  # the restore of the previous version
            health = self.health(r, _restore_dep(r), _stable(r), None)
            if health.state is not Readiness.PROGRESSING:
                return self.confirmed(r, intent, health, {"restored": True, "next_check_at": self.clock()})
            return self.restore_effect(r, intent, again=True)
        if intent.action == "remove":
            if self.serves_nothing(r):
                return self.confirmed(r, intent, Health(Readiness.READY, "nothing serves"),
                                      {"restored": True, "next_check_at": self.clock()})
            return self.remove_effect(r, intent)
        if intent.action == "mark-live":
            return self.mark_live_effect(r, intent)
        return self.mark_rejected_effect(r, intent)

    def serves_nothing(self, r: RolloutRecord) -> bool:
        """The target shows nothing live for the deployment (an unreachable target: unknown, so False)."""
        try:
            return self.target(r).live(_dep(r)) is None
        except TargetError:
            return False

    def confirmed(self, r: RolloutRecord, intent: RolloutEventRecord, health: Health,
                  changes: dict[str, Any]) -> Decision:
        """The open apply took effect before the crash (the target reports on that very step, READY or
        FAILED): record it without applying again; the next check judges the step as usual."""
        return self.done(self.store.rollout_outcome(
            r.id, self.holder, intent, ok=True, release=True, now=self.clock(), detail={"again": False, "confirmed": True},
            message=f"confirmed by the target after a restart ({health.state}); not applied again",
            changes=changes), 0.0)

    # -- helpers -----------------------------------------------------------------------------------
    def finish(self, r: RolloutRecord, state: str, message: str, *, intent: RolloutEventRecord | None = None,
               ok: bool | None = None, outcome_message: str | None = None) -> Decision:
        """Move to a final state; with ``intent``, its outcome commits in the same transaction."""
        now = self.clock()
        changes: dict[str, Any] = {"state": state}
        if state in ("failed", "cancelled", "superseded"):
            changes["error"] = message
        if intent is not None:
            written = self.store.rollout_outcome(r.id, self.holder, intent, ok=True if ok is None else ok, now=now,
                                                 message=outcome_message or message, detail={"result": message},
                                                 changes=changes, release=True)
        else:
            written = self.store.rollout_transition(r.id, self.holder, now=now, changes=changes, message=message,
                                                    ok=state == "succeeded", release=True)
        return self.done(written, None)

    def done(self, written: Written, next_check_in: float | None) -> Decision:
        """Report ``written`` and build the decision."""
        self.record(written)
        self.wake.extend(written.wake)
        return Decision(next_check_in, state=written.record.state, wake=tuple(dict.fromkeys(self.wake)))

    def later(self, r: RolloutRecord, seconds: float) -> Decision:
        """Hold the verify period: check again in ``seconds`` (no worker waits)."""
        self.store.set_rollout_check(r.id, self.holder, self.clock() + timedelta(seconds=seconds), release=True)
        self.released = True
        return Decision(seconds, state=r.state, wake=tuple(self.wake))

    def record(self, written: Written) -> Written:
        """Note whether the write released the lease; pass a newly logged event to ``notify`` (errors there
        never stop a rollout)."""
        self.released = written.record.lease_holder is None
        if self.notify is not None and written.event is not None:
            try:
                self.notify(written.record, written.event)
            except Exception:
                log.exception("rollout %s: notify failed", written.record.id)
        return written

    def target(self, r: RolloutRecord) -> Target:
        return self.targets(r.target, r.cluster)

    def health(self, r: RolloutRecord, dep: Deployment, version: ModelVersionInfo, canary: int | None) -> Health:
        """The target's health; an unreachable target counts as progressing (the timeout bounds it)."""
        try:
            return self.target(r).health(dep, version, canary_percent=canary)
        except TargetError as exc:
            return Health(Readiness.PROGRESSING, f"target unreachable: {exc}")

    def registry_write(self, r: RolloutRecord, write: Callable[[Any], None]) -> tuple[bool, str]:
        """Run registry writes; a registry that cannot write is reported, never fails the rollout."""
        reg = self.registry.get(_dep(r).model.registry) if isinstance(self.registry, Mapping) else self.registry
        if reg is None or not hasattr(reg, "set_alias") or not hasattr(reg, "set_version_tag"):
            return False, "registry not updated: no writable registry configured"
        try:
            write(reg)
        except Exception as exc:
            log.warning("rollout %s: registry update failed: %s", r.id, exc)
            return False, f"registry not updated: {_text(exc)}"
        return True, "registry updated"

    def retry_in(self, r: RolloutRecord) -> float:
        """When to try a refused apply again: soon, but not past the step's deadline."""
        return max(0.0, min(RETRY_SECONDS, self.remaining(r)))

    def timed_out(self, r: RolloutRecord) -> bool:
        return self.remaining(r) <= 0

    def remaining(self, r: RolloutRecord) -> float:
        started = r.step_started_at or r.started_at or r.created_at
        return r.step_timeout_seconds - (self.clock() - started).total_seconds()


# ---------------------------------------------------------------------------------------------------
# Gates
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateVerdict:
    """The manifest's gates on one live measurement: what failed, what is only noted, and which
    metrics said nothing (``(metric, why)``: NaN, no series)."""

    failures: list[str]
    notes: list[str]
    inconclusive: list[tuple[str, str]]


def _inconclusive(value: Measurement | None) -> str | None:
    """Why ``value`` says nothing about the version, or None when it is a number (±inf included)."""
    if isinstance(value, Inconclusive):
        return value.reason
    if isinstance(value, float) and math.isnan(value):
        return "NaN: no traffic?"
    return None


def evaluate_gates(dep: Deployment, live: Mapping[str, Measurement], baseline: Mapping[str, Measurement], *,
                   baseline_required: bool = False) -> GateVerdict:
    """The manifest's metric gates on live values; ``warn`` gates only note.

    A gated metric the source does not measure (no query for it) is noted. A measured value that is
    NaN or no series is *inconclusive* (Flagger's and Argo Rollouts' semantics), never a pass; so is the
    stable version's value for a regression bound when ``baseline_required`` (a canary step, where the
    stable version still serves traffic; at 100% it serves none, and the regression is only noted)."""
    failures: list[str] = []
    notes: list[str] = []
    inconclusive: list[tuple[str, str]] = []
    for name, gate in sorted(dep.gates.metrics.items()):
        value = live.get(name)
        if value is None:
            notes.append(f"{name}: no live value")
            continue
        why = _inconclusive(value)
        if why is not None:
            if gate.mode is GateMode.WARN:
                notes.append(f"warn: {name} inconclusive ({why})")
            else:
                inconclusive.append((name, why))
            continue
        assert isinstance(value, float | int)
        problems = []
        if gate.min is not None and value < gate.min:
            problems.append(f"{name} {value:g} < min {gate.min:g}")
        if gate.max is not None and value > gate.max:
            problems.append(f"{name} {value:g} > max {gate.max:g}")
        base = baseline.get(name)
        base_why = _inconclusive(base) or ("not finite" if isinstance(base, float) and math.isinf(base) else None)
        if gate.max_regression is not None and base_why is not None:
            if baseline_required and gate.mode is GateMode.ENFORCE:
                inconclusive.append((name, f"stable baseline: {base_why}"))
            else:
                notes.append(f"{name}: stable baseline {base_why}, regression not checked")
            base = None
        limit = gate.regression_limit(base) if isinstance(base, float | int) else None
        if limit is not None:
            worse = (base - value) if gate.direction is Goal.MAXIMIZE else (value - base)
            if worse > limit:
                problems.append(f"{name} {value:g} is {worse:g} worse than the stable {base:g} (limit {limit:g})")
        if problems and gate.mode is GateMode.WARN:
            notes.extend(f"warn: {p}" for p in problems)
        else:
            failures.extend(problems)
    return GateVerdict(failures, notes, inconclusive)


# ---------------------------------------------------------------------------------------------------
# The job function and the sweep
# ---------------------------------------------------------------------------------------------------


@dataclass
class RolloutWorker:
    """Binds :func:`advance` to a :class:`~modelherd.queue.JobQueue` as the rollout job (and sweep)."""

    store: Store
    queue: Any
    targets: TargetFactory
    registry: Any
    clock: Clock
    notify: Notify | None = None
    metrics: MetricSource | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    sweep_grace_seconds: float = 60.0
    error_retry_seconds: float = 30.0
    advanced: int = field(default=0, init=False)

    def bind(self) -> RolloutWorker:
        """Make :meth:`run_rollout_job` the queue's rollout job and :meth:`sweep` part of its sweep."""
        self.queue.bind_rollouts(self.run_rollout_job, self.sweep)
        return self

    def now(self) -> datetime:
        return self.clock()

    def run_rollout_job(self, rollout_id: int) -> Decision:
        """Advance once, enqueue whom it woke, and enqueue itself again after ``next_check_in``."""
        try:
            decision = advance(rollout_id, store=self.store, targets=self.targets, registry=self.registry,
                               clock=self.now, notify=self.notify, metrics=self.metrics,
                               lease_seconds=self.lease_seconds)
        except Exception:
            log.exception("rollout %s: advance failed; retrying in %.0fs", rollout_id, self.error_retry_seconds)
            self.queue.enqueue_rollout(rollout_id, delay=self.error_retry_seconds)
            return Decision(self.error_retry_seconds, note="advance raised; retried")
        self.advanced += 1
        for other in decision.wake:
            self.queue.enqueue_rollout(other)
        if decision.next_check_in is not None:
            self.queue.enqueue_rollout(rollout_id, delay=decision.next_check_in)
        return decision

    def sweep(self) -> list[int]:
        """Enqueue unfinished rollouts whose check is overdue and whose lease is free (crash recovery)."""
        ids = sweep_due(self.store, now=self.now(), grace=self.sweep_grace_seconds)
        for rollout_id in ids:
            self.queue.enqueue_rollout(rollout_id)
        if ids:
            log.warning("re-enqueued %d overdue rollout(s): %s", len(ids), ids[:20])
        return ids

    def start(self, **kwargs: Any) -> int:
        """:func:`start_rollout` and enqueue it."""
        rollout_id = start_rollout(self.store, clock=self.now, **kwargs)
        self.queue.enqueue_rollout(rollout_id)
        return rollout_id

    def rollback(self, **kwargs: Any) -> int:
        """:func:`rollback_to` and enqueue it (it wakes the rollouts it cancels)."""
        rollout_id = rollback_to(self.store, clock=self.now, **kwargs)
        self.queue.enqueue_rollout(rollout_id)
        return rollout_id


def sweep_due(store: Store, *, now: datetime, grace: float = 60.0) -> list[int]:
    """Unfinished rollouts overdue by ``grace`` seconds with no live lease (their job was lost)."""
    return store.due_rollouts(now=now, grace=grace)


# ---------------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryStep:
    """One traffic step of a rollout and when it got where."""

    step: int                       # 1-based
    percent: int
    version: str
    started_at: datetime | None
    applied_at: datetime | None
    ready_at: datetime | None
    verified_at: datetime | None
    outcome: str                    # verified | failed | cancelled | in progress | not reached

    @property
    def seconds(self) -> float | None:
        end = self.verified_at or self.ready_at or self.applied_at
        return (end - self.started_at).total_seconds() if end and self.started_at else None


@dataclass(frozen=True)
class HistoryRollback:
    """The automatic rollback of a failed rollout: restore ``version`` at 100%, or remove a create."""

    action: str                     # restore | remove
    version: str | None
    started_at: datetime | None
    done_at: datetime | None
    outcome: str                    # restored | removed | failed | in progress


@dataclass(frozen=True)
class HistoryRecord:
    """One deployment or rollback as ``modelherd history`` shows it."""

    id: int
    repo: str
    model: str
    environment: str
    target: str
    cluster: str
    trigger: str
    actor: str | None
    pr_number: int | None
    sha: str | None
    from_version: str | None
    to_version: str
    outcome: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    reason: str | None
    notes: tuple[str, ...]
    steps: tuple[HistoryStep, ...]
    rollback: HistoryRollback | None = None
    action: str = "deploy"          # deploy | decommission (the model was removed from the environment)

    @property
    def duration_seconds(self) -> float | None:
        start = self.started_at or self.requested_at
        return (self.finished_at - start).total_seconds() if self.finished_at else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601)."""
        data = asdict(self)
        data["duration_seconds"] = self.duration_seconds
        for step, raw in zip(self.steps, data["steps"]):
            raw["seconds"] = step.seconds
        return _iso_all(data)


def history(store: Store, repo: str | None = None, model: str | None = None, environment: str | None = None,
            limit: int = 50) -> list[HistoryRecord]:
    """Rollouts (deployments and rollbacks), newest first, with their steps' timings from the log."""
    rollouts = store.list_rollouts(repo=repo, model=model, environment=environment, limit=limit)
    logs = store.events_of_rollouts([r.id for r in rollouts])
    return [history_record(r, logs[r.id]) for r in rollouts]


def history_record(r: RolloutRecord, log_: list[RolloutEventRecord]) -> HistoryRecord:
    """A rollout row and its log, as a :class:`HistoryRecord`."""
    return HistoryRecord(
        id=r.id, repo=r.repo, model=r.model, environment=r.environment, target=r.target, cluster=r.cluster,
        trigger=r.trigger, actor=r.actor, pr_number=r.pr_number, sha=r.sha, from_version=r.from_version,
        to_version=r.to_version, outcome=r.state, requested_at=r.created_at, started_at=r.started_at,
        finished_at=r.finished_at, error=r.error, reason=r.reason, notes=tuple(r.notes),
        steps=tuple(_history_steps(r, log_)), rollback=_history_rollback(r, log_), action=r.action)


def _history_steps(r: RolloutRecord, log_: list[RolloutEventRecord]) -> list[HistoryStep]:
    failed_step = next((t["step"] for t in r.transitions if t["state"] == "failed"), None)
    if failed_step is None and r.state == "failed" and r.trigger == "rollback":
        failed_step = r.current_step
    entered = {t["step"]: t["at"] for t in r.transitions if t["state"] == "applying"}
    steps = []
    for k, percent in enumerate(r.steps):
        mine = [e for e in log_ if e.step == k]
        applied = _first_at(mine, lambda e: e.kind == "outcome" and e.action in ("apply", "remove") and bool(e.ok))
        ready = _first_at(mine, lambda e: e.kind == "observation" and e.ok is True)
        verified = _first_at(mine, lambda e: e.kind == "outcome" and e.action == "verify")
        started = datetime.fromisoformat(entered[k]) if k in entered else None
        if verified:
            outcome = "verified"
        elif k == failed_step:
            outcome = "failed"
        elif started is None:
            outcome = "not reached"
        else:
            outcome = "cancelled" if r.state in ("cancelled", "superseded") else "in progress"
        steps.append(HistoryStep(k + 1, percent, r.to_version, started, applied, ready, verified, outcome))
    return steps


def _first_at(events: list[RolloutEventRecord], match: Callable[[RolloutEventRecord], bool]) -> datetime | None:
    return next((e.at for e in events if match(e)), None)


def _history_rollback(r: RolloutRecord, log_: list[RolloutEventRecord]) -> HistoryRollback | None:
    began = next((datetime.fromisoformat(t["at"]) for t in r.transitions if t["state"] == "rolling_back"), None)
    if began is None:
        return None
    action = "remove" if r.from_version is None else "restore"
    done = next((e.at for e in log_ if e.kind == "outcome" and e.ok and
                 ((e.action == "apply" and e.step is None) or e.action == "remove")), None)
    if r.state == "rolled_back":
        outcome = "removed" if action == "remove" else "restored"
    else:
        outcome = "failed" if r.final else "in progress"
    return HistoryRollback(action, r.from_version, began, done, outcome)


def _iso_all(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _iso_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_iso_all(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------------------------------


def _dep(r: RolloutRecord) -> Deployment:
    """The rollout's deployment, carrying its repository (rendered as an annotation, see render.py)."""
    return Deployment.model_validate({**r.spec, "repository": r.repo})


def _restore_dep(r: RolloutRecord) -> Deployment:
    """What the restore applies: the spec that last served the stable version, else the candidate's spec
    pinned to it."""
    if r.stable_spec is not None:
        return Deployment.model_validate({**r.stable_spec, "repository": r.repo})
    return pinned(_dep(r), _stable(r))


def _candidate(r: RolloutRecord) -> ModelVersionInfo:
    return version_of(r.candidate)


def _stable(r: RolloutRecord) -> ModelVersionInfo | None:
    return version_of(r.stable)


def _canary(percent: int | None) -> int | None:
    """A step's ``canary_percent`` for the target: ``None`` at 100% (fully rolled out)."""
    return None if percent is None or percent >= 100 else percent


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _short(text: str, limit: int = 250) -> str:
    """Registry tag values are bounded (MLflow: 5000 chars); keep reasons readable."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["DEPLOYED_TAG", "REJECTED_TAG", "SINGLE_STEP_TARGETS", "TRIGGERS", "Decision", "HistoryRecord",
           "HistoryRollback", "HistoryStep", "MetricSource", "RolloutWorker", "active_rollouts", "advance",
           "GateVerdict", "cancel_rollout", "evaluate_gates", "history", "history_record", "pinned", "plan_steps", "rollback_to",
           "start_rollout", "sweep_due", "version_json", "version_of"]
