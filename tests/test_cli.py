"""The command line as a user runs it: a real MLflow server, a real git repository, a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelherd.registry.mlflow import register_version
from tests.gitrepo import EXAMPLES, branch, example_repo, read


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelherd", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=180, env=env)


@pytest.fixture
def seeded(mlflow_client, unique_name, tmp_path):
    """The example repo with model names made unique, their versions in the suite's MLflow server,
    and a branch bumping fraud-detector (passes) and churn-model (f1 regresses)."""
    repo = example_repo(tmp_path / "repo")
    names = {m: f"{unique_name}-{m}"[:60] for m in ("fraud-detector", "churn-model", "search-reranker")}
    for model, name in names.items():
        path = repo / "models" / f"{model}.yaml"
        path.write_text(read(repo, f"models/{model}.yaml").replace(f"name: {model}, version", f"name: {name}, version"))
    from tests.gitrepo import git
    git(repo, "commit", "-qam", "unique registry names")
    passed = {"validation_status": "passed"}
    register_version(mlflow_client, names["fraud-detector"], metrics={"auc": 0.931, "latency_p99_ms": 31}, tags=passed)
    register_version(mlflow_client, names["fraud-detector"], metrics={"auc": 0.947, "latency_p99_ms": 29}, tags=passed)
    for f1 in (0.70, 0.75, 0.78, 0.71):
        register_version(mlflow_client, names["churn-model"], metrics={"f1": f1, "accuracy": 0.86}, tags=passed)
    bumped = {}
    for model, old, new in (("fraud-detector", 1, 2), ("churn-model", 3, 4)):
        rel = f"models/{model}.yaml"
        bumped[rel] = read(repo, rel).replace(f"name: {names[model]}, version: {old}}}", f"name: {names[model]}, version: {new}}}")
    branch(repo, "bump", bumped)
    return repo, names


def settings_file(tmp_path: Path, tracking_uri: str) -> Path:
    text = (EXAMPLES / "settings.yaml").read_text().replace(
        "sqlite:///.modelherd-quickstart/registry.db", tracking_uri)
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


@pytest.mark.mlflow
def test_plan_shows_versions_metrics_and_policy_results(seeded, mlflow_server, tmp_path):
    repo, names = seeded
    done = run("plan", "--repo", str(repo), "--base", "main", "--head", "bump",
               "--settings", str(settings_file(tmp_path, mlflow_server)), "--now", "2026-11-26T12:00:00Z")
    assert done.returncode == 1, done.stderr         # churn-model fails its gate
    out = done.stdout
    assert out.startswith("<!-- modelherd:plan -->")
    assert "v1 → v2" in out and "v3 → v4" in out
    assert "f1 fell by 0.07" in out
    assert "1 approval in `production`" in out
    assert "storageUri: s3://models/" in out


@pytest.mark.mlflow
def test_plan_json(seeded, mlflow_server, tmp_path):
    repo, names = seeded
    done = run("plan", "--repo", str(repo), "--base", "main", "--head", "bump", "--format", "json",
               "--settings", str(settings_file(tmp_path, mlflow_server)))
    data = json.loads(done.stdout)
    assert data["conclusion"] == "failure" and data["has_changes"]
    verdicts = {(r["change"]["name"], r["change"]["environment"]): [m["verdict"] for m in r["metrics"]]
                for r in data["reports"]}
    assert verdicts[("fraud-detector", "production")] == ["pass", "pass"]
    assert "fail" in verdicts[("churn-model", "production")]


def test_registry_down_exits_2_with_a_clear_message(tmp_path):
    repo = example_repo(tmp_path / "repo")
    rel = "models/fraud-detector.yaml"
    branch(repo, "bump", {rel: read(repo, rel).replace("version: 1}", "version: 2}")})
    settings = settings_file(tmp_path, "http://127.0.0.1:9")
    done = run("plan", "--repo", str(repo), "--base", "main", "--head", "bump", "--settings", str(settings))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "registry could not be reached" in done.stdout and "127.0.0.1:9" in done.stdout


def test_plan_of_hostile_manifests_is_findings_not_a_traceback(tmp_path):
    """Each of these crashed `plan` (RecursionError, ValueError, RenderError) or passed a NaN gate."""
    repo = example_repo(tmp_path / "repo")
    cases = ("recursive-alias", "huge-int", "bad-gpu-type", "digit-name", "nan-gate", "inf-gate")
    corpus = Path(__file__).parent / "corpus" / "bad"
    branch(repo, "hostile", {f"models/{c}.yaml": (corpus / f"{c}.yaml").read_text() for c in cases})
    done = run("plan", "--repo", str(repo), "--base", "main", "--head", "hostile",
               "--settings", str(settings_file(tmp_path, "http://127.0.0.1:9")))
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stdout + done.stderr
    for case in cases:
        expect = (corpus / f"{case}.yaml").read_text().split("\n", 1)[0].split()[2]   # "# expect: L:C ..."
        assert f"models/{case}.yaml:{expect}" in done.stdout, (case, done.stdout)


def test_unknown_revision_is_one_line_on_stderr(tmp_path):
    repo = example_repo(tmp_path / "repo")
    done = run("plan", "--repo", str(repo), "--base", "main", "--head", "nope")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_validate_github_format_is_an_actions_annotation(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("apiVersion: modelherd.dev/v1\nkind: ModelDeployment\nmetadata: {name: a, ownr: []}\n")
    done = run("validate", str(bad), "--format", "github")
    assert done.returncode == 1
    assert f"::error file={bad},line=3,col=" in done.stdout


def test_validate_without_paths_uses_the_repository_config():
    done = run("validate", cwd=EXAMPLES / "repo")
    assert done.returncode == 0, done.stderr
    assert "3 manifest(s) in 3 file(s): valid" in done.stdout


def test_policy_test_runs_the_repositorys_rego_tests():
    done = run("policy", "test", str(EXAMPLES / "repo"))
    assert done.returncode == 0, done.stderr
    assert "2 passed, 0 failed" in done.stdout


def test_quickstart_shows_a_failing_and_a_passing_model(tmp_path):
    done = run("quickstart", "--workdir", str(tmp_path / "qs"), cwd=EXAMPLES.parent)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "### ❌ modelherd plan: blocked" in out
    assert "| ✅ | fraud-detector | production | update | v1 → v2 |" in out
    assert "| ❌ | churn-model | production | update | v3 → v4 |" in out
    # then, as after a merge: the passing change rolls out through the registry alias, and is rolled back
    assert "not deployed: churn-model in production: its plan is blocked" in out
    assert "registry alias `production` of fraud-detector → v2" in out
    assert "#2  fraud-detector/production  v1 -> v2  succeeded  merge by alice" in out
    assert "registry alias `production` of fraud-detector → v1; v2 is tagged `modelherd.rejected`" in out
    assert "#3  fraud-detector/production  v2 -> v1  succeeded  rollback by alice" in out
