"""Smoke tests of ``make bench``'s GitHub App benchmarks (``bench/``): each runs with tiny parameters and
prints well-formed JSON lines.  No timing is asserted; only what the figures count and claim."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench import intake, percentile
from bench.__main__ import interruptible
from bench.github_calls import bench_api_calls, bench_comment_latency
from bench.intake import BODY_BYTES, bench_intake, webhook_body

FIELDS = {"figure", "value", "baseline", "baseline_value", "ratio"}


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    out = capsys.readouterr().out.splitlines()
    assert out, "the bench printed nothing"
    figures = [json.loads(line) for line in out]   # every line is one JSON object
    assert all(isinstance(f, dict) and "figure" in f for f in figures)
    return figures


def complete(figure: dict) -> bool:
    return FIELDS <= figure.keys() and (figure["ratio"] is None or isinstance(figure["ratio"], float))


# -- the request -----------------------------------------------------------------------------------


def test_webhook_body_is_24_kb_of_pull_request_opened():
    body, source = webhook_body()
    payload = json.loads(body)
    assert len(body) == BODY_BYTES and "pull_request/opened.json" in source
    assert payload["action"] == "opened" and payload["pull_request"]["number"] == payload["number"]


def test_percentile_by_nearest_rank():
    samples = list(range(1, 101))
    assert (percentile(samples, 50), percentile(samples, 99), percentile(samples, 100)) == (50, 99, 100)
    assert percentile([], 50) is None


# -- intake ----------------------------------------------------------------------------------------


def test_intake_bench_with_the_built_in_client(capsys):
    figures = bench_intake(seconds=0.3, warmup=0.1, connections=2, load="asyncio")
    assert lines(capsys) == figures
    assert [f["figure"] for f in figures] == ["webhook_intake_requests_per_s", "webhook_intake_p50_ms",
                                              "webhook_intake_p99_ms"]
    assert all(complete(f) for f in figures)
    rps = figures[0]
    assert rps["load_generator"].startswith("built-in asyncio")
    assert rps["requests"] > 0 and rps["baseline_requests"] > 0
    assert (rps["non_2xx"], rps["baseline_non_2xx"], rps["transport_errors"]) == (0, 0, {})
    assert rps["statuses"] == {"202": rps["requests"]}
    assert rps["every_accepted_delivery_stored_and_queued"] is True


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not on PATH")
def test_intake_bench_with_wrk(capsys):
    figures = bench_intake(seconds=1, warmup=0, connections=2, load="wrk")
    assert lines(capsys) == figures and all(complete(f) for f in figures)
    rps = figures[0]
    assert rps["load_generator"].startswith("wrk") and rps["requests"] > 0
    assert (rps["non_2xx"], rps["baseline_non_2xx"]) == (0, 0)
    assert rps["every_accepted_delivery_stored_and_queued"] is True


def test_servers_are_stopped_and_temporary_files_removed_when_the_bench_is_interrupted(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []

    def interrupted(mode, port, *args):
        seen.append((port, list(tmp_path.glob("modelherd-bench-intake-*/bare/*"))))
        raise KeyboardInterrupt

    monkeypatch.setattr(intake, "generate_load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench_intake(seconds=0.1, warmup=0, connections=1, load="asyncio")
    [(port, files)] = seen
    assert files                                     # the server was up, with its files in the temp dir
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert list(tmp_path.iterdir()) == []


def test_sigterm_ends_the_bench_like_ctrl_c():
    with pytest.raises(SystemExit) as exit_, interruptible():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)                                # the signal arrives before this ends
    assert exit_.value.code == 128 + signal.SIGTERM


def test_bench_command_runs_from_the_repository_root():
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=root, capture_output=True, text=True,
                         timeout=60, check=True)
    assert "intake" in out.stdout and "github_calls" in out.stdout


# -- GitHub calls --------------------------------------------------------------------------------------


def test_api_calls_bench(capsys):
    figures = bench_api_calls(many=3)
    assert lines(capsys) == figures
    assert [f["figure"] for f in figures] == ["github_reads_per_pr_event", "github_writes_per_pr_event",
                                              "github_writes_excl_token_per_pr_event"]
    assert all(complete(f) for f in figures)
    reads, writes, own = figures
    assert reads["value"] > reads["baseline_value"] > 0             # more manifests, more to read
    assert writes["token_mints"] == writes["baseline_token_mints"] == 0
    assert reads["first_event_of_installation"]["token_mints"] == 1
    assert own["value"] == own["baseline_value"] and own["constant_in_manifests"] is True
    assert own["writes"][0].endswith("/issues/{issue_number}/comments") and own["comment_is_first_write"]


def test_comment_latency_bench(capsys):
    figures = bench_comment_latency(latency_ms=5, runs=1, many=2, many_runs=1)
    assert lines(capsys) == figures
    assert [(f["figure"], f["manifests"]) for f in figures] == [
        ("webhook_to_plan_comment_ms", 1), ("webhook_to_last_write_ms", 1),
        ("webhook_to_plan_comment_ms", 2), ("webhook_to_last_write_ms", 2)]
    assert all(complete(f) for f in figures)
    to_comment = figures[0]
    assert to_comment["comment_is_first_write"] is True and to_comment["calls_before_comment"] > 0
    assert "validates every request" in to_comment["note"]
    assert all(f["value"] > 0 and f["baseline_value"] > 0 for f in figures)


def test_rollout_benches_emit_their_figures(tmp_path, capsys):
    from bench.rollouts import bench_canary, bench_concurrent

    bench_canary(tmp_path)
    bench_concurrent(tmp_path, rollouts=3, threads=2)
    figures = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["figure"] for f in figures] == ["rollout_three_step_canary_ms", "rollouts_per_s_one_worker_process"]
    assert all(f["value"] > 0 for f in figures)
