"""Rollout engine figures (issue 5): the wall time of a three-step canary with zero verification, and
how many rollouts one worker process advances at once while it also takes webhooks — measured as the
intake's latency with and without rollouts running in the same process.

The target is an in-memory one that is ready at once, so the figures are the engine's own cost (its
store transactions and bookkeeping), not a cluster's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import emit, median, percentile, ratio
from modelherd.manifest import Deployment, ModelRef, Rollout, Runtime, Serving
from modelherd.registry import ModelVersionInfo
from modelherd.rollout import advance, start_rollout
from modelherd.store import Store
from modelherd.targets import Health, Readiness

SECRET = "bench-secret"


class InstantTarget:
    """Ready as soon as applied; remembers what serves."""

    kind = "kubernetes"

    def __init__(self) -> None:
        self.serving: dict[tuple[str, str], tuple[str, int | None]] = {}

    def apply(self, dep, version, *, canary_percent=None, stable=None) -> None:
        self.serving[(dep.name, dep.environment)] = (version.version, canary_percent)

    def health(self, dep, version, *, canary_percent=None) -> Health:
        ok = self.serving.get((dep.name, dep.environment)) == (version.version, canary_percent)
        return Health(Readiness.READY if ok else Readiness.PROGRESSING)

    def live(self, dep):
        return None

    def remove(self, dep) -> None:
        self.serving.pop((dep.name, dep.environment), None)


class Registry:
    def set_alias(self, *a: Any) -> None: ...
    def delete_alias(self, *a: Any) -> None: ...
    def set_version_tag(self, *a: Any) -> None: ...


def deployment(name: str, steps: list[int] | None) -> Deployment:
    return Deployment(name=name, environment="production", cluster="c1", namespace="ml",
                      model=ModelRef(name=name, version=2), serving=Serving(runtime=Runtime.KSERVE, format="sklearn",
                                                                            deployment_mode="Knative"),
                      rollout=Rollout(canary=steps, verify_for="0s"), gates={"metrics": {}}, owners=(), labels={})


def version(name: str, v: int) -> ModelVersionInfo:
    return ModelVersionInfo(name=name, version=str(v), status="READY", storage_uri=f"s3://m/{name}/{v}")


def run(store: Store, rollout_id: int, target: InstantTarget) -> None:
    while not store.get_rollout(rollout_id).final:
        advance(rollout_id, store=store, targets=lambda kind, cluster: target, registry=Registry(),
                clock=store.now)


def timed_rollout(store: Store, name: str, steps: list[int] | None, target: InstantTarget) -> float:
    dep = deployment(name, steps)
    rid = start_rollout(store, repo="bench/models", dep=dep, candidate=version(name, 2), stable=version(name, 1),
                        trigger="merge", actor="bench", clock=store.now)
    started = time.perf_counter()
    run(store, rid, target)
    assert store.get_rollout(rid).state == "succeeded"
    return time.perf_counter() - started


def bench_canary(workdir: Path) -> None:
    store = Store.from_url(f"sqlite:///{workdir / 'canary.db'}")
    store.upgrade()
    target = InstantTarget()
    canary = [timed_rollout(store, f"canary-{i}", [10, 50, 100], target) for i in range(7)]
    direct = [timed_rollout(store, f"direct-{i}", None, target) for i in range(7)]
    emit(figure="rollout_three_step_canary_ms", value=round(median(canary) * 1000, 1),
         baseline="a direct (one-step) rollout on the same engine", baseline_value=round(median(direct) * 1000, 1),
         ratio=ratio(median(canary), median(direct)), verify_for="0s", store="SQLite", runs=7,
         target="in-memory, ready at once")


def _intake_latencies(client, body: bytes, seconds: float) -> list[float]:
    headers = {"X-GitHub-Event": "pull_request", "Content-Type": "application/json",
               "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}
    out, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = client.post("/webhooks/github", data=body,
                               headers={**headers, "X-GitHub-Delivery": str(uuid.uuid4())})
        assert response.status_code == 202
        out.append((time.perf_counter() - started) * 1000)
    return out


def bench_concurrent(workdir: Path, rollouts: int = 40, threads: int = 4) -> None:
    from modelherd.app import create_app
    from modelherd.queue import JobQueue
    from modelherd.settings import GitHubSettings, Settings

    settings = Settings(github=GitHubSettings(webhook_secret=SECRET), database_url=f"sqlite:///{workdir / 'c.db'}",
                        queue_url=f"sqlite:///{workdir / 'q.db'}")
    store = Store.from_url(settings.database_url)
    store.upgrade()
    client = create_app(settings, store, JobQueue.from_url(settings.queue_url, "bench")).test_client()
    body = json.dumps({"action": "opened", "number": 1, "repository": {"full_name": "bench/models"},
                       "installation": {"id": 1}, "pull_request": {"number": 1}}).encode()
    alone = _intake_latencies(client, body, 3.0)

    target = InstantTarget()
    ids = [start_rollout(store, repo="bench/models", dep=deployment(f"m{i}", [10, 50, 100]),
                         candidate=version(f"m{i}", 2), stable=version(f"m{i}", 1), trigger="merge", actor="bench",
                         clock=store.now)
           for i in range(rollouts)]
    done = threading.Event()

    def advance_all() -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda rid: run(store, rid, target), ids))
        done.set()
        return time.perf_counter() - started

    runner = ThreadPoolExecutor(1)
    elapsed = runner.submit(advance_all)
    busy = []
    while not done.is_set():
        busy.extend(_intake_latencies(client, body, 0.5))
    seconds = elapsed.result()
    runner.shutdown()
    assert all(store.get_rollout(i).state == "succeeded" for i in ids)
    emit(figure="rollouts_per_s_one_worker_process", value=round(rollouts / seconds, 1), rollouts=rollouts,
         threads=threads, steps="10→50→100, verify 0s", seconds=round(seconds, 2),
         baseline="webhook intake p50 ms with no rollout running", baseline_value=round(median(alone), 2),
         intake_p50_ms_during=round(median(busy), 2), intake_p99_ms_during=round(percentile(busy, 99), 2),
         intake_p99_ms_alone=round(percentile(alone, 99), 2),
         ratio=ratio(median(busy), median(alone)),
         note="same process: intake through the Flask test client while a 4-thread pool advances the rollouts")


def bench_rollouts() -> None:
    with tempfile.TemporaryDirectory(prefix="modelherd-bench-rollouts-") as tmp:
        bench_canary(Path(tmp))
        bench_concurrent(Path(tmp))


if __name__ == "__main__":
    bench_rollouts()
