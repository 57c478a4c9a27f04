"""``modelherd quickstart``: the product on embedded defaults, end to end, with nothing to set up.

It builds a throw-away workspace in ``.modelherd-quickstart/``:

1. a local MLflow registry (SQLite, in-process) seeded with the example models' versions, metrics,
   tags and lineage — one candidate that passes its gates and one that regresses;
2. a real git repository holding ``examples/repo`` on ``main`` and, on a branch, the change in
   ``examples/change`` (two version bumps), as a pull request would;

then plans the branch against ``main`` exactly as the app would for a pull request and prints the
comment a reviewer would see.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click

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
                      now=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                      pr={"number": 1, "author": "alice", "title": "Bump fraud-detector and churn-model",
                          "base_ref": "main", "head_sha": None, "labels": []})
    source = LocalGit(repo)
    plan = build_plan(source, source.resolve("main"), source.resolve(BRANCH), ctx)
    click.echo(f"• planning {BRANCH} against main (as `modelherd plan --repo {repo} --base main "
               f"--head {BRANCH} --settings examples/settings.yaml` would)\n", err=True)
    click.echo(render_plan(plan))
    return 0
