"""The plan comment: what a reviewer sees, escaping of what users wrote, and the size limit."""

from __future__ import annotations

import re

import pytest

from modelherd.checks import CheckResult, Conclusion, Finding, Position, Severity
from modelherd.comment import MARKER, PlanLinks, decimals_for, fmt_number, render_plan
from modelherd.escape import ZWSP
from modelherd.manifest import Deployment, Gates, ModelRef, Rollout, Serving
from modelherd.plan import Action, ApprovalRequirement, Change, ChangeReport, MetricComparison, Plan
from modelherd.registry import ModelVersionInfo

BASE = "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39"
HEAD = "8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b"
HOSTILE_DESCRIPTION = "Ping @channel <script>alert(1)</script> | pipes | and **x** [x](javascript:alert(1))"


def deployment(name="fraud-scorer", env="production", version=7, alias=None, canary=None, description=None):
    return Deployment(
        name=name, environment=env, cluster="prod-eu", namespace="ml",
        model=ModelRef(name=name, version=None if alias else version, alias=alias),
        serving=Serving(runtime="kserve", format="sklearn"),
        rollout=Rollout(canary=canary, verify_for="10m") if canary else Rollout(),
        gates=Gates(), owners=("@acme/risk-ml",), labels={}, description=description)


def version(name="fraud-scorer", v="8", **kw):
    return ModelVersionInfo(name, v, kw.pop("status", "READY"), f"s3://models/{name}/{v}", **kw)


DIFF = """--- models/fraud.yaml (production, base)
+++ models/fraud.yaml (production, head)
@@ -5,3 +5,3 @@
   predictor:
-      storageUri: s3://models/fraud/7
+      storageUri: s3://models/fraud/8
"""


def failing_report(description=HOSTILE_DESCRIPTION):
    change = Change("fraud-scorer", "production", Action.UPDATE, deployment(version=7),
                    deployment(version=8, canary=[10, 50, 100], description=description),
                    "models/fraud.yaml", "models/fraud.yaml", ("model.version", "rollout.canary"))
    return ChangeReport(
        change,
        candidate=version(v="8", run_id="abc123", run_name="nightly-42", source="runs:/abc123/model",
                          created_at="2025-05-01T10:02:00Z", registered_by="alice",
                          tags={"dataset": "payments-2025-04"}, metrics={"auc": 0.9412, "f1": 0.811}),
        current=version(v="7", metrics={"auc": 0.9501, "f1": 0.805}),
        diff=DIFF,
        rendered_after=[{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                         "metadata": {"name": "fraud-scorer"}}],
        metrics=[MetricComparison("auc", "maximize", 0.9412, 0.9501, -0.0089, "regression ≤ 0.005", "fail",
                                  "enforce", "auc fell by 0.0089")],
        findings=[
            Finding("metrics", Severity.ERROR, "auc regressed", "models/fraud.yaml", Position(14, 9)),
            Finding("policy", Severity.ERROR, "production needs a canary of at least 3 steps",
                    "models/fraud.yaml", Position(22, 7), hint="add a 25% step"),
            Finding("schema", Severity.WARNING, "unknown label @ops", "models/fraud.yaml", Position(3, 5)),
        ],
        approvals=[ApprovalRequirement("production", 2, "modelherd.yaml: environment production",
                                       teams=("@acme/risk-ml",))],
    )


def passing_report(name="churn", env="staging"):
    change = Change(name, env, Action.UPDATE, deployment(name, env, alias="champion"),
                    deployment(name, env, alias="champion"), f"models/{name}.yaml", f"models/{name}.yaml",
                    ("serving.replicas.max",))
    return ChangeReport(
        change, candidate=version(name, "12", metrics={"accuracy": 0.91}),
        current=version(name, "11", metrics={"accuracy": 0.90}),
        diff="--- a\n+++ b\n@@ -1 +1 @@\n-maxReplicas: 3\n+maxReplicas: 5\n",
        metrics=[MetricComparison("accuracy", "maximize", 0.91, 0.90, 0.01, "≥ 0.85", "pass", "enforce")])


def checks(metrics=Conclusion.SUCCESS, policy=Conclusion.SUCCESS):
    return {"schema": CheckResult("schema", Conclusion.SUCCESS, "2 manifest file(s) valid"),
            "policy": CheckResult("policy", policy, "policy summary"),
            "metrics": CheckResult("metrics", metrics, "metrics summary")}


def plan_of(reports, conclusion=Conclusion.SUCCESS, **kw):
    return Plan(BASE, HEAD, reports, kw.pop("checks", None) or checks(conclusion, conclusion),
                kw.pop("files", ["models/fraud.yaml"]), **kw)


def table_rows(text):
    """The summary table's rows (the first table in the comment)."""
    table = text[text.index("| | Model |"):].split("\n\n", 1)[0]
    return table.splitlines()[2:]


def visible(text):
    return text.replace(ZWSP, "")


# --- layout -----------------------------------------------------------------------------------------


def test_first_visible_line_is_the_verdict_with_counts():
    text = render_plan(plan_of([passing_report(), failing_report()], Conclusion.FAILURE))
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == MARKER
    assert lines[1] == "### ❌ modelherd plan: blocked"
    assert "**2 changes** (2 updated)" in lines[2] and "**1 blocked**" in lines[2]
    assert "2 errors, 1 warning" in lines[2] and "approvals needed: production (2)" in lines[2]


def test_a_plan_that_cannot_deploy_says_so_first():
    reason = "its base `lax` is not the default branch `main`"
    text = render_plan(plan_of([passing_report()]), cannot_deploy=reason)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[1] == "### 🚫 modelherd plan: planned, but this pull request cannot deploy"
    assert lines[3] == f"🚫 **This pull request cannot deploy**: {reason}"
    assert text.index(reason) < text.index("| | Model |")
    blocked = render_plan(plan_of([passing_report(), failing_report()], Conclusion.FAILURE), cannot_deploy=reason)
    assert "### ❌ modelherd plan: blocked" in blocked and reason in blocked     # what is wrong stays first


def test_summary_table_comes_first_with_one_row_per_change():
    text = render_plan(plan_of([passing_report(), failing_report()], Conclusion.FAILURE))
    assert text.index("| | Model | Environment |") < text.index("#### ")
    churn, fraud = table_rows(text)
    assert churn.split(" | ")[1:5] == ["churn", "staging", "update", "`@champion` (v11) → `@champion` (v12)"]
    assert "| ✅ |" in churn and "| ✅ ✅ ✅ |" in churn and churn.endswith("| — |")
    assert fraud.startswith("| ❌ | fraud-scorer | production | update | v7 → v8 | canary 10→50→100 every 10m |")
    assert "| ⚠️ ❌ ❌ |" in fraud                     # schema warning, policy error, metrics failure
    assert visible(fraud).endswith("| 2 from @acme/risk-ml |")


def test_every_table_row_has_the_same_number_of_cells_despite_hostile_text():
    report = failing_report()
    report.approvals = [ApprovalRequirement("production", 1, "r", users=("a|b", "c\nd"))]
    text = render_plan(plan_of([report, passing_report()], Conclusion.FAILURE))
    for row in table_rows(text):
        assert len(re.findall(r"(?<!\\)\|", row)) == 9, row


def test_metrics_side_by_side_with_signed_delta_bounds_and_verdict():
    text = render_plan(plan_of([failing_report()], Conclusion.FAILURE))
    assert "| Metric | Goal | Candidate v8 | Serving v7 | Δ | Gate | Result |" in text
    assert ("| `auc` | ↑ higher | 0.9412 | 0.9501 | −0.0089 (−0.94%) | regression ≤ 0.005 "
            "| ❌ fail: auc fell by 0.0089 |") in text
    assert "<details><summary>Other metrics (1, not gated)</summary>" in text
    assert "| `f1` | 0.811 | 0.805 | +0.006 (+0.75%) |" in text


def test_passing_metric_and_alias_versions():
    text = render_plan(plan_of([passing_report()]))
    assert "| `accuracy` | ↑ higher | 0.91 | 0.90 | +0.01 (+1.11%) | ≥ 0.85 | ✅ pass |" in text
    assert "### ✅ modelherd plan: ready to deploy" in text


def test_warn_mode_failure_is_a_warning_not_a_block():
    report = passing_report()
    report.metrics = [MetricComparison("accuracy", "maximize", 0.80, 0.90, -0.10, "≥ 0.85", "fail", "warn")]
    text = render_plan(plan_of([report]))
    assert "### ⚠️ modelherd plan: ready to deploy, with warnings" in text
    assert "⚠️ fail (warn only)" in text


@pytest.mark.parametrize("values, expected", [
    ((0.9412, 0.9501, -0.0089), 4), ((41.0, 43.5, -2.5), 1), ((120, 100, 20), 0),
    ((0.95, 0.95, 0.00001), 5), ((None, 0.9, None), 1), ((1234.5678, 1200.0, 34.5678), 0),
])
def test_decimals_are_sensible(values, expected):
    assert decimals_for(*values) == expected


def test_numbers_are_signed_with_a_real_minus_and_spell_out_specials():
    assert fmt_number(-0.0089, 4, signed=True) == "−0.0089"
    assert fmt_number(0.01, 2, signed=True) == "+0.01"
    assert fmt_number(0.0, 2, signed=True) == "±0.00"
    assert fmt_number(float("nan"), 2) == "NaN" and fmt_number(float("-inf"), 2) == "−∞"
    assert fmt_number(None, 2) == "—"


def test_lineage_with_links():
    links = PlanLinks(run=lambda i: f"https://mlflow.example/#/runs/{i.run_id}",
                      version=lambda i: f"https://mlflow.example/models/{i.name}/versions/{i.version}",
                      check_run="https://github.example/acme/models/runs/9",
                      commit=lambda ref: f"https://github.example/acme/models/commit/{ref}")
    text = render_plan(plan_of([failing_report()], Conclusion.FAILURE), links=links)
    assert "**Candidate:** [fraud-scorer v8](https://mlflow.example/models/fraud-scorer/versions/8)" in text
    assert "training run [nightly-42](https://mlflow.example/#/runs/abc123) `abc123`" in text
    assert "source `runs:/abc123/model`" in text and "registered by alice on 2025-05-01 10:02 UTC" in text
    assert "tags: `dataset=payments-2025-04`" in text
    assert f"base [3f2a9c1](https://github.example/acme/models/commit/{BASE})" in text
    assert "[check run](https://github.example/acme/models/runs/9)" in text


def test_lineage_without_links_has_no_links():
    text = render_plan(plan_of([failing_report()], Conclusion.FAILURE))
    assert "training run nightly-42 `abc123`" in text
    assert "](http" not in text


def test_unready_candidate_is_flagged():
    report = passing_report()
    report.candidate = version("churn", "12", status="PENDING_REGISTRATION")
    assert "⚠️ status `PENDING_REGISTRATION`" in render_plan(plan_of([report]))


def test_findings_with_file_line_column_and_hints():
    text = render_plan(plan_of([failing_report()], Conclusion.FAILURE))
    assert ("- ❌ **policy** `models/fraud.yaml:22:7` production needs a canary of at least 3 steps "
            "_(hint: add a 25% step)_") in text
    assert "- ⚠️ **schema** `models/fraud.yaml:3:5` unknown label @" in text
    assert text.index("❌ **policy**") < text.index("⚠️ **schema**")           # errors first
    assert "auc regressed" not in text          # a gate finding is shown by its metrics row instead


def test_required_approvals():
    text = visible(render_plan(plan_of([failing_report()], Conclusion.FAILURE)))
    assert "- 2 approvals in `production` from @acme/risk-ml — modelherd.yaml: environment production" in text


def test_diff_and_objects_are_folded_in_fenced_blocks():
    text = render_plan(plan_of([failing_report()], Conclusion.FAILURE))
    assert "<details><summary>Diff of the rendered objects (+1 −1)</summary>\n\n```diff\n--- models/fraud.yaml" in text
    assert "+      storageUri: s3://models/fraud/8\n```\n\n</details>" in text
    assert "<details><summary>Rendered objects after the change: InferenceService/fraud-scorer</summary>" in text
    assert "```yaml\napiVersion: serving.kserve.io/v1beta1\nkind: InferenceService" in text


def test_create_and_delete_versions():
    new = ChangeReport(Change("spam", "staging", Action.CREATE, None, deployment("spam", "staging", 3),
                              "models/spam.yaml"), candidate=version("spam", "3"))
    gone = ChangeReport(Change("old", "staging", Action.DELETE, deployment("old", "staging", 5), None,
                               "models/old.yaml", "models/old.yaml"), current=version("old", "5"))
    text = render_plan(plan_of([new, gone]))
    new_row, gone_row = table_rows(text)
    assert "| create | v3 (new) | direct |" in new_row
    assert "| delete | v5 (removed) | — |" in gone_row
    assert "**2 changes** (1 new, 1 deleted)" in text


def test_footer_has_short_refs_and_commands():
    text = render_plan(plan_of([passing_report()]))
    last = text.rstrip().splitlines()[-1]
    assert "base `3f2a9c1` · head `8c7b6a5`" in last
    for command in ("`/plan`", "`/deploy <env>`", "`/rollback <env>`", "`/unlock`", "`/help`"):
        assert command in last


def test_branch_refs_are_not_shortened():
    plan = plan_of([passing_report()])
    plan.base_ref, plan.head_ref = "main", "feature/x"
    assert "base `main` · head `feature/x`" in render_plan(plan)


# --- states -------------------------------------------------------------------------------------------


def test_no_changes_to_deploy():
    unchanged = ChangeReport(Change("churn", "staging", Action.NOOP, deployment("churn", "staging"),
                                    deployment("churn", "staging"), "models/churn.yaml", "models/churn.yaml"))
    plan = plan_of([unchanged], checks={n: CheckResult(n, Conclusion.SUCCESS, "ok") for n in ("schema", "policy")},
                   files=["models/churn.yaml"])
    assert not plan.has_changes
    text = render_plan(plan)
    assert "### ✅ modelherd plan: no changes to deploy" in text
    assert "1 manifest file touched; no model deployment differs from the base." in text
    assert "| Model |" not in text and "#### " not in text
    assert text.count(MARKER) == 1


def test_no_changes_but_a_broken_file_is_still_blocked():
    plan = Plan(BASE, HEAD, [], {"schema": CheckResult("schema", Conclusion.FAILURE, "1 error")},
                ["models/x.yaml"], [Finding("schema", Severity.ERROR, "replicas.max is below replicas.min",
                                            "models/x.yaml", Position(9, 3))])
    text = render_plan(plan)
    assert "### ❌ modelherd plan: blocked" in text
    assert "- ❌ **schema** `models/x.yaml:9:3` replicas.max is below replicas.min" in text


def test_registry_error():
    report = passing_report()
    report.registry_error = "mlflow.acme.com: connection refused"
    report.metrics = []
    text = render_plan(plan_of([report], checks=checks(metrics=Conclusion.ERROR)))
    assert "### 🛑 modelherd plan: registry error: plan incomplete, comment `/plan` to retry" in text
    assert "🛑 **Registry error:** mlflow.acme.com: connection refused." in text
    assert table_rows(text)[0].startswith("| 🛑 | churn |")
    assert "| ✅ ✅ 🛑 |" in table_rows(text)[0]


# --- escaping ----------------------------------------------------------------------------------------


def test_manifest_description_is_escaped():
    text = render_plan(plan_of([failing_report()], Conclusion.FAILURE))
    line = next(l for l in text.splitlines() if "Ping" in l)
    assert line == (f"> Ping @{ZWSP}channel &lt;script&gt;alert(1)&lt;/script&gt; \\| pipes \\| and \\*\\*x\\*\\* "
                    "\\[x\\](javascript:alert(1))")


def test_no_user_text_can_mention_notify_or_inject_html():
    report = failing_report(description="@here <img src=x onerror=alert(1)> <details> #12 ![i](x)")
    report.candidate = version(v="8", run_name="@alice <b>", registered_by="@bob", tags={"@t": "<x>"},
                               description="<iframe> @carol")
    report.findings = [Finding("policy", Severity.ERROR, "@dave says <no>", "a|b.yaml", Position(1, 1),
                               hint="@erin")]
    text = render_plan(plan_of([report], Conclusion.FAILURE))
    outside_code = re.sub(r"```.*?```|`[^`\n]*`", "", text, flags=re.S)
    assert not re.search(r"@[A-Za-z0-9]", outside_code)
    for tag in ("<img", "<details> #", "<iframe", "<b>", "<x>", "<no>"):
        assert tag not in outside_code
    assert "#12" not in text


def test_marker_appears_exactly_once_even_if_content_holds_it():
    report = failing_report(description=MARKER)
    report.diff = DIFF + f"+  description: {MARKER}\n"
    text = render_plan(plan_of([report], Conclusion.FAILURE))
    assert text.count(MARKER) == 1 and text.startswith(MARKER)


def test_diff_with_backticks_cannot_escape_its_fence():
    report = failing_report()
    report.diff = "--- a\n+++ b\n+````\n+</details>\n+# heading\n"
    text = render_plan(plan_of([report], Conclusion.FAILURE))
    assert "`````diff\n--- a\n+++ b\n+````\n+</details>\n+# heading\n`````" in text


# --- the limit ---------------------------------------------------------------------------------------


def many_reports(n, diff_lines=0):
    reports = []
    for i in range(n):
        r = failing_report() if i % 7 == 0 else passing_report(f"model-{i:03d}", "production")
        if diff_lines:
            r.diff = "--- a\n+++ b\n" + "".join(f"+line {j} of a large rendered object\n" for j in range(diff_lines))
        reports.append(r)
    return reports


def test_huge_diff_is_cut_with_a_note_and_the_rest_survives():
    report = failing_report()
    report.diff = "--- a\n+++ b\n" + "".join(f"+{'x' * 80} {j}\n" for j in range(5000))
    text = render_plan(plan_of([report], Conclusion.FAILURE), limit=20_000)
    assert len(text) <= 20_000
    assert "Diff cut:" in text and "run `modelherd plan` locally" in text
    assert "| `auc` | ↑ higher |" in text and "**Findings**" in text
    assert text.rstrip().splitlines()[-1].startswith("<sub>base `3f2a9c1`")


def test_objects_go_before_diffs():
    report = failing_report()
    report.diff = "--- a\n+++ b\n" + "+x\n" * 2000
    report.rendered_after = [{"kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"k": "v" * 30_000}}]
    text = render_plan(plan_of([report], Conclusion.FAILURE), limit=20_000)
    assert "Rendered objects cut: " in text or "Rendered objects omitted: " in text
    assert "+x\n" * 2000 in text                      # the diff is whole


@pytest.mark.parametrize("limit", [65536, 30000, 8000, 2000, 512])
def test_500_changes_with_huge_diffs_stay_under_the_limit(limit):
    plan = plan_of(many_reports(500, diff_lines=300), Conclusion.FAILURE)
    text = render_plan(plan, limit=limit)
    assert len(text) <= limit
    assert text.startswith(MARKER) and text.count(MARKER) == 1
    assert "### ❌ modelherd plan: blocked" in text
    if limit >= 2000:
        assert "| | Model | Environment |" in text
        rows = table_rows(text)
        assert len(rows) == 500 or re.search(rf"… and {500 - len(rows)} more \(", text)


def test_summary_keeps_blocked_rows_when_rows_must_go():
    plan = plan_of(many_reports(500, diff_lines=50), Conclusion.FAILURE)
    text = render_plan(plan, limit=30_000)
    rows = table_rows(text)
    assert 0 < len(rows) < 500
    blocked = sum(1 for r in many_reports(500) if r.change.name == "fraud-scorer")
    assert sum(1 for r in rows if r.startswith("| ❌ |")) == blocked
    assert re.search(r"… and \d+ more \(\d+ ✅\) not shown", text)


def test_details_are_dropped_passing_first():
    reports = many_reports(40, diff_lines=20)
    text = render_plan(plan_of(reports, Conclusion.FAILURE), limit=12_000)
    assert len(text) <= 12_000
    assert len(table_rows(text)) >= 40                 # every row survives
    assert "#### ❌ fraud-scorer" in text               # the blocked change keeps (some) detail
    assert "omitted to fit the comment limit" in text or "Details shortened" in text


def test_fits_without_change_when_under_the_limit():
    plan = plan_of([failing_report()], Conclusion.FAILURE)
    full = render_plan(plan, limit=10**9)
    assert render_plan(plan, limit=len(full)) == full
    assert len(render_plan(plan, limit=len(full) - 1)) <= len(full) - 1


def test_limit_below_the_minimum_is_refused():
    with pytest.raises(ValueError):
        render_plan(plan_of([passing_report()]), limit=100)
