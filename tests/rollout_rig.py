"""The rollout engine's test rig: a fake target and registry that count what reaches them, crash
injection, a settable clock, and :class:`Rig` (the ``rig`` fixture) that starts and advances rollouts.

A *crash* is a ``BaseException`` raised inside the engine's call (after an intent is recorded, or after
a side effect): like a killed process it skips the engine's error handling and leaves the rollout's
lease to expire.  Used by the engine's tests and by the features built on it (decommission, Slack).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from modelherd.manifest import Deployment, ModelDeployment, effective
from modelherd.registry import ModelVersionInfo, VersionNotFound
from modelherd.rollout import Decision, advance, start_rollout
from modelherd.store import Store
from modelherd.targets import Health, Readiness, TargetError
from tests.clock import FIXED, Clock

REPO = "octo/models"
LEASE = 120.0


# -- fakes ---------------------------------------------------------------------------------------------


class Crash(BaseException):
    """A simulated kill: not an ``Exception``, so nothing in the engine catches it."""


class CrashPlan:
    """Named crash points; ``point(name)`` raises :class:`Crash` once at the chosen one, and logs all."""

    def __init__(self, at: str | None = None):
        self.at, self.seen, self.fired = at, [], False

    def point(self, name: str) -> None:
        self.seen.append(name)
        if name == self.at and not self.fired:
            self.fired = True
            raise Crash(name)


class FakeTarget:
    """Serves (version, percent) per deployment; counts applies and removes; can fail, hang or be slow."""

    kind = "fake"

    def __init__(self, plan: CrashPlan | None = None):
        self.plan = plan or CrashPlan()
        self.serving: dict[tuple[str, str], tuple[str, int]] = {}
        self.applies: Counter[tuple[str, int]] = Counter()
        self.removes = 0
        self.fail: set[tuple[str, int]] = set()   # (version, percent) that report FAILED
        self.hang: set[tuple[str, int]] = set()   # ... that stay PROGRESSING
        self.slow = 0                              # PROGRESSING answers after each apply
        self._pending_slow = 0
        self.refuse = 0                            # the next N applies raise TargetError
        self.refuse_removes = 0                    # the next N removes raise TargetError
        self.linger = 0                            # PROGRESSING absence checks after each remove
        self._lingering = 0
        self.lock = threading.Lock()

    def apply(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None = None,
              stable: ModelVersionInfo | None = None) -> None:
        percent = canary_percent or 100
        if percent < 100:
            assert stable is not None, "a canary step carries the stable version"
        with self.lock:
            if self.refuse:
                self.refuse -= 1
                raise TargetError("connection refused")
            self.serving[dep.key] = (version.version, percent)
            self.applies[(version.version, percent)] += 1
            self._pending_slow = self.slow
        self.plan.point(f"applied:v{version.version}:{percent}")

    def health(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None = None) -> Health:
        want = (version.version, canary_percent or 100)
        if self.serving.get(dep.key) != want:
            return Health(Readiness.PROGRESSING, f"serving {self.serving.get(dep.key)}")
        if want in self.fail:
            return Health(Readiness.FAILED, f"v{want[0]} failed to load")
        if want in self.hang:
            return Health(Readiness.PROGRESSING, "pods pending")
        if self._pending_slow:
            self._pending_slow -= 1
            return Health(Readiness.PROGRESSING, "starting")
        return Health(Readiness.READY)

    def live(self, dep: Deployment) -> list[dict[str, Any]] | None:
        found = self.serving.get(dep.key)
        return None if found is None else [{"version": found[0], "percent": found[1]}]

    def remove(self, dep: Deployment) -> None:
        if self.refuse_removes:
            self.refuse_removes -= 1
            raise TargetError("connection refused")
        self.serving.pop(dep.key, None)
        self.removes += 1
        self._lingering = self.linger
        self.plan.point("removed")

    def absent(self, dep: Deployment) -> Health:
        found = self.serving.get(dep.key)
        if found is not None:
            return Health(Readiness.PROGRESSING, f"still serving v{found[0]}")
        if self._lingering:
            self._lingering -= 1
            return Health(Readiness.PROGRESSING, "being deleted")
        return Health(Readiness.READY, "absent")


class FakeRegistry:
    """A registry writer that remembers aliases and tags."""

    def __init__(self, plan: CrashPlan | None = None):
        self.plan = plan or CrashPlan()
        self.aliases: dict[tuple[str, str], str] = {}
        self.tags: dict[tuple[str, str], dict[str, str]] = {}
        self.writes = 0

    def set_alias(self, name: str, alias: str, version: int | str) -> None:
        self.aliases[(name, alias)] = str(version)
        self.writes += 1
        self.plan.point(f"registry:alias:{alias}:v{version}")

    def set_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        self.tags.setdefault((name, str(version)), {})[key] = value
        self.writes += 1
        self.plan.point(f"registry:tag:v{version}:{key}")

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.pop((name, alias), None)
        self.writes += 1
        self.plan.point(f"registry:delete-alias:{alias}")

    def resolve(self, name: str, *, version: int | None = None, alias: str | None = None) -> ModelVersionInfo:
        found = self.aliases.get((name, alias)) if alias is not None else version
        if found is None:
            raise VersionNotFound(f"{name}@{alias} is not set")
        return ModelVersionInfo(name=name, version=str(found), status="READY", storage_uri=None)


class CrashingStore:
    """The store, with a crash point right after each intent is committed."""

    def __init__(self, store: Store, plan: CrashPlan):
        self._store, self._plan = store, plan

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def rollout_intent(self, rollout_id: int, holder: str, **kw: Any) -> Any:
        written = self._store.rollout_intent(rollout_id, holder, **kw)
        self._plan.point(f"intent:{kw['action']}:v{kw.get('version')}:{kw.get('percent')}")
        return written


def version(n: int, name: str = "churn-model") -> ModelVersionInfo:
    return ModelVersionInfo(name=name, version=str(n), status="READY", storage_uri=f"s3://m/{name}/{n}",
                            aliases=("champion",) if n == 1 else ())


def deployment(name: str = "churn", env: str = "staging", *, canary: list[int] | None = None,
               verify: str = "0s", timeout: str = "15m", gates: dict[str, Any] | None = None) -> Deployment:
    rollout: dict[str, Any] = {"verify_for": verify, "timeout": timeout}
    if canary:
        rollout["canary"] = canary
    manifest = ModelDeployment.model_validate({
        "apiVersion": "modelherd.dev/v1", "kind": "ModelDeployment",
        "metadata": {"name": name, "owners": ["alice"]},
        "spec": {"model": {"name": "churn-model", "version": 2},
                 "serving": {"runtime": "kserve", "format": "sklearn"},
                 "gates": {"metrics": gates or {}},
                 "environments": {e: {"cluster": "onprem-1", "namespace": "ml", "rollout": rollout}
                                  for e in ("staging", "production")}}})
    return effective(manifest, env)


class Rig:
    """Store + fakes + clock, and a driver that advances a rollout until it is final."""

    def __init__(self, store: Store, at: str | None = None, metrics: Any = None, clock: Clock | None = None):
        self.plan = CrashPlan(at)
        self.store, self.clock = store, clock or Clock(FIXED)
        store.clock = self.clock                  # one clock for the store and the engine
        self.target, self.registry = FakeTarget(self.plan), FakeRegistry(self.plan)
        self.engine_store = CrashingStore(store, self.plan)
        self.metrics = metrics
        self.events: list[tuple[int, str, str]] = []
        self.crashes = 0

    def notify(self, record: Any, event: Any) -> None:
        self.events.append((record.id, event.kind, event.action))

    def start(self, dep: Deployment | None = None, *, to: int = 2, frm: int | None = 1, **kw: Any) -> int:
        kw.setdefault("trigger", "merge")
        return start_rollout(self.store, repo=REPO, dep=dep or deployment(), candidate=version(to),
                             stable=version(frm) if frm else None, actor="alice", pr=7, sha="abc1234",
                             target="fake", clock=self.clock, **kw)

    def advance(self, rollout_id: int) -> Decision:
        return advance(rollout_id, store=self.engine_store, targets=lambda kind, cluster: self.target,
                       registry=self.registry, clock=self.clock, notify=self.notify, metrics=self.metrics,
                       lease_seconds=LEASE)

    def drive(self, rollout_id: int, max_calls: int = 500) -> Any:
        """Advance until final, moving the clock by each decision's delay; a crash waits out the lease."""
        for _ in range(max_calls):
            try:
                decision = self.advance(rollout_id)
            except Crash:
                self.crashes += 1
                self.clock.advance(LEASE + 1)
                continue
            if decision.next_check_in is None:
                record = self.store.get_rollout(rollout_id)
                if record.final:
                    return record
                self.clock.advance(LEASE + 1)
                continue
            self.clock.advance(decision.next_check_in)
        raise AssertionError(f"rollout {rollout_id} not final after {max_calls} advances")


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def outcomes(store: Store, rollout_id: int, action: str) -> list[Any]:
    return [e for e in store.rollout_events(rollout_id) if e.kind == "outcome" and e.action == action]
