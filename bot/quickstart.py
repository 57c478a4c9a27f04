"""``modelherd quickstart``: the product on embedded defaults, end to end, with nothing to set up.

It builds a throw-away workspace in ``.modelherd-quickstart/``:

1. a local MLflow registry (SQLite, in-process) seeded with the example models' versions, metrics,
   tags and lineage — one candidate that passes its gates and one that regresses;
2. a real git repository holding ``examples/repo`` on ``main`` and, on a branch, the change in
   ``examples/change`` (two version bumps), as a pull request would;

then plans the branch against ``main`` exactly as the app would for a pull request and prints the
comment a reviewer would see. It goes on as a merge would: the passing change rolls out (staging,
then production) through the ``mlflow-alias`` target — it moves the registry alias named after each
environment, so no cluster is needed — while the blocked one is not deployed; it prints the rollout
history, rolls production back with ``/rollback``'s engine call, and prints the history again.
The rollout engine runs in-process with a simulated clock, so production's 10-minute verification
period passes in an instant.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
from modelherd.clock import rfc3339, utcnow

WORKDIR = Path(".modelherd-quickstart")
BRANCH = "bump-models"


@dataclass(frozen=True)
class SeedVersion:
    model: str
    metrics: dict[str, float]
    tags: dict[str, str]
    description: str


# Version numbers follow registration order per model: the first listed is v1, and so on.
SEED = (
    SeedVersion("fraud-detector", {"auc": 0.931, "latency_p99_ms": 31.0, "precision": 0.88},
                {"validation_status": "passed", "dataset": "tx-2026-09"}, "baseline gradient boosting"),
    SeedVersion("fraud-detector", {"auc": 0.947, "latency_p99_ms": 29.5, "precision": 0.91},
                {"validation_status": "passed", "dataset": "tx-2026-10"}, "retrained on October data"),
    SeedVersion("churn-model", {"f1": 0.74, "accuracy": 0.86}, {"validation_status": "passed"}, "v1"),
    SeedVersion("churn-model", {"f1": 0.76, "accuracy": 0.87}, {"validation_status": "passed"}, "v2"),
    SeedVersion("churn-model", {"f1": 0.78, "accuracy": 0.88}, {"validation_status": "passed"}, "serving now"),
    SeedVersion("churn-model", {"f1": 0.71, "accuracy": 0.84}, {}, "new features, not yet validated"),
    SeedVersion("search-reranker", {"ndcg_at_10": 0.41}, {"validation_status": "passed"}, "v1"),
    SeedVersion("search-reranker", {"ndcg_at_10": 0.44}, {"validation_status": "passed"}, "v2"),
)


def examples_dir() -> Path:
    for candidate in (Path.cwd() / "examples", Path(__file__).resolve().parents[1] / "examples"):
        if (candidate / "repo" / ".modelherd.yaml").exists():
            return candidate
    raise click.ClickException("examples/ not found: run the quick start from a modelherd checkout")


def seed_registry(tracking_uri: str) -> None:
    """Register the example versions through MLflow's own client."""
    from mlflow.tracking import MlflowClient
    from modelherd.registry.mlflow import register_version

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    for seed in SEED:
        register_version(client, seed.model, metrics=seed.metrics, tags=seed.tags, description=seed.description)


def _git(repo: Path, *args: str) -> str:
    env_args = ["-c", "user.name=modelherd quickstart", "-c", "user.email=quickstart@modelherd.invalid",
                "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *env_args, "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def build_repo(examples: Path, repo: Path) -> None:
    """``main`` holds examples/repo; the branch changes the files in examples/change."""
    shutil.copytree(examples / "repo", repo)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "Models serving today")
    _git(repo, "checkout", "-q", "-b", BRANCH)
    for changed in sorted((examples / "change").glob("*.yaml")):
        shutil.copy(changed, repo / "models" / changed.name)
    _git(repo, "commit", "-q", "-am", "Bump fraud-detector to v2 and churn-model to v4")
    _git(repo, "checkout", "-q", "main")


def run(workdir: Path = WORKDIR) -> int:
    from modelherd.comment import render_plan
    from modelherd.forges.localgit import LocalGit
    from modelherd.planner import PlanContext, build_plan
    from modelherd.registry.mlflow import MlflowRegistry
    from modelherd.settings import MlflowRegistryConfig, load_settings

    examples = examples_dir()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    tracking_uri = f"sqlite:///{(workdir / 'registry.db').resolve()}"
    click.echo(f"• seeding a local MLflow registry at {tracking_uri}", err=True)
    seed_registry(tracking_uri)
    repo = workdir / "repo"
    click.echo(f"• creating a git repository at {repo} with branch {BRANCH!r}", err=True)
    build_repo(examples, repo)

    settings = load_settings(str(examples / "settings.yaml"))
    registry = MlflowRegistry(MlflowRegistryConfig(tracking_uri=tracking_uri))
    ctx = PlanContext(registries={"mlflow": registry}, clusters=settings.cluster_facts(),
                      now=rfc3339(utcnow()),
                      pr={"number": 1, "author": "alice", "title": "Bump fraud-detector and churn-model",
                          "base_ref": "main", "head_sha": None, "labels": []})
    source = LocalGit(repo)
    plan = build_plan(source, source.resolve("main"), source.resolve(BRANCH), ctx)
    click.echo(f"• planning {BRANCH} against main (as `modelherd plan --repo {repo} --base main "
               f"--head {BRANCH} --settings examples/settings.yaml` would)\n", err=True)
    click.echo(render_plan(plan))
    rollout_demo(plan, workdir, registry, settings, source.resolve(BRANCH))
    return 0


class SimulatedClock:
    """Real time, moved forward by the demo instead of waiting (verification periods)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def run_to_end(store, rollout_ids: list[int], targets, registry, clock: SimulatedClock) -> None:
    """Advance rollouts until all are final, jumping the clock over each wait."""
    from datetime import timedelta

    from modelherd.rollout import advance

    pending = list(rollout_ids)
    for _ in range(10_000):
        pending = [i for i in pending if not store.get_rollout(i).final]
        if not pending:
            return
        for rollout_id in pending:
            decision = advance(rollout_id, store=store, targets=targets, registry=registry, clock=clock)
            if decision.next_check_in:
                clock.now += timedelta(seconds=decision.next_check_in)
    raise click.ClickException("the demo rollouts did not finish")


def show_history(store, title: str) -> None:
    from modelherd.history_cli import render_text
    from modelherd.rollout import history

    click.echo(f"\n### {title}\n\n```")
    for record in history(store, repo="quickstart/models"):
        for line in render_text(record):
            click.echo(line)
    click.echo("```")


def rollout_demo(plan, workdir: Path, registry, settings, sha: str) -> None:
    """As after a merge: roll out the passing change, show the history, roll production back."""
    from modelherd.promotion import start_for_plan
    from modelherd.rollout import rollback_to
    from modelherd.settings import ClusterConfig
    from modelherd.store import Store
    from modelherd.targets.factory import Targets

    for name, cluster in settings.clusters.items():       # no cluster here: every one follows the registry alias
        settings.clusters[name] = ClusterConfig(**{**cluster.model_dump(), "target": "mlflow-alias"})
    store = Store.from_url(f"sqlite:///{(workdir / 'modelherd.db').resolve()}")
    store.upgrade()
    clock = SimulatedClock()
    store.clock = clock
    targets = Targets(settings, {"mlflow": registry})
    click.echo("\n---\n\n## After the merge: the passing change rolls out (mlflow-alias target)\n")
    started = start_for_plan(plan, store=store, kind_of=targets.kind_of, enqueue=lambda _id: None,
                             repo="quickstart/models", actor="alice", pr=1, sha=sha, trigger="merge", clock=clock)
    for report, reason in started.skipped:
        click.echo(f"- not deployed: {report.change.name} in {report.change.environment}: {reason}")
    run_to_end(store, [rid for _, rid in started.rollouts], targets, {"mlflow": registry}, clock)
    for env in ("staging", "production"):
        served = registry.resolve("fraud-detector", alias=env)
        click.echo(f"- registry alias `{env}` of fraud-detector → v{served.version}")
    show_history(store, "modelherd history fraud-detector")

    [(report, _)] = [(r, i) for r, i in started.rollouts if r.change.environment == "production"]
    click.echo("\n## `/rollback production`: back to v1 at once\n")
    rollback_id = rollback_to(store, repo="quickstart/models", dep=report.change.head, version=report.current,
                              current=report.candidate, actor="alice", pr=1, sha=sha, target="mlflow-alias",
                              reason="/rollback by alice on #1", clock=clock)
    run_to_end(store, [rollback_id], targets, {"mlflow": registry}, clock)
    served = registry.resolve("fraud-detector", alias="production")
    rejected = registry.resolve("fraud-detector", version=2).tags.get("modelherd.rejected", "")
    click.echo(f"- registry alias `production` of fraud-detector → v{served.version}; "
               f"v2 is tagged `modelherd.rejected` ({rejected})")
    show_history(store, "modelherd history fraud-detector production")
