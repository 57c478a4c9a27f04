"""Drift: what serves compared with what the default branch says, per model and environment.

A push to the default branch scans its new head and reports the ``modelherd/drift`` check on it; the
periodic sweep (every ``drift_interval_seconds``, at most once per repository across all workers)
scans each repository's last pushed head again, so a hand edit in a cluster shows up without a push.
Environments with ``self_heal: true`` in ``.modelherd.yaml`` get a ``self-heal`` rollout; pinned
environments (``/rollback`` until its revert PR merges) and environments with a rollout in progress
are left alone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from modelherd.drift import drift_check
from modelherd.drift_scan import rollout_healer, scan_repo, store_pins, store_rolling
from modelherd.forges.base import Forge
from modelherd.router import Router
from modelherd.slack_events import drift_events

log = logging.getLogger(__name__)
router = Router()


def default_branch_push(payload: Mapping[str, Any]) -> str | None:
    """The new head SHA when ``payload`` is a push to the default branch (not a deletion), else None."""
    repo = payload.get("repository") or {}
    default = repo.get("default_branch") or repo.get("master_branch")
    if not default or payload.get("ref") != f"refs/heads/{default}" or payload.get("deleted"):
        return None
    return payload.get("after")


def scan_and_report(forge: Forge, sha: str, *, store: Any, registries: Mapping[str, Any],
                    clusters: Mapping[str, Any], targets: Any, queue: Any, clock: Callable,
                    notifier: Any = None) -> Any:
    """Scan ``sha`` of the default branch, heal where asked, and report the drift check on it."""
    report = scan_repo(forge.reader(), sha, registries=registries, targets=targets, clusters=clusters,
                       is_pinned=store_pins(store), repo=forge.repo, rolling=store_rolling(store, forge.repo),
                       deployed=store.deployed_places(forge.repo),
                       heal=rollout_healer(store, repo=forge.repo, kind_of=targets.kind_of,
                                           enqueue=queue.enqueue_rollout, sha=sha, clock=clock),
                       now=clock())
    forge.report_check(sha, drift_check(report))
    if notifier is not None:
        for slack_event in drift_events(report, forge.repo, sha):
            notifier.notify(slack_event)
    log.info("%s@%s: drift scan: %d drifted, %d unknown", forge.repo, sha[:7], len(report.drifted),
             len(report.unknown))
    return report


@router.register("push")
def on_push(event: Any, *, forge: Forge, store: Any, registries: Mapping[str, Any], clusters: Mapping[str, Any],
            targets: Any, queue: Any, clock: Callable, notifier: Any = None, **_: Any) -> None:
    """The default branch moved: compare what serves with its new head."""
    sha = default_branch_push(event.payload)
    if sha:
        scan_and_report(forge, sha, store=store, registries=registries, clusters=clusters, targets=targets,
                        queue=queue, clock=clock, notifier=notifier)


def drift_sweeper(store: Any, forge_name: str, forge_for: Callable[[int | None, str], Forge | None],
                  interval: float, **deps: Any) -> Callable[[], list[str]]:
    """The periodic job of one forge (``github``, ``gitlab``): rescan each repository's last pushed
    default-branch head, at most once per ``interval`` across workers (a store lease that is never
    released acts as the rate limit)."""
    def sweep() -> list[str]:
        scanned = []
        for repo, installation, sha in store.last_pushes(forge_name, default_branch_push):
            if not store.try_mutex(f"drift:{forge_name}:{repo}", uuid.uuid4().hex, interval):
                continue
            forge = forge_for(installation, repo)
            if forge is None:
                continue
            try:
                scan_and_report(forge, sha, store=store, **deps)
                scanned.append(repo)
            except Exception:
                log.exception("%s: periodic drift scan failed", repo)
        return scanned
    return sweep
