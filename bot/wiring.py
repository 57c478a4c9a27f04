"""The application's wiring: which handlers run, and the dependencies each event gets.

Built once per worker process (``modelherd worker``, or the web process with ``worker_in_process``);
clients, caches and token caches live as long as the process. Handlers receive everything from here
and build nothing themselves. The rollout engine is bound to the same queue, with its targets and a
progress reporter that writes to the pull request through the repository's forge.

An event's ``forge`` is GitHub's (per installation) or GitLab's (per project), chosen by
``event.forge``; handlers never know which. Rollouts find their repository's forge the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelherd.handlers import (  # noqa: F401 (deploy, rollback, unlock register commands)
    closed,
    commands,
    deploy,
    drift,
    merge,
    plan,
    rollback,
    rules_changed,
    unlock,
)
from modelherd.progress import Progress
from modelherd.queue import JobQueue
from modelherd.registry import Registry
from modelherd.rollout import RolloutWorker
from modelherd.router import Router
from modelherd.settings import Settings
from modelherd.slack.notifier import Notifier
from modelherd.store import EventRecord, Store
from modelherd.targets.factory import Targets
from modelherd.worker import Handlers

ROUTER = Router(plan.router, closed.router, merge.router, commands.router, drift.router, rules_changed.router)


def registries_from(settings: Settings) -> dict[str, Registry]:
    from modelherd.registry.mlflow import MlflowRegistry

    return {name: MlflowRegistry(cfg) for name, cfg in settings.registries.items()}


def shared_pacer(settings: Settings, write_interval: float) -> Any:
    """A pacer every worker shares: in Redis when the queue is there, else in the database."""
    from modelherd.pacing import PacingPolicy, pacer_from_url

    shared = settings.queue_url if settings.queue_url.startswith(("redis://", "rediss://")) else settings.database_url
    return pacer_from_url(shared, PacingPolicy(write_interval=write_interval))


def github_clients(settings: Settings) -> Any:
    """The GitHub App's clients, paced per installation across every worker (None without GitHub)."""
    if settings.github is None or settings.github.app_id is None:
        return None
    from modelherd.github_auth import GitHubClients

    return GitHubClients(settings.github, pacer=shared_pacer(settings, settings.github.write_interval_seconds))


def gitlab_clients(settings: Settings) -> Any:
    """The GitLab instance's clients, paced per token across every worker (None without GitLab)."""
    if settings.gitlab is None:
        return None
    from modelherd.forges.gitlab import GitLabClients

    return GitLabClients.from_settings(settings.gitlab,
                                       pacer=shared_pacer(settings, settings.gitlab.write_interval_seconds))


def build(settings: Settings, store: Store, queue: JobQueue, *,
          registries: Mapping[str, Registry] | None = None, github: Any = None, gitlab: Any = None,
          targets: Targets | None = None) -> Handlers:
    """The router of every feature, a per-event dependency factory, and the bound rollout worker."""
    registries = dict(registries) if registries is not None else registries_from(settings)
    clusters = settings.cluster_facts()
    github = github or github_clients(settings)
    gitlab = gitlab or gitlab_clients(settings)
    targets = targets or Targets(settings, registries)

    def forge_for_repo(repo: str) -> Any:
        """The forge hosting ``repo``: GitHub when an installation covers it, else GitLab (if configured)."""
        installation = store.installation_for("github", repo) if github is not None else None
        if installation:
            return github.forge(installation, repo)
        return gitlab.forge(repo) if gitlab is not None else None

    notifier = Notifier(store, queue, settings.slack) if settings.slack is not None else None
    progress = Progress(store, forge_for_repo, queue=queue).bind()
    slack = notifier.rollout_notifier() if notifier is not None else None

    def notify(record: Any, event: Any) -> None:
        """Progress to the forge, then Slack; one failing never keeps the other from hearing."""
        try:
            progress(record, event)
        finally:
            if slack is not None:
                slack(record, event)

    metrics = None
    if settings.metrics is not None:
        from modelherd.metrics_source import PrometheusSource

        metrics = PrometheusSource.from_settings(settings.metrics)
    RolloutWorker(store, queue, targets, registries, clock=store.clock, notify=notify, metrics=metrics).bind()
    sweep_deps = dict(registries=registries, clusters=clusters, targets=targets, queue=queue, clock=store.now,
                      notifier=notifier)
    if github is not None:
        queue.add_sweeper(drift.drift_sweeper(store, "github", github.forge, settings.drift_interval_seconds,
                                              **sweep_deps))
    if gitlab is not None:
        queue.add_sweeper(drift.drift_sweeper(store, "gitlab", lambda _installation, repo: gitlab.forge(repo),
                                              settings.drift_interval_seconds, **sweep_deps))

    def deps(event: EventRecord) -> dict[str, Any]:
        found: dict[str, Any] = {"store": store, "queue": queue, "registries": registries, "clusters": clusters,
                                 "clock": store.now, "targets": targets, "notifier": notifier}
        if github is not None:
            found["forge_for"] = github.forge
        if event.forge == "github" and github is not None and event.installation_id and event.repo:
            found["forge"] = github.forge(event.installation_id, event.repo)
        elif event.forge == "gitlab" and gitlab is not None and event.repo:
            found["forge"] = gitlab.forge(event.repo)
        return found

    return Handlers(router=ROUTER, deps=deps)
