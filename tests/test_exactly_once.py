"""Every side effect exactly once, whatever fails in between — table-driven over each handler's writes.

For each scenario (the plan on open and on a push, ``/plan``, ``/deploy``, ``/unlock``, ``/rollback``
with its revert request, a merge and the rollouts it starts, and the rollouts' progress on the forge)
a clean run records every write the forge received after the action; then, for each write ``i`` of
that list, a fresh run makes the forge carry write ``i`` out and answer 502 anyway (the answer was
lost: a gateway's 502, a timeout), lets the queue retry, and asserts the final state a person sees:
one reply per command, one plan comment, one check run per name and commit, one deployment per
rollout, one revert request, one rollout per model and environment, every rollout check completed.

The same on GitHub and GitLab (``tests.test_forges_e2e``'s harnesses); GitHub's client does not retry
here (``retries=0``), so every failure reaches the job and the queue runs the whole job again. Each
scenario is set up once; every run starts from a copy of that (the store and queue files, the fake
forge's state, the registry) with fresh clients and caches, as a new worker process would.

Beside the table: a worker process SIGKILLed after the forge created its reply (the answer never
reached it), and two workers whose caches disagree about a commit's check runs.
"""

from __future__ import annotations

import copy
import itertools
import multiprocessing
import os
import shutil
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelherd.comment import MARKER
from modelherd.github_auth import ClientOptions
from modelherd.registry.memory import InMemoryRegistry
from tests.fakes.gitlab import DEVELOPER, GUEST, REPORTER
from tests.github_app import GitHubApp
from tests.gitlab_app import GitLabApp
from tests.test_forges_e2e import CLUSTERS, PASSED, _files

READS = frozenset({"GET", "HEAD", "OPTIONS"})


def fresh_registry() -> InMemoryRegistry:
    reg = InMemoryRegistry()
    for version, auc in ((1, 0.931), (2, 0.947), (3, 0.95)):
        reg.add("fraud-detector", version, metrics={"auc": auc, "latency_p99_ms": 30}, tags=PASSED)
    reg.add("churn-model", 3, metrics={"f1": 0.78, "accuracy": 0.88}, tags=PASSED)
    return reg


# -- one run: a fresh repository on the fake forge, a fresh store, queue and registry ---------------------


@dataclass
class Run:
    """One app on ``kind``'s fake with what a person does and what the forge then shows."""

    kind: str
    app: Any
    registry: InMemoryRegistry

    @property
    def fake(self) -> Any:
        return self.app.fake

    @property
    def repo(self) -> str:
        return self.app.repo

    # -- actions -----------------------------------------------------------------------------------
    def open(self) -> int:
        if self.kind == "github":
            number = self.app.pull_request(self.app.bump("fraud-detector", 1, 2), author="alice")
            self.app.deliver("pull_request", self.app.pull_request_payload("opened", number))
        else:
            number = self.app.merge_request(self.app.bump("fraud-detector", 1, 2), author="alice")
            self.app.deliver("Merge Request Hook", self.app.merge_request_hook("open", number, user="alice"))
        return number

    def push(self, number: int) -> None:
        files = self.app.bump("fraud-detector", 1, 3)
        if self.kind == "github":
            self.fake.push_to_pull(self.repo, number, files)
            self.app.deliver("pull_request", self.app.pull_request_payload("synchronize", number))
        else:
            self.app.push(number, files)

    def approve(self, number: int) -> None:
        if self.kind == "github":
            self.fake.add_review(self.repo, number, "bob", "APPROVED")
            self.app.deliver("pull_request_review", self.app.review_payload("submitted", number, "bob", "APPROVED"))
        else:
            self.app.approve(number, "bob")

    def command(self, number: int, user: str, body: str) -> None:
        self.app.comment(number, user, body)

    def unlock_command(self) -> str:
        return "/unlock" if self.kind == "github" else "/unlock-env"

    def merge(self, number: int) -> str:
        return self.app.merge(number)

    def settle(self, rounds: int = 12) -> None:
        """Run the jobs, the retries the queue scheduled and the rollouts, until all is quiet."""
        for _ in range(rounds):
            self.app.step(60)
        self.app.run_rollouts()
        for _ in range(rounds):
            self.app.step(60)

    # -- what the forge shows ------------------------------------------------------------------------
    def bot_comments(self, number: int) -> list[str]:
        if self.kind == "github":
            return [c.body for c in self.app.comments(number) if c.user.endswith("[bot]")]
        return [n.body for n in self.app.bot_notes(number)]

    def replies(self, number: int) -> list[str]:
        """The bot's comments other than the plan comment."""
        return [body for body in self.bot_comments(number) if not body.startswith(MARKER)]

    def sticky(self, number: int) -> list[str]:
        return [body for body in self.bot_comments(number) if body.startswith(MARKER)]

    def head(self, number: int) -> str:
        if self.kind == "github":
            return self.fake.pull(self.repo, number).head_sha
        return self.app.head(number)

    def checks(self, sha: str) -> dict[str, list[tuple[str, str | None]]]:
        """name → [(status, conclusion)] of every check run (GitHub) on ``sha``; GitLab: the newest commit
        status of each name (GitLab keeps one per name and pipeline: a new one replaces the last)."""
        if self.kind == "github":
            found: dict[str, list[tuple[str, str | None]]] = {}
            for run in self.fake.check_runs(self.repo, sha):
                found.setdefault(run.name, []).append((run.status, run.conclusion))
            return found
        latest: dict[str, tuple[str, str | None]] = {}
        for status in self.fake.statuses(self.repo, sha):
            latest[status.name] = (status.status, None)
        return {name: [value] for name, value in latest.items()}

    def deployments(self) -> Counter:
        """(commit, environment) → how many deployments the forge holds."""
        if self.kind == "github":
            return Counter((d.sha, d.environment) for d in self.fake.deployments(self.repo))
        project = self.fake.project(self.repo).id
        envs = {e.id: e.name for e in self.fake.state.environments.values()}
        return Counter((d.sha, envs.get(d.environment_id)) for d in self.fake.state.deployments.values()
                       if d.project_id == project)

    def change_requests(self) -> list[tuple[int, str]]:
        """(number, title) of every pull/merge request of the repository."""
        if self.kind == "github":
            return [(p.number, p.title) for (repo, _), p in self.fake.state.pulls.items() if repo == self.repo.lower()]
        project = self.fake.project(self.repo).id
        return [(mr.iid, mr.title) for (pid, _), mr in self.fake.state.mrs.items() if pid == project]

    def rollouts(self) -> Counter:
        return Counter((r.model, r.environment, r.trigger) for r in self.app.store.list_rollouts(repo=self.repo))

    def rollout_states(self) -> dict[tuple[str, str, str], str]:
        return {(r.model, r.environment, r.trigger): r.state for r in self.app.store.list_rollouts(repo=self.repo)}

    def close(self) -> None:
        self.app.close()


def make_run(kind: str, fake: Any, folder: Path, name: str) -> Run:
    folder.mkdir(parents=True)
    registry = fresh_registry()
    if kind == "github":
        app = GitHubApp(fake, folder, registry, name=name, clusters=CLUSTERS, files=_files(),
                        client_options=ClientOptions(retries=0))
        fake.add_team_member("acme", "risk-ml", "bob")
        for user in ("alice", "bob"):
            fake.set_permission(app.repo, user, "write")
        fake.set_permission(app.repo, "mallory", "read")
    else:
        app = GitLabApp(fake, folder, registry, project=f"acme/{name}", clusters=CLUSTERS, files=_files())
        fake.add_group_member("acme/risk-ml", "bob")
        fake.add_group_member("acme/risk-ml", fake.bot_username, GUEST)  # private: the bot must be in it to see it
        for user in ("alice", "bob"):
            fake.set_access_level(app.repo, user, DEVELOPER)
        fake.set_access_level(app.repo, "mallory", REPORTER)
    return Run(kind, app, registry)


# -- scenarios: set up (no fault), act (the writes counted from here), and what must hold at the end -----


@dataclass
class Scenario:
    name: str
    setup: Callable[[Run], dict[str, Any]]
    act: Callable[[Run, dict[str, Any]], None]
    check: Callable[[Run, dict[str, Any]], None]


def _opened(run: Run) -> dict[str, Any]:
    number = run.open()
    run.app.work()
    return {"number": number}


def _approved(run: Run) -> dict[str, Any]:
    found = _opened(run)
    run.approve(found["number"])
    run.app.work()
    return found


def _merged(run: Run) -> dict[str, Any]:
    found = _approved(run)
    found["merge_sha"] = run.merge(found["number"])
    run.settle()
    return found


def only(items: list[Any], what: str) -> Any:
    """The one item of ``items`` (asserted, naming ``what``)."""
    assert len(items) == 1, f"{len(items)} {what}: {items}"
    return items[0]


def one_check_per_name(run: Run, sha: str, names: tuple[str, ...]) -> None:
    checks = run.checks(sha)
    for name in names:
        assert len(checks.get(name, [])) == 1, f"{name} on {sha[:7]}: {checks.get(name)}"
    duplicated = {name: runs for name, runs in checks.items() if len(runs) > 1}
    assert not duplicated, f"check runs named alike on {sha[:7]}: {duplicated}"


def rollout_check_completed(run: Run, sha: str) -> None:
    state = only(run.checks(sha).get("modelherd/rollout", []), f"modelherd/rollout checks on {sha[:7]}")
    assert state in (("completed", "success"), ("success", None)), f"modelherd/rollout on {sha[:7]}: {state}"


def one_deployment_each(run: Run) -> None:
    """One forge deployment per rollout: (commit, environment/model) counted alike on both sides."""
    expected = Counter((r.sha, f"{r.environment}/{r.model}") for r in run.app.store.list_rollouts(repo=run.repo))
    assert run.deployments() == expected, f"deployments {dict(run.deployments())}, rollouts {dict(expected)}"


def check_planned(run: Run, found: dict[str, Any], command_replies: int = 0) -> None:
    number = found["number"]
    assert len(run.sticky(number)) == 1, run.bot_comments(number)
    assert len(run.replies(number)) == command_replies, run.replies(number)
    one_check_per_name(run, run.head(number), ("modelherd/plan", "modelherd/approvals"))
    assert run.checks(run.head(number))["modelherd/plan"][0] in (("completed", "success"), ("success", None))


def act_open(run: Run, found: dict[str, Any]) -> None:
    found["number"] = run.open()


def act_push(run: Run, found: dict[str, Any]) -> None:
    run.push(found["number"])


def check_pushed(run: Run, found: dict[str, Any]) -> None:
    check_planned(run, found)
    sticky = only(run.sticky(found["number"]), "plan comments")
    assert "v1 → v3" in sticky and "v1 → v2" not in sticky


def act_plan_command(run: Run, found: dict[str, Any]) -> None:
    run.command(found["number"], "alice", "/plan")


def check_plan_command(run: Run, found: dict[str, Any]) -> None:
    check_planned(run, found, command_replies=1)
    reply = only(run.replies(found["number"]), "replies")
    assert "planned" in reply, reply


def act_deploy(run: Run, found: dict[str, Any]) -> None:
    run.command(found["number"], "bob", "/deploy staging")


def check_deploy(run: Run, found: dict[str, Any]) -> None:
    number = found["number"]
    reply = only(run.replies(number), "replies")
    assert "rollout #" in reply and "staging" in reply, reply
    assert run.rollout_states() == {("fraud-detector", "staging", "deploy-command"): "succeeded"}
    assert run.registry.resolve("fraud-detector", alias="staging").version == "2"
    head = run.head(number)
    one_check_per_name(run, head, ("modelherd/plan", "modelherd/approvals", "modelherd/rollout"))
    rollout_check_completed(run, head)
    one_deployment_each(run)
    rollout = only(run.app.store.list_rollouts(repo=run.repo), "rollouts")
    assert f"rollout #{rollout.id}" in reply, reply
    sticky = only(run.sticky(number), "plan comments")
    assert "#### Rollouts" in sticky and "✅" in sticky.split("#### Rollouts")[1], sticky


def act_unlock(run: Run, found: dict[str, Any]) -> None:
    run.command(found["number"], "alice", run.unlock_command())


def check_unlock(run: Run, found: dict[str, Any]) -> None:
    reply = only(run.replies(found["number"]), "replies")
    assert "released" in reply, reply
    assert run.app.store.locks(run.repo) == []


def act_merge(run: Run, found: dict[str, Any]) -> None:
    found["merge_sha"] = run.merge(found["number"])


def check_merge(run: Run, found: dict[str, Any]) -> None:
    number, merge_sha = found["number"], found["merge_sha"]
    note = only(run.replies(number), "replies")
    assert "merged, rolling out" in note, note
    assert run.rollout_states() == {("fraud-detector", "staging", "merge"): "succeeded",
                                    ("fraud-detector", "production", "merge"): "succeeded"}
    assert run.registry.resolve("fraud-detector", alias="production").version == "2"
    for rollout in run.app.store.list_rollouts(repo=run.repo):
        assert f"rollout #{rollout.id}" in note, note
    one_check_per_name(run, merge_sha, ("modelherd/rollout",))
    rollout_check_completed(run, merge_sha)
    one_deployment_each(run)
    sticky = only(run.sticky(number), "plan comments")
    assert "#### Rollouts" in sticky and sticky.split("#### Rollouts")[1].count("✅") == 2, sticky


def act_rollback(run: Run, found: dict[str, Any]) -> None:
    run.command(found["number"], "alice", "/rollback production")


def check_rollback(run: Run, found: dict[str, Any]) -> None:
    number, merge_sha = found["number"], found["merge_sha"]
    replies = run.replies(number)
    assert len(replies) == 2 and "merged, rolling out" in replies[0], replies
    reply = replies[1]
    assert "v2 → v1" in reply, reply
    assert run.rollouts() == Counter({("fraud-detector", "staging", "merge"): 1,
                                      ("fraud-detector", "production", "merge"): 1,
                                      ("fraud-detector", "production", "rollback"): 1})
    assert run.rollout_states()[("fraud-detector", "production", "rollback")] == "succeeded"
    assert run.registry.resolve("fraud-detector", alias="production").version == "1"
    reverts = [(n, title) for n, title in run.change_requests() if title.startswith("Revert")]
    assert len(reverts) == 1, reverts
    pin = run.app.store.pinned(run.repo, "fraud-detector", "production")
    assert pin is not None and pin.version == "1" and pin.revert_pr == reverts[0][0]
    assert f"#{reverts[0][0]}" in reply, reply
    one_check_per_name(run, merge_sha, ("modelherd/rollout",))
    rollout_check_completed(run, merge_sha)
    one_deployment_each(run)


SCENARIOS = {
    "plan-on-open": Scenario("plan-on-open", lambda run: {}, act_open, check_planned),
    "plan-on-push": Scenario("plan-on-push", _opened, act_push, check_pushed),
    "/plan": Scenario("/plan", _opened, act_plan_command, check_plan_command),
    "/deploy": Scenario("/deploy", _opened, act_deploy, check_deploy),      # staging needs no approval
    "/unlock": Scenario("/unlock", _opened, act_unlock, check_unlock),
    "merge": Scenario("merge", _approved, act_merge, check_merge),
    "/rollback": Scenario("/rollback", _merged, act_rollback, check_rollback),
}


@dataclass
class Snapshot:
    """A scenario after its setup: the store and queue files, the fake forge's state, the registry."""

    folder: Path
    state: Any
    registry: InMemoryRegistry
    repo: str
    found: dict[str, Any]


def _clone(state: Any) -> Any:
    """A deep copy of a fake forge's state whose id counters go on from where they are."""
    memo: dict[int, Any] = {}

    def seed(value: Any, depth: int) -> None:
        if isinstance(value, itertools.count):
            memo[id(value)] = itertools.count(int(repr(value)[len("count("):-1]))
        elif depth and isinstance(value, dict):
            for item in value.values():
                seed(item, depth - 1)
        elif depth and type(value).__module__.startswith("tests.") and hasattr(value, "__dict__"):
            for item in vars(value).values():
                seed(item, depth - 1)

    seed(state, 3)
    return copy.deepcopy(state, memo)


def snapshot(kind: str, fake: Any, folder: Path, scenario: Scenario) -> Snapshot:
    """Set ``scenario`` up once (no fault) and keep everything its runs start from."""
    run = make_run(kind, fake, folder / "setup", "models")
    try:
        found = scenario.setup(run)
        folder.joinpath("files").mkdir()
        for name in ("modelherd.db", "queue.db"):
            with sqlite3.connect(folder / "setup" / name) as source, \
                    sqlite3.connect(folder / "files" / name) as target:
                source.backup(target)
        with fake.lock:
            state = _clone(fake.state)
        return Snapshot(folder / "files", state, copy.deepcopy(run.registry), run.repo, found)
    finally:
        run.close()


def restore(kind: str, fake: Any, snap: Snapshot, folder: Path) -> Run:
    """A run that starts where ``snap`` was taken: copies of its files and state (fresh clients and caches,
    as a new worker process has)."""
    from modelherd.github_auth import TOKENS

    folder.mkdir(parents=True)
    for name in ("modelherd.db", "queue.db"):
        shutil.copy(snap.folder / name, folder / name)
    registry = copy.deepcopy(snap.registry)
    scratch = f"scratch-{folder.name}"
    if kind == "github":
        TOKENS.clear()                       # tokens minted later are unknown to the state restored
        app = GitHubApp(fake, folder, registry, name=scratch, clusters=CLUSTERS, files={"README.md": "-"},
                        client_options=ClientOptions(retries=0))
    else:
        app = GitLabApp(fake, folder, registry, project=f"acme/{scratch}", clusters=CLUSTERS,
                        files={"README.md": "-"})
    with fake.lock:
        fake.state = fake.api.s = _clone(snap.state)
    app.repo = snap.repo
    return Run(kind, app, registry)


def is_counted(method: str, path: str) -> bool:
    """A write of the handlers (the GitHub App's token requests are the client's, not theirs)."""
    return method not in READS and not path.startswith("/app/")


def nth_write(n: int) -> Callable[[str, str], bool]:
    """A ``fail_next`` match for the ``n``-th counted write the fake receives from now on."""
    seen = itertools.count()
    return lambda method, path: is_counted(method, path) and next(seen) == n


def play(kind: str, fake: Any, snap: Snapshot, folder: Path, scenario: Scenario,
         fail_at: int | None = None) -> list[str]:
    """Run ``scenario``'s action from ``snap``; with ``fail_at``, that write (counted from the action) is
    carried out and answered 502. Checks the final state; returns the counted writes made."""
    run = restore(kind, fake, snap, folder)
    try:
        found = copy.deepcopy(snap.found)
        start = len(fake.calls)
        if fail_at is not None:
            fake.fail_next(1, 502, match=nth_write(fail_at), applied=True)
        scenario.act(run, found)
        run.settle()
        scenario.check(run, found)
        return [f"{c.method} {c.template}" for c in fake.calls[start:] if is_counted(c.method, c.path)]
    finally:
        run.close()


CASES = [pytest.param(kind, name, id=f"{kind}-{name}") for kind in ("github", "gitlab") for name in SCENARIOS]


@pytest.mark.parametrize(("kind", "scenario"), CASES)
def test_a_lost_answer_after_each_write_changes_nothing_a_person_sees(kind, scenario, tmp_path, request):
    fake = request.getfixturevalue(f"fake_{kind}")
    chosen = SCENARIOS[scenario]
    snap = snapshot(kind, fake, tmp_path / "snapshot", chosen)
    writes = play(kind, fake, snap, tmp_path / "clean", chosen)
    assert writes, "the scenario wrote nothing"
    failures = []
    for index, write in enumerate(writes):
        try:
            play(kind, fake, snap, tmp_path / f"fail-{index}", chosen, fail_at=index)
        except Exception as exc:
            failures.append(f"write {index} ({write}) answered 502 after it was done: "
                            f"{type(exc).__name__}: {exc}".splitlines()[0][:400])
    assert not failures, f"{len(failures)} of {len(writes)} writes:\n" + "\n".join(failures)


# -- a worker process killed after the forge created its reply ----------------------------------------------


def _doomed_worker(run: Run) -> None:
    """A worker process over the run's store and queue (its own clients, caches and connections)."""
    from modelherd.github_auth import GitHubClients
    from modelherd.pacing import LocalPacer, PacingPolicy
    from modelherd.queue import JobQueue
    from modelherd.store import Store
    from modelherd.wiring import build
    from modelherd.worker import Dispatcher

    settings = run.app.settings
    store = Store.from_url(settings.database_url, clock=run.app.clock)
    queue = JobQueue.from_url(settings.queue_url, "modelherd")
    clients = GitHubClients(settings.github, pacer=LocalPacer(PacingPolicy(write_interval=0)),
                            options=ClientOptions(retries=0))
    handlers = build(settings, store, queue, registries={"mlflow": run.registry}, github=clients)
    Dispatcher(store, queue, handlers).bind()
    queue.drain()


def test_worker_killed_after_its_reply_was_created_replies_and_deploys_once(fake_github, tmp_path):
    """The forge created the reply, the worker died before it heard so (SIGKILL): the job runs again in
    another worker, which finds the rollout it started and the reply it posted."""
    run = make_run("github", fake_github, tmp_path / "run", "models")
    try:
        number = _opened(run)["number"]
        hold = fake_github.hold_next(lambda method, path: method == "POST" and path.endswith(
            f"/issues/{number}/comments"))
        run.command(number, "bob", "/deploy staging")
        proc = multiprocessing.get_context("fork").Process(target=_doomed_worker, args=(run,))
        proc.start()
        try:
            assert hold.reached.wait(60), "the worker never posted its reply"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
            hold.release()
        assert len(run.replies(number)) == 1                            # the forge has it; the worker died
        assert len(run.app.store.list_rollouts(repo=run.repo)) == 1
        run.app.clock.advance(run.app.dispatcher.lease_seconds + 1)    # its lease runs out
        assert run.app.dispatcher.sweep(), "the killed job was not reclaimed"
        run.settle()
        check_deploy(run, {"number": number})
    finally:
        run.close()


# -- two workers whose caches disagree about a commit's check runs ---------------------------------------


def test_two_workers_with_stale_caches_make_one_rollout_check(fake_github, tmp_path):
    """Worker A listed the merge commit's check runs (for the drift check) before worker B created the
    ``modelherd/rollout`` run; A's later progress report must update B's run, not create a second one
    that GitHub would show instead (while B's stays ``in_progress``).

    Each worker is a wiring of its own (its own GitHub clients, so its own caches, as in another
    process) over the one store and queue."""
    from modelherd.github_auth import GitHubClients
    from modelherd.pacing import LocalPacer, PacingPolicy
    from modelherd.queue import JobQueue
    from modelherd.wiring import build
    from modelherd.worker import Dispatcher

    run = make_run("github", fake_github, tmp_path / "run", "models")
    app = run.app
    queue_b = JobQueue.from_url(app.settings.queue_url, "modelherd")
    clients_b = GitHubClients(app.settings.github, pacer=LocalPacer(PacingPolicy(write_interval=0)))
    Dispatcher(app.store, queue_b, build(app.settings, app.store, queue_b, registries={"mlflow": run.registry},
                                         github=clients_b)).bind()
    try:
        number = _approved(run)["number"]
        merge_sha = fake_github.merge_pull(app.repo, number)
        app.deliver("push", app.push_payload(merge_sha))
        app.work()                                                      # A: the drift check lists the commit
        assert [r.name for r in fake_github.check_runs(app.repo, merge_sha)] == ["modelherd/drift"]
        closed = app.pull_request_payload("closed", number)
        closed["pull_request"] = {**closed["pull_request"], "merged": True, "merge_commit_sha": merge_sha}
        app.deliver("pull_request", closed)
        for _ in range(20):                                             # B: the merge, then rollout jobs until
            if "modelherd/rollout" in [r.name for r in fake_github.check_runs(app.repo, merge_sha)]:
                break                                                   # it reported the first progress
            task = queue_b.huey.dequeue()
            assert task is not None, "B ran out of jobs before reporting progress"
            queue_b.huey.execute(task)
        app.run_rollouts()                                              # A: the rest
        runs = [(r.status, r.conclusion) for r in fake_github.check_runs(app.repo, merge_sha)
                if r.name == "modelherd/rollout"]
        assert runs == [("completed", "success")], runs
    finally:
        queue_b.close()
        run.close()


# -- a publication whose retries were lost too ---------------------------------------------------------


def test_progress_the_queue_lost_is_published_by_the_sweep(fake_github, tmp_path):
    """GitHub refused every check-run write while the rollout ran, and the queue lost the retries: the
    periodic sweep publishes the rollout's final state (and gives up on rollouts finished long ago)."""
    from datetime import timedelta

    run = make_run("github", fake_github, tmp_path / "run", "models")
    try:
        number = _opened(run)["number"]
        fake_github.fail_next(100, 502, match=lambda method, path: method != "GET" and "/check-runs" in path)
        run.command(number, "bob", "/deploy staging")
        run.settle()
        [rollout] = run.app.store.list_rollouts(repo=run.repo)
        assert rollout.state == "succeeded" and rollout.reported != rollout.publication
        assert "modelherd/rollout" not in run.checks(run.head(number))
        with fake_github.lock:
            fake_github.faults._queue.clear()
        run.app.queue.flush()                                        # the scheduled retries are gone
        store = run.app.store
        long_ago = rollout.finished_at + timedelta(days=1)
        assert store.unreported_rollouts(("succeeded",), finished_after=long_ago) == []
        run.app.queue.sweep_now()
        run.app.work()
        check_deploy(run, {"number": number})
    finally:
        run.close()
