"""``make bench``: throughput and scaling figures, each as a ratio against a baseline run in the same
process, printed as JSON lines (one figure a line) so runs can be compared over time.

Absolute numbers depend on the machine; the ratios are what a change should not make worse.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml
from modelherd.clock import monotonic
from modelherd.loading import load_manifests
from modelherd.manifest import ModelDeployment
from modelherd.registry.memory import InMemoryRegistry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "repo" / "models" / "fraud-detector.yaml"
NOW = "2026-11-26T12:00:00Z"


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def rate(fn: Callable[[], object], seconds: float = 1.5) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    fn()
    calls, started = 0, monotonic()
    while (elapsed := monotonic() - started) < seconds:
        fn()
        calls += 1
    return calls / elapsed


def registry(names: list[str], versions: int = 2) -> InMemoryRegistry:
    reg = InMemoryRegistry()
    for name in names:
        for v in range(1, versions + 1):
            reg.add(name, v, metrics={"auc": 0.95 + v / 1000, "latency_p99_ms": 30.0},
                    tags={"validation_status": "passed"})
    return reg


def bench_validation() -> None:
    text = EXAMPLE.read_bytes()
    ours = rate(lambda: load_manifests("m.yaml", text))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    baseline = rate(lambda: ModelDeployment.model_validate(yaml.load(text, Loader=loader)))
    emit(figure="manifests_validated_per_s", value=round(ours), baseline="yaml.load(CSafeLoader) + model_validate",
         baseline_value=round(baseline), ratio=round(ours / baseline, 3))


def _policy_inputs(n: int) -> list[dict]:
    from modelherd.checks.policy import policy_input
    from modelherd.loading import load_manifests as load
    from modelherd.plan import changes
    from modelherd.repoconfig import DEFAULT

    [lm], _ = load("m.yaml", EXAMPLE.read_bytes())
    reg = registry(["fraud-detector"])
    out = []
    for change in changes([], [lm]):
        out.append(policy_input(change, environment_config=DEFAULT.environment(change.environment),
                                order=DEFAULT.order(change.environment),
                                cluster_facts={"name": change.deployment.cluster, "known": True, "onprem": False,
                                               "gpus": False, "provider": "aws"},
                                candidate=reg.resolve(change.name, version=2), current=None, pr=None, now=NOW))
    return (out * n)[:n]


def bench_policies() -> None:
    import regopy
    from modelherd.checks.policy import PolicyEngine, default_modules

    engine = PolicyEngine(default_modules(), {})
    [one] = _policy_inputs(1)
    single = rate(lambda: engine.evaluate_many([one]))
    batch = _policy_inputs(100)
    bulk = rate(lambda: engine.evaluate_many(batch)) * len(batch)

    interp = regopy.Interpreter()
    interp.add_module("trivial", "package trivial\nimport rego.v1\ndeny contains 1 if input.x == 2\n")
    interp.set_input(one)
    floor = rate(lambda: interp.query("data.trivial.deny"))
    emit(figure="policy_evaluations_per_s", mode="evaluate, one input", value=round(single),
         baseline="regopy one-rule policy, same input", baseline_value=round(floor), ratio=round(single / floor, 3))
    emit(figure="policy_evaluations_per_s", mode="evaluate_many, 100 inputs", value=round(bulk),
         baseline="evaluate, one input", baseline_value=round(single), ratio=round(bulk / single, 3))


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@invalid", "-C", str(repo), *args],
                   check=True, capture_output=True)


def _repo_with(n: int, root: Path) -> Path:
    """A repository of ``n`` manifests on main, and a branch changing one of them."""
    repo = root / f"repo-{n}"
    (repo / "models").mkdir(parents=True)
    template = EXAMPLE.read_text()
    shutil.copy(EXAMPLE.parents[1] / ".modelherd.yaml", repo / ".modelherd.yaml")
    for i in range(n):
        (repo / "models" / f"model-{i:05d}.yaml").write_text(
            template.replace("name: fraud-detector\n", f"name: model-{i:05d}\n", 1))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "checkout", "-qb", "change")
    path = repo / "models" / "model-00003.yaml"
    path.write_text(path.read_text().replace("version: 1}", "version: 2}"))
    _git(repo, "commit", "-qam", "bump one model")
    return repo


def _plan_seconds(repo: Path, runs: int = 7) -> float:
    from modelherd.forges.localgit import LocalGit
    from modelherd.planner import PlanContext, build_plan

    clusters = {name: {"name": name, "known": True, "onprem": name.startswith("onprem"), "gpus": False,
                       "provider": "onprem" if name.startswith("onprem") else "aws"}
                for name in ("onprem-a", "aws-eu-1")}
    ctx = PlanContext(registries={"mlflow": registry(["model-00003"])}, clusters=clusters, now=NOW)
    source = LocalGit(repo)
    base, head = source.resolve("main"), source.resolve("change")
    times = []
    for _ in range(runs):
        started = monotonic()
        plan = build_plan(source, base, head, ctx)
        times.append(monotonic() - started)
        assert len(plan.files) == 1
    return statistics.median(times)


def bench_plan_scaling() -> None:
    with tempfile.TemporaryDirectory(prefix="modelherd-bench-") as tmp:
        small, large = _repo_with(10, Path(tmp)), _repo_with(10_000, Path(tmp))
        _plan_seconds(small, runs=1)  # warm imports and the policy cache
        t_small, t_large = _plan_seconds(small), _plan_seconds(large)
    emit(figure="plan_seconds_one_change", repo_manifests=10_000, value=round(t_large, 4),
         baseline="same change in a repo of 10 manifests", baseline_value=round(t_small, 4),
         ratio=round(t_large / t_small, 3))


def main() -> None:
    bench_validation()
    bench_policies()
    bench_plan_scaling()


if __name__ == "__main__":
    main()
