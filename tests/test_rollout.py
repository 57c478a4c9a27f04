"""The rollout engine on SQLite and PostgreSQL: steps, verification, rollback, crashes, queueing, history.

The target and the registry are fakes that count what reaches them; the clock is settable, so step
timeouts and verify periods cost no real time; crashes are injected (see :mod:`tests.rollout_rig`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from modelherd.clock import rfc3339
from modelherd.history_cli import command as history_command
from modelherd.manifest import Runtime, Serving
from modelherd.metrics_source import Inconclusive
from modelherd.queue import JobQueue
from modelherd.rollout import (
    DEPLOYED_TAG,
    REJECTED_TAG,
    RolloutWorker,
    active_rollouts,
    cancel_rollout,
    evaluate_gates,
    history,
    plan_steps,
    rollback_to,
    start_rollout,
    sweep_due,
)
from modelherd.store import Store
from modelherd.targets import Health, Readiness

from tests.clock import FIXED
from tests.rollout_rig import (
    LEASE,
    REPO,
    Crash,
    FakeRegistry,
    FakeTarget,
    Rig,
    deployment,
    outcomes,
    version,
)

# -- planning ------------------------------------------------------------------------------------------


def test_steps_from_the_manifest() -> None:
    canary = deployment(canary=[10, 50, 100])
    assert plan_steps(deployment(), target="kubernetes", stable=version(1)) == ([100], [])
    assert plan_steps(canary, target="kubernetes", stable=version(1)) == ([10, 50, 100], [])
    steps, notes = plan_steps(canary, target="mlflow-alias", stable=version(1))
    assert steps == [100] and "no traffic split" in notes[0]
    steps, notes = plan_steps(canary, target="kubernetes", stable=None)
    assert steps == [100] and "a create" in notes[0]


def test_a_canary_of_a_plain_deployment_runs_as_one_step() -> None:
    """A plain Deployment has no traffic split: its canary (which protected environments require)
    runs as one 100% step with a note, instead of failing to render at step 1."""
    canary = deployment(canary=[20, 100])
    plain = canary.model_copy(update={"serving": Serving(runtime=Runtime.DEPLOYMENT, image="ghcr.io/acme/m:1")})
    steps, notes = plan_steps(plain, target="kubernetes", stable=version(1))
    assert steps == [100] and notes == ["runtime: deployment has no traffic split: canary [20%, 100%] runs as "
                                        "one 100% step"]


def test_unknown_trigger_is_refused(rig: Rig) -> None:
    with pytest.raises(ValueError, match="unknown trigger"):
        rig.start(trigger="cron")


# -- the happy paths -----------------------------------------------------------------------------------


def test_direct_rollout_succeeds_and_the_registry_learns_it(rig: Rig) -> None:
    rid = rig.start(frm=None, to=1)
    record = rig.drive(rid)
    assert record.state == "succeeded" and record.error is None
    assert rig.target.applies == {("1", 100): 1}
    assert rig.registry.aliases[("churn-model", "staging")] == "1"
    assert rig.registry.tags[("churn-model", "1")][DEPLOYED_TAG.format(environment="staging")] == rfc3339(FIXED)
    assert [t["state"] for t in record.transitions] == ["pending", "applying", "verifying", "succeeded"]
    assert record.started_at and record.finished_at and record.next_check_at is None
    verify = outcomes(rig.store, rid, "verify")[0]
    assert "readiness only (the manifest has no metric gates)" in verify.message
    assert ("intent", "apply") in {(k, a) for _, k, a in rig.events}  # notify saw the log


def test_three_step_canary_with_zero_verification(rig: Rig, store: Store) -> None:
    rid = rig.start(deployment(canary=[10, 50, 100]))
    started = time.perf_counter()
    record = rig.drive(rid)
    elapsed = time.perf_counter() - started
    print(f"\n[figure] 3-step canary, zero verification, {store.backend}: {elapsed * 1000:.1f} ms on the engine "
          f"({len(store.rollout_events(rid))} log events)")
    assert record.state == "succeeded"
    assert rig.target.applies == {("2", 10): 1, ("2", 50): 1, ("2", 100): 1}
    steps = [(t["state"], t["step"]) for t in record.transitions]
    assert steps == [("pending", None), ("applying", 0), ("verifying", 0), ("applying", 1), ("verifying", 1),
                     ("applying", 2), ("verifying", 2), ("succeeded", None)]
    intents = [e for e in store.rollout_events(rid) if e.kind == "intent"]
    assert [(e.action, e.percent) for e in intents] == [("apply", 10), ("apply", 50), ("apply", 100),
                                                        ("mark-live", None)]
    assert all(any(o.intent_id == i.id for o in store.rollout_events(rid)) for i in intents)


def test_verify_period_is_held_without_a_worker(store: Store, job_queue: JobQueue) -> None:
    rig = Rig(store)
    worker = RolloutWorker(store, job_queue, lambda kind, cluster: rig.target, rig.registry, clock=rig.clock).bind()
    rid = rig.start(deployment(canary=[25, 100], verify="10m"))
    job_queue.enqueue_rollout(rid)
    job_queue.drain()
    record = store.get_rollout(rid)
    assert (record.state, record.current_step) == ("verifying", 0) and record.ready_at is not None
    assert job_queue.pending_count() == 0 and job_queue.scheduled_count() == 1  # a delayed job, no thread
    assert record.next_check_at == rig.clock.now + timedelta(minutes=10)
    assert worker.run_rollout_job(rid).note.startswith("early")  # a duplicate job does nothing
    rig.clock.advance(600)
    assert worker.run_rollout_job(rid).state == "applying"


# -- failures and rollback -----------------------------------------------------------------------------


def test_canary_step_failing_rolls_back_and_rejects_the_version(rig: Rig, store: Store) -> None:
    rig.target.fail.add(("2", 50))
    rid = rig.start(deployment(canary=[10, 50, 100]))
    record = rig.drive(rid)
    assert record.state == "rolled_back"
    assert "step 2 (50%) failed: v2 failed to load" in record.error
    assert rig.target.applies == {("2", 10): 1, ("2", 50): 1, ("1", 100): 1}
    assert rig.target.serving[("churn", "staging")] == ("1", 100)
    assert rig.registry.tags[("churn-model", "2")][REJECTED_TAG].startswith("step 2 (50%) failed")
    assert rig.registry.aliases[("churn-model", "staging")] == "1"
    states = [t["state"] for t in record.transitions]
    assert states[-3:] == ["failed", "rolling_back", "rolled_back"]


def test_failed_create_is_removed(rig: Rig) -> None:
    rig.target.fail.add(("1", 100))
    rid = rig.start(frm=None, to=1)
    record = rig.drive(rid)
    assert record.state == "rolled_back" and rig.target.removes == 1
    assert ("churn", "staging") not in rig.target.serving
    assert REJECTED_TAG in rig.registry.tags[("churn-model", "1")]
    assert ("churn-model", "staging") not in rig.registry.aliases


def test_step_timeout_fails_and_rolls_back(rig: Rig) -> None:
    rig.target.hang.add(("2", 100))
    rid = rig.start(deployment(timeout="2m"))
    record = rig.drive(rid)
    assert record.state == "rolled_back"
    assert "not ready after 120s: pods pending" in record.error
    assert rig.target.applies == {("2", 100): 1, ("1", 100): 1}
    observed = [e.message for e in rig.store.rollout_events(rid) if e.kind == "observation"]
    assert observed.count("step 1 (100%): pods pending") == 1  # repeated polls log once


def test_refused_apply_is_retried_until_it_goes_through(rig: Rig) -> None:
    rig.target.refuse = 2
    record = rig.drive(rig.start())
    assert record.state == "succeeded" and rig.target.applies == {("2", 100): 1}
    failed = [e for e in outcomes(rig.store, record.id, "apply") if not e.ok]
    assert [e.message for e in failed] == ["target error: connection refused"] * 2


def test_failed_restore_ends_failed(rig: Rig) -> None:
    rig.target.fail.update({("2", 100), ("1", 100)})
    record = rig.drive(rig.start())
    assert record.state == "failed" and "rollback to v1 failed" in record.error


def test_live_gates_treat_nan_and_no_data_as_inconclusive() -> None:
    nan = float("nan")
    dep = deployment(gates={"latency": {"max": 40, "max_regression": "10%"},
                            "errors": {"max": 0.01, "mode": "warn"}, "auc": {"min": 0.9}})
    verdict = evaluate_gates(dep, {"latency": nan, "errors": Inconclusive("no data: the query matched no series"),
                                   "auc": 0.95}, {"latency": 30.0}, baseline_required=True)
    assert verdict.failures == []
    assert verdict.inconclusive == [("latency", "NaN: no traffic?")]            # never a pass
    assert verdict.notes == ["warn: errors inconclusive (no data: the query matched no series)"]  # warn only notes
    # the stable version's value for a regression bound: inconclusive during a canary, noted at 100%
    live = {"latency": 33.0, "errors": 0.0, "auc": 0.95}
    assert evaluate_gates(dep, live, {"latency": nan}, baseline_required=True).inconclusive == \
        [("latency", "stable baseline: NaN: no traffic?")]
    full = evaluate_gates(dep, live, {"latency": nan}, baseline_required=False)
    assert (full.inconclusive, full.notes) == ([], ["latency: stable baseline NaN: no traffic?, regression not checked"])
    # +Inf is an answer (every request in the +Inf bucket), and it fails a max
    assert evaluate_gates(dep, {**live, "latency": float("inf")}, {"latency": 30.0}).failures == \
        ["latency inf > max 40", "latency inf is inf worse than the stable 30 (limit 3)"]


def test_metric_gates_with_a_source(store: Store) -> None:
    class Source:
        def measure(self, dep, version, *, canary_percent, window_seconds):
            return {"auc": 0.80 if version.version == "2" else 0.90}

    gates = {"auc": {"goal": "maximize", "max_regression": 0.05}}
    rig = Rig(store, metrics=Source())
    record = rig.drive(rig.start(deployment(gates=gates)))
    assert record.state == "rolled_back" and "auc 0.8 is 0.1 worse than the stable 0.9" in record.error
    rig = Rig(store)  # no source: readiness only, and the record says so
    record = rig.drive(rig.start(deployment("other", gates=gates)))
    assert record.state == "succeeded"
    assert "no metric source configured" in outcomes(store, record.id, "verify")[0].message


# -- a worker killed at every point --------------------------------------------------------------------


def crash_points(store: Store, scenario: Callable[[Rig], int]) -> list[str]:
    """Every crash point a clean run passes, in order."""
    clean = Rig(store)
    clean.drive(scenario(clean))
    return [p for p in clean.plan.seen if p.startswith(("intent:", "applied:", "removed", "registry:"))]


def canary_ok(rig: Rig, n: int = 0) -> int:
    return rig.start(deployment(f"ok-{n}", canary=[10, 50, 100]))


def canary_fails(rig: Rig, n: int = 0) -> int:
    rig.target.fail.add(("2", 50))
    return rig.start(deployment(f"bad-{n}", canary=[10, 50, 100]))


def create_fails(rig: Rig, n: int = 0) -> int:
    rig.target.fail.add(("1", 100))
    return rig.start(deployment(f"new-{n}"), frm=None, to=1)


@pytest.mark.parametrize("scenario, final, applies", [
    (canary_ok, "succeeded", {("2", 10): 1, ("2", 50): 1, ("2", 100): 1}),
    (canary_fails, "rolled_back", {("2", 10): 1, ("2", 50): 1, ("1", 100): 1}),
    (create_fails, "rolled_back", {("1", 100): 1}),
], ids=["canary-succeeds", "canary-rolls-back", "create-removed"])
def test_worker_killed_at_each_point_completes_exactly_once(store: Store, scenario, final, applies) -> None:
    points = crash_points(store, lambda r: scenario(r, 0))
    assert len(points) >= 4
    for n, point in enumerate(points, start=1):
        rig = Rig(store, at=point)
        rid = scenario(rig, n)
        record = rig.drive(rid)
        assert rig.crashes == 1, point
        assert record.state == final, point
        assert rig.target.applies == applies, f"crash at {point}: {rig.target.applies}"
        assert rig.target.removes == (1 if scenario is create_fails else 0), point
        log = store.rollout_events(rid)
        assert record.open_intent is None
        intents = [e for e in log if e.kind == "intent"]
        assert all(any(o.intent_id == i.id for o in log if o.kind == "outcome") for i in intents), point
        if point.startswith("applied:"):  # the side effect happened: the re-check confirms it, no re-apply
            assert any("confirmed by the target after a restart" in e.message for e in log), point
        if point.startswith("intent:apply"):  # not applied yet: applied once, after the restart
            assert any("applied again after a restart" in e.message for e in log), point


def test_unknown_outcome_of_a_slow_apply_is_applied_again(rig: Rig) -> None:
    """Killed after an apply the target has not finished: nothing proves it happened, so it is sent again
    (idempotent server-side apply) — the one case where a step reaches the target twice, and the log says so."""
    rig.target.slow = 3
    rig.plan.at = "applied:v2:100"
    record = rig.drive(rig.start())
    assert record.state == "succeeded"
    assert rig.target.applies == {("2", 100): 2}
    again = [e for e in outcomes(rig.store, record.id, "apply") if e.detail.get("again")]
    assert len(again) == 1 and "outcome is unknown" in again[0].message


def test_lease_keeps_a_second_worker_out(rig: Rig) -> None:
    rid = rig.start()
    assert rig.store.lease_rollout(rid, "other-worker", ttl=LEASE, now=rig.clock())
    decision = rig.advance(rid)
    assert decision.next_check_in is None and decision.note == "another worker holds this rollout"
    assert rig.store.get_rollout(rid).state == "pending"


def test_sweep_requeues_rollouts_whose_worker_died(store: Store, job_queue: JobQueue) -> None:
    rig = Rig(store, at="intent:apply:v2:100")
    worker = RolloutWorker(rig.engine_store, job_queue, lambda kind, cluster: rig.target, rig.registry,
                           clock=rig.clock, lease_seconds=LEASE).bind()
    rid = rig.start()
    assert rig.advance(rid).state == "applying"
    with pytest.raises(Crash):
        rig.advance(rid)
    assert sweep_due(store, now=rig.clock(), grace=60) == []          # lease still held
    rig.clock.advance(LEASE + 61)
    assert worker.sweep() == [rid]
    while job_queue.pending_count():
        job_queue.drain()
    assert store.get_rollout(rid).state == "succeeded"
    assert rig.target.applies == {("2", 100): 1}


# -- a real SIGKILL between the side effect and its outcome ---------------------------------------------


class FileTarget(FakeTarget):
    """A fake target whose state and apply log live in files, so they survive the worker process."""

    def __init__(self, folder: str, hang_after: str | None = None, started: Any = None):
        super().__init__()
        self.folder, self.hang_after, self.started = folder, hang_after, started

    def _serving(self) -> dict[str, list]:
        path = f"{self.folder}/serving.json"
        try:
            with open(path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {}

    def apply(self, dep, version, *, canary_percent=None, stable=None) -> None:
        percent = canary_percent or 100
        serving = self._serving()
        serving["/".join(dep.key)] = [version.version, percent]
        with open(f"{self.folder}/serving.json", "w") as fh:
            json.dump(serving, fh)
        with open(f"{self.folder}/applies.log", "a") as fh:
            fh.write(f"v{version.version}:{percent}\n")
        if self.hang_after == f"v{version.version}:{percent}":
            self.started.set()
            time.sleep(60)                                  # killed here

    def health(self, dep, version, *, canary_percent=None) -> Health:
        current = self._serving().get("/".join(dep.key))
        ready = current == [version.version, canary_percent or 100]
        return Health(Readiness.READY if ready else Readiness.PROGRESSING)


def _doomed_rollout_worker(store_url: str, queue_url: str, queue_name: str, folder: str, started: Any) -> None:
    store = Store.from_url(store_url)
    queue = JobQueue.from_url(queue_url, queue_name)
    target = FileTarget(folder, hang_after="v2:50", started=started)
    RolloutWorker(store, queue, lambda kind, cluster: target, FakeRegistry(), clock=store.now, lease_seconds=1).bind()
    while True:
        queue.drain()
        time.sleep(0.01)


def test_worker_process_killed_after_applying_finishes_in_another(store: Store, store_url: str,
                                                                   job_queue: JobQueue, queue_url: str,
                                                                   tmp_path) -> None:
    import multiprocessing
    import os
    import signal

    rid = start_rollout(store, repo=REPO, dep=deployment(canary=[10, 50, 100]), candidate=version(2),
                        stable=version(1), trigger="merge", actor="alice", target="fake", clock=store.now)
    job_queue.enqueue_rollout(rid)
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    proc = ctx.Process(target=_doomed_rollout_worker,
                       args=(store_url, queue_url, job_queue.name, str(tmp_path), started))
    proc.start()
    try:
        assert started.wait(60), "the worker never reached step 2"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    record = store.get_rollout(rid)
    assert (record.state, record.current_step) == ("applying", 1) and record.open_intent is not None

    target = FileTarget(str(tmp_path))
    worker = RolloutWorker(store, job_queue, lambda kind, cluster: target, FakeRegistry(),
                           clock=store.now, sweep_grace_seconds=0).bind()
    job_queue.flush()                                        # whatever the dead worker had queued is gone
    time.sleep(1.1)                                          # its 1 s lease runs out
    assert worker.sweep() == [rid]
    for _ in range(100):
        if not job_queue.drain():
            break
    assert store.get_rollout(rid).state == "succeeded"
    applies = (tmp_path / "applies.log").read_text().split()
    assert sorted(applies) == ["v2:10", "v2:100", "v2:50"]   # each step reached the target once
    confirmed = [e for e in outcomes(store, rid, "apply") if e.detail.get("confirmed")]
    assert [e.percent for e in confirmed] == [50]


# -- queueing, promotion order, /rollback --------------------------------------------------------------


def test_second_rollout_of_the_same_model_waits(rig: Rig) -> None:
    first = rig.start(deployment(canary=[50, 100], verify="5m"))
    assert rig.advance(first).state == "applying"
    second = rig.start(to=3, frm=2)
    assert rig.store.get_rollout(second).waits_for == first
    decision = rig.advance(second)
    assert (decision.state, decision.next_check_in) == ("pending", 30.0)
    assert "queued behind rollout" in rig.store.rollout_events(second)[-1].message
    other_env = rig.start(deployment(env="production"))
    assert rig.advance(other_env).state == "applying"              # another environment is independent
    assert rig.drive(first).state == "succeeded"
    assert rig.store.get_rollout(second).next_check_at == rig.clock()  # woken when the first finished
    assert rig.drive(second).state == "succeeded"
    assert rig.target.serving[("churn", "staging")] == ("3", 100)


def test_one_active_rollout_per_key_is_enforced_by_the_store(rig: Rig) -> None:
    first, second = rig.start(), rig.start(to=3, frm=2)
    for rid in (first, second):
        assert rig.store.lease_rollout(rid, f"h{rid}", ttl=LEASE, now=rig.clock())
    now = rig.clock()
    changes = {"state": "applying", "current_step": 0, "started_at": now, "step_started_at": now}
    assert rig.store.start_rollout_row(first, f"h{first}", now=now, changes=changes, message="go")
    assert rig.store.start_rollout_row(second, f"h{second}", now=now, changes=changes, message="go") is None


def test_queued_rollout_is_superseded_by_a_newer_one(rig: Rig) -> None:
    first = rig.start(deployment(verify="1m"))
    assert rig.advance(first).state == "applying"
    middle, last = rig.start(to=3, frm=2), rig.start(to=4, frm=2)
    rig.drive(first)
    assert rig.drive(middle).state == "superseded"
    assert rig.drive(last).state == "succeeded"
    assert ("3", 100) not in rig.target.applies


def test_production_waits_for_staging(rig: Rig) -> None:
    staging = rig.start(deployment(env="staging"))
    production = rig.start(deployment(env="production"), after_id=staging)
    decision = rig.advance(production)
    assert decision.state == "pending" and "waiting for rollout" in rig.store.rollout_events(production)[-1].message
    assert rig.drive(staging).state == "succeeded"
    assert rig.drive(production).state == "succeeded"
    assert rig.store.get_rollout(production).started_at >= rig.store.get_rollout(staging).finished_at

    rig.target.fail.add(("3", 100))
    staging = rig.start(deployment(env="staging"), to=3, frm=2)
    production = rig.start(deployment(env="production"), to=3, frm=2, after_id=staging)
    assert rig.drive(staging).state == "rolled_back"
    record = rig.drive(production)
    assert record.state == "cancelled" and "ended rolled_back" in record.error
    assert ("3", 100) in rig.target.applies and rig.target.serving[("churn", "production")] == ("2", 100)


def test_rollback_to_cancels_the_active_rollout_and_restores(rig: Rig) -> None:
    active = rig.start(deployment(canary=[10, 100], verify="30m"))
    for _ in range(3):
        rig.advance(active)                                         # applying → verifying step 1 (held 30m)
    assert rig.store.get_rollout(active).state == "verifying"
    assert [r.id for r in active_rollouts(rig.store, REPO, 7)] == [active]
    rid = rollback_to(rig.store, repo=REPO, dep=deployment(), version=version(1), current=version(2),
                      actor="bob", pr=7, reason="latency doubled", clock=rig.clock)
    decision = rig.advance(rid)
    assert decision.state == "pending" and decision.wake == (active,)  # it wakes the one it waits for
    assert rig.advance(active).state == "cancelled"
    record = rig.drive(rid)
    assert (record.state, record.trigger, record.steps) == ("succeeded", "rollback", [100])
    assert rig.target.serving[("churn", "staging")] == ("1", 100)
    assert rig.registry.tags[("churn-model", "2")][REJECTED_TAG] == "latency doubled"
    assert rig.registry.aliases[("churn-model", "staging")] == "1"
    assert active_rollouts(rig.store, REPO, 7) == []


def test_cancel_a_pending_rollout(rig: Rig) -> None:
    rid = rig.start()
    assert cancel_rollout(rig.store, rid, "closed", clock=rig.clock)
    assert rig.drive(rid).state == "cancelled" and not rig.target.applies


# -- history -------------------------------------------------------------------------------------------


def test_store_knows_every_place_a_repository_was_deployed_to(rig: Rig, store: Store) -> None:
    """Drift looks for orphans there too, also where no manifest points any more."""
    rig.drive(rig.start(deployment("churn")))
    moved = deployment("churn").model_copy(update={"namespace": "ml-v2", "cluster": "onprem-2"})
    rig.drive(rig.start(moved, to=3, frm=2))                      # the manifest moved it elsewhere
    rig.drive(rig.start(deployment("fraud", env="production")))
    assert store.deployed_places(REPO) == [("onprem-1", "ml"), ("onprem-2", "ml-v2")]
    assert store.deployed_places("someone/else") == []


def test_history_records_who_what_and_timings(rig: Rig) -> None:
    ok = rig.drive(rig.start(deployment(canary=[10, 100], verify="1m"))).id
    rig.target.fail.add(("3", 100))
    bad = rig.drive(rig.start(to=3, frm=2, trigger="deploy-command")).id
    rig.drive(rig.start(deployment(env="production")))
    records = history(rig.store, repo=REPO, model="churn", environment="staging")
    assert [r.id for r in records] == [bad, ok]
    latest, first = records
    assert (first.outcome, first.trigger, first.actor, first.pr_number, first.sha) == (
        "succeeded", "merge", "alice", 7, "abc1234")
    assert (first.from_version, first.to_version) == ("1", "2")
    assert first.duration_seconds == pytest.approx(120.0, abs=1)   # two verify periods of 1m
    assert [(s.percent, s.outcome) for s in first.steps] == [(10, "verified"), (100, "verified")]
    assert first.steps[0].applied_at and first.steps[0].ready_at and first.steps[0].verified_at
    assert latest.outcome == "rolled_back" and latest.rollback is not None
    assert latest.rollback.version == "2" and latest.rollback.outcome == "restored"
    assert [s.outcome for s in latest.steps] == ["failed"]
    assert len(history(rig.store, limit=2)) == 2
    assert len(history(rig.store, environment="production")) == 1


def test_history_command(rig: Rig, store_url: str, tmp_path) -> None:
    rig.drive(rig.start())
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"database_url: '{store_url}'\n")
    runner = CliRunner()
    text = runner.invoke(history_command, ["churn", "staging", "--settings", str(settings)])
    assert text.exit_code == 0, text.output
    assert "churn/staging" in text.output and "v1 -> v2" in text.output and "succeeded" in text.output
    assert "by alice" in text.output and "PR #7" in text.output
    out = runner.invoke(history_command, ["--settings", str(settings), "--format", "json"])
    data = json.loads(out.output)
    assert data[0]["to_version"] == "2" and data[0]["steps"][0]["percent"] == 100
    empty = runner.invoke(history_command, ["nothing", "--settings", str(settings)])
    assert empty.exit_code == 0 and "no rollouts" in empty.output


# -- one worker, many rollouts -------------------------------------------------------------------------


def test_one_worker_advances_many_rollouts_concurrently(store: Store, job_queue: JobQueue) -> None:
    """Many 3-step canaries with zero verification through one consumer's thread pool; report the rate."""
    count, threads = 40, 8
    target, registry = FakeTarget(), FakeRegistry()
    worker = RolloutWorker(store, job_queue, lambda kind, cluster: target, registry, clock=store.now).bind()
    ids = [start_rollout(store, repo=REPO, dep=deployment(f"m{i}", canary=[10, 50, 100]), candidate=version(2),
                         stable=version(1), trigger="merge", actor="alice", target="fake", clock=store.now)
           for i in range(count)]
    consumer = job_queue.consumer(threads, periodic=False, embedded=True, initial_delay=0.001, backoff=1.0,
                                  max_delay=0.005)
    started = time.perf_counter()
    for rid in ids:
        job_queue.enqueue_rollout(rid)
    consumer.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(r.final for r in store.list_rollouts(repo=REPO)):
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        consumer.stop(graceful=True)
    records = store.list_rollouts(repo=REPO)
    assert {r.state for r in records} == {"succeeded"}
    assert target.applies == {("2", 10): count, ("2", 50): count, ("2", 100): count}
    print(f"\n[figure] one worker, {threads} threads, {store.backend} store + {job_queue.huey.__class__.__name__}: "
          f"{count} three-step canaries in {elapsed:.2f} s = {count / elapsed:.1f} rollouts/s, "
          f"{worker.advanced / elapsed:.0f} advances/s")
