"""GitHub API calls per PR event, and the time from webhook to the plan comment under API latency.

Both run the whole GitHub App in this process through the test suite's harness
(:class:`tests.github_app.GitHubApp`: signed webhook → Flask intake → SQLite store and queue →
worker → GitHub) against the fake GitHub (:class:`tests.fakes.github.FakeGitHub`: real HTTP on
127.0.0.1, every request and response validated against GitHub's OpenAPI description).

The repository: the example repository plus 50 manifests of one model (``models/fleet/*.yaml``) on
``main``; a PR bumps the model version in 1 or in all 50 of them.

Before each PR, ``main`` gets a new commit (outside the manifests), so no event finds its base revision
in the worker's caches (contents at a SHA are cached per process): every event reads what a PR against
a freshly moved ``main`` needs.

* :func:`bench_api_calls` — reads, writes, and writes without token minting, for one
  ``pull_request.opened`` changing 1 and 50 manifests (after a first event of the installation, which
  mints the installation token and is reported on its own).  Writes should not grow with manifests;
  nor should reads much: from 10 uncached files at a commit the adapter reads the commit's archive
  (the API's tarball redirect and the download it points to, both counted as reads: ``archive_reads``).
* :func:`bench_comment_latency` — ``fake.latency_ms = 50`` (a sleep after each call is served,
  before the answer leaves) against 0 ms in the same run: milliseconds from handing the signed
  delivery to the intake to the moment the fake applied the comment POST (the first write), and to
  the moment it applied the last write.  The times come from the fake's call records, stamped by
  :class:`TimedFakeGitHub`.

``python -m bench.github_calls`` runs these alone.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import emit, ratio

TOKEN_TEMPLATE = "/app/installations/{installation_id}/access_tokens"
COMMENT_TEMPLATE = "/repos/{owner}/{repo}/issues/{issue_number}/comments"
ARCHIVE_TEMPLATES = ("/repos/{owner}/{repo}/tarball/{ref}", "(codeload) /{owner}/{repo}/legacy.tar.gz/{ref}")
FLEET = 50
PASSED = {"validation_status": "passed"}
FAKE_NOTE = ("the fake GitHub validates every request and response against the OpenAPI description "
             "(a few ms per call), in the value and in the baseline alike")
PACING_NOTE = ("write pacing off (write_interval 0) as in the test harness; the production default spaces "
               "an installation's writes 1 s apart")


def _fake_class():
    from tests.fakes.github import FakeGitHub

    class TimedFakeGitHub(FakeGitHub):
        """The fake GitHub, stamping each call record with ``received_at`` and ``applied_at``.

        Both are ``time.perf_counter()`` values: when the request came in, and when the fake had served
        it (state changed, answer built) — before the ``latency_ms`` sleep that delays the answer.
        """

        def _handle(self, request: Any) -> tuple[Any, Any]:
            received = time.perf_counter()
            call, response = super()._handle(request)
            call.received_at, call.applied_at = received, time.perf_counter()
            return call, response

    return TimedFakeGitHub


def _registry():
    from modelherd.registry.memory import InMemoryRegistry

    reg = InMemoryRegistry()
    for version, auc in ((1, 0.931), (2, 0.947), (3, 0.951)):
        reg.add("fraud-detector", version, metrics={"auc": auc, "latency_p99_ms": 30.0}, tags=PASSED)
    reg.add("churn-model", 3, metrics={"f1": 0.78, "accuracy": 0.88}, tags=PASSED)
    return reg


class Bench:
    """The GitHub App on the fake GitHub, with a fleet of ``fleet`` manifests on ``main``."""

    def __init__(self, app: Any, fleet: int):
        self.app, self.fake = app, app.fake
        template = app.file("models/fraud-detector.yaml")
        self.fleet = {f"models/fleet/fraud-{i:03d}.yaml":
                      template.replace("name: fraud-detector\n", f"name: fraud-{i:03d}\n", 1) for i in range(fleet)}
        self.fake.add_commit(app.repo, self.fleet, message="A fleet of manifests", branch="main")
        self.moves = 0

    def open_pull(self, manifests: int) -> int:
        """A PR bumping the model from v1 to v2 in the first ``manifests`` manifests of the fleet."""
        bump = {path: text.replace("name: fraud-detector, version: 1}", "name: fraud-detector, version: 2}")
                for path, text in list(self.fleet.items())[:manifests]}
        assert all(bump[p] != self.fleet[p] for p in bump), "the example manifest no longer pins version 1"
        self.moves += 1  # main moves first: nothing is cached for the PR's base, every event alike
        self.fake.add_commit(self.app.repo, {"docs/changelog.md": f"main moved {self.moves} time(s)\n"},
                             message="Move main", branch="main")
        return self.app.pull_request(bump)

    def event(self, manifests: int) -> dict[str, Any]:
        """Open a PR, deliver ``pull_request.opened``, run the worker; the calls and their timing."""
        number = self.open_pull(manifests)
        payload = self.app.pull_request_payload("opened", number)
        self.fake.reset_calls()
        delivered = time.perf_counter()
        response = self.app.deliver("pull_request", payload)
        if response.status_code != 202:
            raise RuntimeError(f"intake answered {response.status_code}: {response.get_data(as_text=True)}")
        jobs = self.app.work()
        finished = time.perf_counter()
        with self.fake.lock:
            calls = list(self.fake.calls)
        if self.fake.violations or self.fake.response_errors:
            raise RuntimeError(f"OpenAPI violations: {self.fake.violations + self.fake.response_errors}")
        comments = self.app.comments(number)
        if len(comments) != 1:
            raise RuntimeError(f"expected one plan comment on #{number}, found {len(comments)}")
        writes = [c for c in calls if c.is_write]
        own = [c for c in writes if c.template != TOKEN_TEMPLATE]
        comment = next((c for c in own if c.method == "POST" and c.template == COMMENT_TEMPLATE), None)
        if comment is None:
            raise RuntimeError(f"no comment POST among the writes: {[(c.method, c.template) for c in writes]}")
        at = next(i for i, c in enumerate(calls) if c is comment)
        return {
            "jobs": jobs, "calls": calls,
            "reads": len(calls) - len(writes), "writes": len(writes), "writes_excl_token": len(own),
            "archive_reads": sum(c.template in ARCHIVE_TEMPLATES for c in calls),
            "token_mints": len(writes) - len(own),
            "write_sequence": [f"{c.method} {c.template}" for c in own],
            "comment_is_first_write": own[0] is comment,
            "calls_before_comment": at,
            "to_comment_ms": (comment.applied_at - delivered) * 1000,
            "to_last_write_ms": (max(c.applied_at for c in writes) - delivered) * 1000,
            "event_ms": (finished - delivered) * 1000,
            "fake_ms_before_comment": sum(c.seconds for c in calls[:at]) * 1000,
        }


@contextmanager
def github_app(*, fleet: int = FLEET, flavor: str = "github.com") -> Iterator[Bench]:
    """The harness on a started fake GitHub in a temporary directory; everything stopped and removed after."""
    from tests.github_app import GitHubApp

    with tempfile.TemporaryDirectory(prefix="modelherd-bench-github-") as tmp, _fake_class()(flavor) as fake:
        app = GitHubApp(fake, Path(tmp), _registry())
        try:
            yield Bench(app, fleet)
        finally:
            fake.latency_ms = 0
            app.close()


def bench_api_calls(*, many: int = FLEET) -> list[dict]:
    """Reads and writes of one ``pull_request.opened`` changing 1 and ``many`` manifests."""
    names = ["github_reads_per_pr_event", "github_writes_per_pr_event", "github_writes_excl_token_per_pr_event"]
    with github_app(fleet=many) as bench:
        first = bench.event(1)          # the installation's first event: mints the token, warms caches
        one, lots = bench.event(1), bench.event(many)
    baseline = "the same event changing 1 manifest"
    context = {"event": "pull_request.opened", "manifests": many,
               "steady_state": "installation token cached, new base commit per PR",
               "first_event_of_installation": {k: first[k] for k in ("reads", "writes", "writes_excl_token",
                                                                     "token_mints")}}
    return [
        emit(figure=names[0], value=lots["reads"], baseline=baseline, baseline_value=one["reads"],
             ratio=ratio(lots["reads"], one["reads"]), archive_reads=lots["archive_reads"],
             baseline_archive_reads=one["archive_reads"], **context),
        emit(figure=names[1], value=lots["writes"], baseline=baseline, baseline_value=one["writes"],
             ratio=ratio(lots["writes"], one["writes"]), token_mints=lots["token_mints"],
             baseline_token_mints=one["token_mints"], **context),
        emit(figure=names[2], value=lots["writes_excl_token"], baseline=baseline,
             baseline_value=one["writes_excl_token"], ratio=ratio(lots["writes_excl_token"], one["writes_excl_token"]),
             writes=lots["write_sequence"], baseline_writes=one["write_sequence"],
             comment_is_first_write=lots["comment_is_first_write"] and one["comment_is_first_write"],
             constant_in_manifests=lots["write_sequence"] == one["write_sequence"], manifests=many),
    ]


def bench_comment_latency(*, latency_ms: int = 50, runs: int = 3, many: int = FLEET, many_runs: int = 1) -> list[dict]:
    """Webhook → plan comment (first write) and → last write, at ``latency_ms`` per call against 0 ms."""
    names = ["webhook_to_plan_comment_ms", "webhook_to_last_write_ms"]
    figures: list[dict] = []
    with github_app(fleet=max(many, 1)) as bench:
        bench.event(1)                    # mint the token, warm the policy engine and the caches
        for manifests, n in ((1, runs), (many, many_runs)):
            if n < 1:
                continue
            samples: dict[int, list[dict]] = {0: [], latency_ms: []}
            for _ in range(n):             # alternate, so drift over the run hits both alike
                for latency in (0, latency_ms):
                    bench.fake.latency_ms = latency
                    samples[latency].append(bench.event(manifests))
            bench.fake.latency_ms = 0
            slow, fast = samples[latency_ms], samples[0]
            for name, key in zip(names, ("to_comment_ms", "to_last_write_ms")):
                value = statistics.median(s[key] for s in slow)
                base = statistics.median(s[key] for s in fast)
                figure = {
                    "figure": name, "manifests": manifests, "value": round(value, 1),
                    "baseline": "same event, 0 ms added latency", "baseline_value": round(base, 1),
                    "ratio": ratio(value, base), "added_latency_ms_per_call": latency_ms,
                    "runs": n, "statistic": "median", "measured": "delivery handed to the intake → the fake "
                    + ("applied the comment POST" if key == "to_comment_ms" else "applied the last write"),
                }
                if key == "to_comment_ms":
                    figure.update(
                        comment_is_first_write=all(s["comment_is_first_write"] for s in slow + fast),
                        calls_before_comment=slow[0]["calls_before_comment"],
                        fake_ms_before_comment_at_0_ms=round(statistics.median(s["fake_ms_before_comment"]
                                                                               for s in fast), 1),
                        note=FAKE_NOTE)
                else:
                    figure.update(writes=slow[0]["write_sequence"], calls=len(slow[0]["calls"]), note=PACING_NOTE)
                figures.append(emit(**figure))
    return figures


def main() -> None:
    from bench.__main__ import interruptible

    with interruptible():
        bench_api_calls()
        bench_comment_latency()


if __name__ == "__main__":
    main()
