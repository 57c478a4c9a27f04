"""Decommission through the rollout engine: a deleted manifest's model is removed from its environment,
every step logged before and after it acts; a worker killed anywhere still removes it exactly once.

The fakes and the crash machinery are those of :mod:`tests.test_rollout`.
"""

from __future__ import annotations

import pytest

from modelherd.decommission import start_decommission
from modelherd.rollout import REJECTED_TAG, history, rollback_to
from modelherd.store import Store
from tests.rollout_rig import REPO, Rig, deployment, outcomes, version


def serving(rig: Rig, env: str = "staging", name: str = "churn", to: int = 3) -> None:
    """Deploy v``to`` (a create) so there is something to decommission."""
    assert rig.drive(rig.start(deployment(name, env), frm=None, to=to)).state == "succeeded"


def decommission(rig: Rig, env: str = "staging", name: str = "churn", *, current: int | None = 3,
                 **kw) -> int:
    return start_decommission(rig.store, repo=REPO, dep=deployment(name, env, **kw.pop("dep", {})),
                              current=version(current) if current else None, trigger="merge", actor="alice",
                              pr=8, sha="def5678", target="fake", clock=rig.clock, **kw)


def test_decommission_removes_the_model_and_the_registry_forgets_it(rig: Rig, store: Store) -> None:
    serving(rig)
    assert rig.registry.aliases[("churn-model", "staging")] == "3"
    record = rig.drive(decommission(rig))
    assert (record.state, record.action, record.from_version, record.error) == ("succeeded", "decommission", "3", None)
    assert ("churn", "staging") not in rig.target.serving and rig.target.removes == 1
    assert ("churn-model", "staging") not in rig.registry.aliases
    assert [t["state"] for t in record.transitions] == ["pending", "applying", "verifying", "succeeded"]
    log = store.rollout_events(record.id)
    intents = [e for e in log if e.kind == "intent"]
    assert [e.action for e in intents] == ["remove", "mark-removed"]
    assert all(any(o.intent_id == i.id for o in log if o.kind == "outcome") for i in intents)
    assert "remove churn from staging (cluster onprem-1 namespace ml) (was v3)" in intents[0].message
    assert outcomes(store, record.id, "verify")[0].message == "removal verified: absent"


def test_objects_still_being_deleted_are_waited_for(rig: Rig) -> None:
    serving(rig)
    rig.target.linger = 3
    record = rig.drive(decommission(rig))
    assert record.state == "succeeded" and rig.target.removes == 1
    polls = [e.message for e in rig.store.rollout_events(record.id) if e.kind == "observation"]
    assert polls == ["removal: being deleted"]       # repeated polls log once


def test_removing_what_is_already_absent_is_fine(rig: Rig) -> None:
    record = rig.drive(decommission(rig, current=None))
    assert record.state == "succeeded" and record.from_version is None
    assert "decommissioned" in rig.store.rollout_events(record.id)[-1].detail["result"]


def test_unknown_version_is_taken_from_the_last_successful_rollout(rig: Rig) -> None:
    serving(rig, to=4)
    record = rig.drive(decommission(rig, current=None))
    assert (record.state, record.from_version) == ("succeeded", "4")


def test_refused_remove_is_retried(rig: Rig) -> None:
    serving(rig)
    rig.target.refuse_removes = 2
    record = rig.drive(decommission(rig))
    assert record.state == "succeeded" and rig.target.removes == 1
    assert [o.ok for o in outcomes(rig.store, record.id, "remove")] == [False, False, True]


def test_failed_decommission_ends_failed_and_recreates_nothing(rig: Rig) -> None:
    serving(rig)
    rig.target.refuse_removes = 1000
    record = rig.drive(decommission(rig, dep={"timeout": "2m"}))
    assert record.state == "failed" and "could not remove churn from cluster onprem-1 namespace ml" in record.error
    assert "rolling_back" not in [t["state"] for t in record.transitions]
    assert rig.target.applies == {("3", 100): 1}                 # only the original create
    assert rig.registry.aliases[("churn-model", "staging")] == "3"   # the registry is not told it is gone


def test_alias_moved_elsewhere_is_kept(rig: Rig) -> None:
    serving(rig)
    rig.registry.aliases[("churn-model", "staging")] = "5"
    record = rig.drive(decommission(rig))
    assert record.state == "succeeded"
    assert rig.registry.aliases[("churn-model", "staging")] == "5"
    assert "kept (not the removed version)" in outcomes(rig.store, record.id, "mark-removed")[0].message


def _scenario(rig: Rig, n: int) -> int:
    serving(rig, name=f"gone-{n}")
    return decommission(rig, name=f"gone-{n}")


def test_worker_killed_at_each_point_decommissions_exactly_once(store: Store) -> None:
    clean = Rig(store)
    rid = _scenario(clean, 0)
    start = len(clean.plan.seen)
    clean.drive(rid)
    points = [p for p in clean.plan.seen[start:] if p.startswith(("intent:", "removed", "registry:"))]
    assert points == ["intent:remove:v3:0", "removed", "intent:mark-removed:v3:None", "registry:delete-alias:staging"]
    for n, point in enumerate(points, start=1):
        rig = Rig(store)
        rid = _scenario(rig, n)
        rig.plan.at = point
        record = rig.drive(rid)
        assert rig.crashes == 1, point
        assert record.state == "succeeded", point
        assert rig.target.removes == 1, f"crash at {point}: removed {rig.target.removes} times"
        assert (f"gone-{n}", "staging") not in rig.target.serving, point
        assert ("churn-model", "staging") not in rig.registry.aliases, point
        log = store.rollout_events(rid)
        assert record.open_intent is None
        intents = [e for e in log if e.kind == "intent"]
        assert all(any(o.intent_id == i.id for o in log if o.kind == "outcome") for i in intents), point
        finished = [e for e in log if e.kind == "outcome" and e.state == "succeeded"]
        assert len(finished) == 1, point                           # finished exactly once
        if point == "removed":  # the remove happened: the absence check confirms it, no second call
            assert any("confirmed by the target after a restart" in e.message for e in log), point
        if point.startswith("intent:remove"):  # not removed yet: removed once, after the restart
            assert any("removed again after a restart" in e.message for e in log), point


# -- ordering --------------------------------------------------------------------------------------------


def test_production_decommission_waits_for_staging(rig: Rig) -> None:
    serving(rig, "staging")
    serving(rig, "production")
    staging = decommission(rig, "staging")
    production = decommission(rig, "production", after_id=staging)
    assert rig.advance(production).state == "pending"
    assert ("churn", "production") in rig.target.serving
    assert rig.drive(staging).state == "succeeded"
    record = rig.drive(production)
    assert record.state == "succeeded" and record.started_at >= rig.store.get_rollout(staging).finished_at
    assert rig.target.serving == {}


def test_production_is_not_decommissioned_when_staging_failed(rig: Rig) -> None:
    serving(rig, "staging")
    serving(rig, "production")
    rig.target.refuse_removes = 1000
    staging = decommission(rig, "staging", dep={"timeout": "1m"})
    production = decommission(rig, "production", after_id=staging)
    assert rig.drive(staging).state == "failed"
    record = rig.drive(production)
    assert record.state == "cancelled" and "ended failed" in record.error
    assert ("churn", "production") in rig.target.serving


def test_decommission_queues_behind_an_active_rollout_of_the_key(rig: Rig) -> None:
    serving(rig)
    update = rig.start(deployment(verify="1m"), frm=3, to=4)
    assert rig.advance(update).state == "applying"
    gone = decommission(rig, current=4)
    assert rig.advance(gone).state == "pending"
    assert rig.drive(update).state == "succeeded"
    assert rig.drive(gone).state == "succeeded" and ("churn", "staging") not in rig.target.serving


def test_newer_deploy_supersedes_a_queued_decommission(rig: Rig) -> None:
    serving(rig)
    blocker = rig.start(deployment(verify="1m"), frm=3, to=4)
    rig.advance(blocker)
    gone = decommission(rig, current=4)
    back = rig.start(deployment(), frm=4, to=5)
    rig.drive(blocker)
    assert rig.drive(gone).state == "superseded" and rig.target.removes == 0
    assert rig.drive(back).state == "succeeded"


# -- after a decommission ----------------------------------------------------------------------------------


def test_rollback_after_a_decommission_recreates_the_last_good_version(rig: Rig) -> None:
    serving(rig)
    rig.drive(decommission(rig))
    rid = rollback_to(rig.store, repo=REPO, dep=deployment(), version=version(3), current=None, actor="bob", pr=8,
                      reason="/rollback by bob on #8", target="fake", clock=rig.clock)
    record = rig.drive(rid)
    assert (record.state, record.from_version, record.to_version) == ("succeeded", None, "3")
    assert rig.target.serving[("churn", "staging")] == ("3", 100)
    assert rig.registry.aliases[("churn-model", "staging")] == "3"
    assert REJECTED_TAG not in rig.registry.tags.get(("churn-model", "3"), {})


def test_history_shows_the_decommission(rig: Rig) -> None:
    serving(rig)
    gone = rig.drive(decommission(rig)).id
    latest = history(rig.store, repo=REPO, model="churn", environment="staging")[0]
    assert (latest.id, latest.action, latest.outcome, latest.from_version) == (gone, "decommission", "succeeded", "3")
    assert [s.outcome for s in latest.steps] == ["verified"] and latest.steps[0].applied_at is not None
    assert latest.as_dict()["action"] == "decommission"


def test_a_decommission_is_not_the_last_deploy(rig: Rig) -> None:
    serving(rig)
    rig.drive(decommission(rig))
    assert rig.store.last_succeeded_rollout(REPO, "churn", "staging").action == "deploy"
    assert rig.store.last_succeeded_rollout(REPO, "churn", "staging", deploys_only=False).action == "decommission"


def test_unknown_trigger_is_refused(rig: Rig) -> None:
    with pytest.raises(ValueError, match="unknown trigger"):
        start_decommission(rig.store, repo=REPO, dep=deployment(), current=None, trigger="cron", actor=None,
                           clock=rig.clock)


# -- promotion: which deletions start, in which order -----------------------------------------------------


def _deletion_plan(config_yaml: str | None = None):
    from modelherd.plan import Action, Change, ChangeReport, Plan
    from modelherd.repoconfig import parse_config

    config, findings = parse_config(config_yaml)
    assert findings == []
    reports = [ChangeReport(Change("churn", env, Action.DELETE, deployment("churn", env), None, "models/churn.yaml",
                                   "models/churn.yaml"), current=version(3))
               for env in ("production", "staging")]
    return Plan("base", "head", reports, {}, ["models/churn.yaml"], config=config)


def _start(rig: Rig, plan, *, decommission: bool = True):
    from modelherd.promotion import start_for_plan

    queued: list[int] = []
    started = start_for_plan(plan, store=rig.store, kind_of=lambda cluster: "fake", enqueue=queued.append,
                             repo=REPO, actor="alice", pr=8, sha="def5678", trigger="merge",
                             decommission=decommission, clock=rig.clock)
    assert queued == [rid for _, rid in started.rollouts]
    return started


def test_merged_deletions_decommission_in_promotion_order(rig: Rig) -> None:
    serving(rig, "staging")
    serving(rig, "production")
    started = _start(rig, _deletion_plan())
    [(first, staging), (second, production)] = started.rollouts
    assert (first.change.environment, second.change.environment) == ("staging", "production")
    assert rig.store.get_rollout(production).after_id == staging and started.skipped == []
    assert rig.drive(staging).state == "succeeded" and rig.drive(production).state == "succeeded"
    assert rig.target.serving == {}


def test_prune_off_for_an_environment_leaves_it_by_hand(rig: Rig) -> None:
    plan = _deletion_plan("environments:\n  - name: staging\n  - name: production\n    prune: false\n")
    started = _start(rig, plan)
    assert [r.change.environment for r, _ in started.rollouts] == ["staging"]
    [(report, reason)] = started.skipped
    assert report.change.environment == "production"
    assert reason == ("prune is off for production: deleting a deployment is not rolled out automatically: "
                      "remove it from the cluster by hand")


def test_prune_off_for_the_repository_but_on_for_one_environment(rig: Rig) -> None:
    plan = _deletion_plan("prune: false\nenvironments:\n  - name: staging\n    prune: true\n  - name: production\n")
    started = _start(rig, plan)
    assert [r.change.environment for r, _ in started.rollouts] == ["staging"]
    assert [r.change.environment for r, _ in started.skipped] == ["production"]


def test_deploy_command_never_removes(rig: Rig) -> None:
    started = _start(rig, _deletion_plan(), decommission=False)
    assert started.rollouts == []
    assert {reason for _, reason in started.skipped} == {"a deleted deployment is removed after merge, not before"}


def test_progress_says_what_was_removed_where(rig: Rig) -> None:
    from modelherd.progress import deployment_state, description, rollout_check, rollouts_table

    serving(rig)
    pending = rig.store.get_rollout(decommission(rig))
    assert deployment_state(pending) == "queued"
    assert description(pending) == "churn v3 → removed: to be removed from cluster onprem-1 namespace ml"
    record = rig.drive(pending.id)
    assert deployment_state(record) == "inactive"                 # GitHub's state for a removed deployment
    assert description(record) == "churn v3 → removed: decommissioned: removed from cluster onprem-1 namespace ml"
    check = rollout_check([record])
    assert (check.conclusion, check.title) == ("success", "1 rollout(s) succeeded (1 decommissioned)")
    assert "| churn | staging | v3 → removed | decommissioned: removed from cluster onprem-1 namespace ml |" \
        in rollouts_table([record])


def test_history_command_lines(rig: Rig) -> None:
    from modelherd.history_cli import render_text

    serving(rig)
    rig.drive(decommission(rig))
    lines = render_text(history(rig.store, repo=REPO, model="churn", environment="staging")[0])
    assert "churn/staging  decommission (was v3)  succeeded  merge by alice" in lines[0]
    assert lines[2].strip().startswith("remove  removed") and lines[2].endswith("verified")
