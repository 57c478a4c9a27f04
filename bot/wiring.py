"""The application's wiring: which handlers run, and the dependencies each event gets.

Built once per worker process (``modelherd worker``, or the web process with ``worker_in_process``);
clients, caches and token caches live as long as the process. Handlers receive everything from here
and build nothing themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelherd.handlers import closed, commands, plan, unlock  # noqa: F401 (unlock registers /unlock)
from modelherd.queue import JobQueue
from modelherd.registry import Registry
from modelherd.router import Router
from modelherd.settings import Settings
from modelherd.store import EventRecord, Store
from modelherd.worker import Handlers

ROUTER = Router(plan.router, closed.router, commands.router)


def registries_from(settings: Settings) -> dict[str, Registry]:
    from modelherd.registry.mlflow import MlflowRegistry

    return {name: MlflowRegistry(cfg) for name, cfg in settings.registries.items()}


def github_clients(settings: Settings) -> Any:
    """The GitHub App's clients, paced per installation across every worker (None without GitHub)."""
    if settings.github is None or settings.github.app_id is None:
        return None
    from modelherd.github_auth import GitHubClients
    from modelherd.pacing import PacingPolicy, pacer_from_url

    shared = settings.queue_url if settings.queue_url.startswith(("redis://", "rediss://")) else settings.database_url
    pacer = pacer_from_url(shared, PacingPolicy(write_interval=settings.github.write_interval_seconds))
    return GitHubClients(settings.github, pacer=pacer)


def build(settings: Settings, store: Store, queue: JobQueue, *,
          registries: Mapping[str, Registry] | None = None, github: Any = None) -> Handlers:
    """The router of every feature, and a per-event dependency factory."""
    registries = dict(registries) if registries is not None else registries_from(settings)
    clusters = settings.cluster_facts()
    github = github or github_clients(settings)

    def deps(event: EventRecord) -> dict[str, Any]:
        found: dict[str, Any] = {"store": store, "queue": queue, "registries": registries,
                                 "clusters": clusters, "clock": store.now}
        if event.forge == "github" and github is not None and event.installation_id and event.repo:
            found["forge"] = github.forge(event.installation_id, event.repo)
        return found

    return Handlers(router=ROUTER, deps=deps)
