"""The metric gate: pure decisions over hand-built registry records."""

from __future__ import annotations

import pytest

from modelherd.checks import Position, Severity
from modelherd.checks.metrics import (
    OtherMetric,
    bounds_text,
    evaluate_gates,
    gate_findings,
    other_metrics,
    readiness_finding,
    summary,
)
from modelherd.manifest import Gates
from modelherd.registry import ModelVersionInfo


def version(n: int, status: str = "READY", **metrics: float) -> ModelVersionInfo:
    return ModelVersionInfo(name="fraud", version=str(n), status=status,
                            storage_uri=f"s3://models/fraud/{n}", metrics=metrics)


def gates(**metrics: dict) -> Gates:
    return Gates.model_validate({"metrics": metrics})


def one(gate: dict, candidate: ModelVersionInfo | None, current: ModelVersionInfo | None = None,
        metric: str = "auc"):
    [comparison] = evaluate_gates(gates(**{metric: gate}), candidate, current)
    return comparison


LINES = {("spec", "gates", "metrics", "auc"): Position(21, 7),
         ("spec", "gates", "metrics", "latency_p95"): Position(24, 7),
         ("spec", "model"): Position(8, 3)}


def findings(comparisons):
    return gate_findings(comparisons, file="models/fraud.yaml", model="fraud", environment="prod",
                         locate=LINES.get)


# -- absolute bounds --------------------------------------------------------------------------------


def test_min_passes_and_fails():
    assert one({"min": 0.9}, version(8, auc=0.93)).verdict == "pass"
    c = one({"min": 0.95}, version(8, auc=0.93))
    assert (c.verdict, c.goal, c.bounds, c.mode) == ("fail", "maximize", "≥ 0.95", "enforce")
    assert c.reason == "auc 0.93 is below the minimum 0.95"


def test_max_for_a_minimized_metric():
    assert one({"max": 40}, version(8, latency_p95=38.0), metric="latency_p95").verdict == "pass"
    c = one({"max": 40}, version(8, latency_p95=48.0), metric="latency_p95")
    assert (c.verdict, c.goal) == ("fail", "minimize")
    assert c.reason == "latency_p95 48 is above the maximum 40"


def test_a_value_on_the_bound_passes():
    assert one({"min": 0.95}, version(8, auc=0.95)).verdict == "pass"
    assert one({"goal": "maximize", "min": 0.3, "max": 0.7}, version(8, auc=0.7)).verdict == "pass"


def test_min_and_max_together():
    c = one({"goal": "minimize", "min": 0.1, "max": 0.5}, version(8, auc=0.05))
    assert c.verdict == "fail" and "below the minimum 0.1" in c.reason
    assert c.bounds == "≥ 0.1, ≤ 0.5"


# -- regression against the version serving now ----------------------------------------------------


@pytest.mark.parametrize("candidate, verdict", [(0.945, "pass"), (0.94, "pass"), (0.93, "fail"), (0.99, "pass")])
def test_absolute_regression_maximize(candidate, verdict):
    c = one({"goal": "maximize", "max_regression": 0.01}, version(8, auc=candidate), version(7, auc=0.95))
    assert c.verdict == verdict
    assert c.current == 0.95 and c.delta == pytest.approx(candidate - 0.95)


def test_absolute_regression_message():
    c = one({"goal": "maximize", "max_regression": 0.01}, version(8, auc=0.93), version(7, auc=0.95))
    assert c.reason == "auc fell by 0.02 (2.1%) from 0.95 (version 7) to 0.93; at most 0.01 allowed"
    assert c.bounds == "regression ≤ 0.01"


@pytest.mark.parametrize("candidate, verdict", [(41.0, "pass"), (42.0, "pass"), (43.0, "fail"), (30.0, "pass")])
def test_relative_regression_minimize(candidate, verdict):
    c = one({"goal": "minimize", "max_regression": "5%"}, version(8, latency_p95=candidate),
            version(7, latency_p95=40.0), metric="latency_p95")
    assert c.verdict == verdict
    assert c.delta == pytest.approx(candidate - 40.0)


def test_relative_regression_message_and_bounds():
    c = one({"goal": "minimize", "max_regression": "5%"}, version(8, latency_p95=44.0),
            version(7, latency_p95=40.0), metric="latency_p95")
    assert c.reason == "latency_p95 rose by 4 (10.0%) from 40 (version 7) to 44; at most 5% allowed"
    assert c.bounds == "regression ≤ 5%"


@pytest.mark.parametrize("candidate, verdict", [(0.86, "pass"), (0.855, "pass"), (0.85, "fail")])
def test_relative_regression_maximize(candidate, verdict):
    # 5% of 0.9 is 0.045: 0.855 is the lowest value allowed
    c = one({"goal": "maximize", "max_regression": "5%"}, version(8, auc=candidate), version(7, auc=0.9))
    assert c.verdict == verdict


@pytest.mark.parametrize("candidate, verdict", [(40.5, "pass"), (41.0, "pass"), (41.5, "fail")])
def test_absolute_regression_minimize(candidate, verdict):
    c = one({"goal": "minimize", "max_regression": 1}, version(8, latency_p95=candidate),
            version(7, latency_p95=40.0), metric="latency_p95")
    assert c.verdict == verdict


def test_no_version_serving_now_leaves_regression_unchecked():
    c = one({"goal": "maximize", "max_regression": 0.01}, version(8, auc=0.5), None)
    assert (c.verdict, c.current, c.delta) == ("n/a", None, None)
    assert c.reason == "auc: no version serves now, regression not checked"
    [f] = findings([c])
    assert f.severity is Severity.NOTICE and f.position == Position(21, 7)


def test_absolute_bound_still_checked_without_a_current_version():
    c = one({"min": 0.9, "max_regression": 0.01}, version(8, auc=0.95), None)
    assert c.verdict == "pass" and c.reason.endswith("regression not checked")
    assert one({"min": 0.9, "max_regression": 0.01}, version(8, auc=0.85), None).verdict == "fail"


def test_current_version_without_the_metric_leaves_regression_unchecked():
    c = one({"goal": "maximize", "max_regression": 0.01}, version(8, auc=0.9), version(7, f1=0.8))
    assert c.verdict == "n/a"
    assert c.reason == "auc not logged for version 7 (serving now), regression not checked"


def test_both_absolute_and_regression_failures_are_reported():
    c = one({"min": 0.95, "max_regression": 0.01}, version(8, auc=0.9), version(7, auc=0.96))
    assert c.verdict == "fail"
    assert "below the minimum 0.95" in c.reason and "fell by 0.06" in c.reason


# -- missing, warn mode, no candidate, no bound -----------------------------------------------------


def test_missing_metric_fails_an_enforce_gate():
    c = one({"min": 0.9}, version(8, f1=0.8), version(7, auc=0.9))
    assert (c.verdict, c.candidate, c.current, c.delta) == ("missing", None, 0.9, None)
    [f] = findings([c])
    assert f.severity is Severity.ERROR
    assert f.message == "metric auc not logged for version 8"
    assert f.one_line().startswith("models/fraud.yaml:21:7: error: metric auc not logged for version 8")


@pytest.mark.parametrize("gate", [{"min": 0.9}, {"max": 0.99, "goal": "maximize"},
                                  {"goal": "maximize", "max_regression": 0.01}])
def test_a_nan_metric_fails_the_gate_with_a_reason(gate):
    """MLflow stores NaN (a metric computed over nothing): no comparison with it is true, so it used to pass."""
    c = one(gate, version(8, auc=float("nan")), version(7, auc=0.9))
    assert c.verdict == "fail"
    assert c.reason == "auc is NaN for version 8: not a number, so the gate cannot pass"
    [finding] = findings([c])
    assert finding.severity is Severity.ERROR and "log a real value" in finding.hint
    warn = one({**gate, "mode": "warn"}, version(8, auc=float("nan")), version(7, auc=0.9))
    assert warn.verdict == "warn"


def test_a_nan_metric_of_the_version_serving_now_leaves_the_regression_unchecked():
    c = one({"min": 0.9, "max_regression": 0.01}, version(8, auc=0.93), version(7, auc=float("nan")))
    assert (c.verdict, c.delta) == ("pass", None)
    assert c.reason == "auc is NaN for version 7 (serving now), regression not checked"
    [finding] = findings([c])
    assert finding.severity is Severity.NOTICE


def test_warn_mode_reports_warnings_not_errors():
    broken = one({"min": 0.95, "mode": "warn"}, version(8, auc=0.9))
    missing = one({"min": 0.95, "mode": "warn"}, version(8))
    assert (broken.verdict, broken.mode) == ("warn", "warn")
    assert missing.verdict == "missing"
    assert [f.severity for f in findings([broken, missing])] == [Severity.WARNING, Severity.WARNING]


def test_no_candidate_version_is_not_applicable_and_says_nothing():
    c = one({"min": 0.9}, None, version(7, auc=0.9))
    assert (c.verdict, c.reason, c.current) == ("n/a", "no candidate version", 0.9)
    assert findings([c]) == []


def test_a_gate_without_bounds_only_shows_the_metric():
    c = one({"goal": "maximize"}, version(8, auc=0.9), version(7, auc=0.8))
    assert (c.verdict, c.bounds) == ("n/a", "—")
    assert c.delta == pytest.approx(0.1)
    assert findings([c]) == []


def test_passing_gates_give_no_findings_and_keep_manifest_order():
    g = gates(latency_p95={"max": 40}, auc={"min": 0.9})
    comparisons = evaluate_gates(g, version(8, auc=0.93, latency_p95=30.0), version(7, auc=0.92))
    assert [c.metric for c in comparisons] == ["latency_p95", "auc"]
    assert findings(comparisons) == []
    assert summary(comparisons) == "2 gates: 2 pass"


def test_findings_carry_file_position_model_environment_and_hint():
    g = gates(auc={"min": 0.95}, latency_p95={"max": 40})
    [auc, latency] = findings(evaluate_gates(g, version(8, auc=0.9, latency_p95=50.0), None))
    assert (auc.check, auc.file, auc.model, auc.environment) == ("metrics", "models/fraud.yaml", "fraud", "prod")
    assert auc.position == Position(21, 7) and latency.position == Position(24, 7)
    assert "mode: warn" in auc.hint


def test_summary_counts_verdicts():
    g = gates(auc={"min": 0.95}, f1={"min": 0.5, "mode": "warn"}, loss={"max": 1}, p={"goal": "maximize"})
    assert summary(evaluate_gates(g, version(8, auc=0.9, f1=0.4, p=1.0), None)) == \
        "4 gates: 1 warn, 1 fail, 1 missing, 1 n/a"
    assert summary([]) == "no metric gates"


def test_bounds_text():
    assert bounds_text(gates(auc={"min": 0.9, "max_regression": " 5% "}).metrics["auc"]) == "≥ 0.9, regression ≤ 5%"


# -- readiness -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["PENDING_REGISTRATION", "FAILED_REGISTRATION"])
def test_require_ready_blocks_a_version_not_ready(status):
    f = readiness_finding(Gates(), version(8, status), file="models/fraud.yaml", model="fraud",
                          environment="prod", locate=LINES.get)
    assert f is not None and f.severity is Severity.ERROR
    assert f.message == f"fraud version 8 is {status} in the registry, not READY"
    assert f.position == Position(8, 3)  # require_ready is not written: the model line


def test_not_required_ready_is_a_warning_and_ready_is_fine():
    kwargs = dict(file="f.yaml", model="fraud", environment="prod", locate=LINES.get)
    relaxed = Gates(require_ready=False)
    assert readiness_finding(relaxed, version(8, "PENDING_REGISTRATION"), **kwargs).severity is Severity.WARNING
    assert readiness_finding(Gates(), version(8), **kwargs) is None
    assert readiness_finding(Gates(), None, **kwargs) is None


# -- the side-by-side table ------------------------------------------------------------------------------


def test_other_metrics_is_the_union_without_gated_ones():
    rows = other_metrics(version(8, auc=0.9, f1=0.8, loss=0.2), version(7, auc=0.88, recall=0.7),
                         exclude=["auc"])
    assert rows == [OtherMetric("f1", 0.8, None, None), OtherMetric("loss", 0.2, None, None),
                    OtherMetric("recall", None, 0.7, None)]
    [auc] = other_metrics(version(8, auc=0.9), version(7, auc=0.88))
    assert auc.delta == pytest.approx(0.02)
    assert other_metrics(None, None) == []
