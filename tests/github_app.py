"""The GitHub App end to end for tests: webhook intake (Flask), store, queue, worker, and the fake GitHub.

    app = GitHubApp(fake_github, tmp_path, registry)
    repo, number = app.pull_request_from_examples(changes)      # a PR on the fake with the example repo
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()                                                  # run the queued jobs in this thread

Payloads are the real ones GitHub publishes (``tests/contracts/github/webhooks``), pointed at the
fake's repository and installation, and signed with the app's webhook secret.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

from modelherd.app import create_app
from modelherd.github_auth import GitHubClients
from modelherd.pacing import LocalPacer, PacingPolicy
from modelherd.queue import JobQueue
from modelherd.registry.memory import InMemoryRegistry
from modelherd.settings import ClusterConfig, GitHubSettings, Provider, Settings
from modelherd.store import Store
from modelherd.wiring import build
from modelherd.worker import Dispatcher
from tests.clock import Clock
from tests.fixtures_store import sign
from tests.gitrepo import EXAMPLES
from tests.contracts import contract_path

SECRET = "it's a secret to everybody"
CLUSTERS = {"onprem-a": ClusterConfig(provider=Provider.ONPREM), "onprem-gpu": ClusterConfig(provider=Provider.ONPREM, gpus=True),
            "aws-eu-1": ClusterConfig(provider=Provider.AWS), "gcp-us-1": ClusterConfig(provider=Provider.GCP)}


def example_files() -> dict[str, str]:
    root = EXAMPLES / "repo"
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


def webhook_fixture(event: str, name: str) -> dict[str, Any]:
    return json.loads(contract_path("github", "webhooks", event, name).read_text())


class WorkerLoop:
    """Running the app's queue in a test: jobs now, delayed jobs by moving the store's clock.

    Needs ``self.queue``, ``self.store``, ``self.clock`` and ``self.repo``.
    """

    queue: Any
    store: Any
    clock: Clock
    repo: str

    def work(self) -> int:
        return self.queue.drain()

    def step(self, seconds: float = 15.0) -> None:
        """Run the queued jobs, then move the clock on and run the delayed ones that came due."""
        self.work()
        self.clock.advance(seconds)
        self.queue.run_scheduled(self.clock.now)
        self.work()

    def run_rollouts(self, rounds: int = 200) -> None:
        """Run queued jobs until no rollout is left unfinished (bounded)."""
        for _ in range(rounds):
            self.step()
            if not [r for r in self.store.list_rollouts(repo=self.repo) if not r.final]:
                return
        raise AssertionError("rollouts did not finish: " + ", ".join(
            f"#{r.id} {r.model}/{r.environment} {r.state}" for r in self.store.list_rollouts(repo=self.repo)))


class GitHubApp(WorkerLoop):
    def __init__(self, fake: Any, tmp_path: Path, registry: InMemoryRegistry, *, owner: str = "acme",
                 name: str = "models", clusters: dict[str, ClusterConfig] | None = None,
                 files: dict[str, str] | None = None, slack: Any = None, client_options: Any = None):
        self.fake, self.registry = fake, registry
        key = tmp_path / "app.pem"
        key.write_text(fake.generate_app_key())
        self.settings = Settings(
            github=GitHubSettings(app_id=fake.state.app_id, private_key_path=key, webhook_secret=SECRET,
                                  api_url=fake.base_url, write_interval_seconds=0),
            database_url=f"sqlite:///{tmp_path / 'modelherd.db'}",
            queue_url=f"sqlite:///{tmp_path / 'queue.db'}", clusters=clusters or CLUSTERS, slack=slack)
        self.clock = Clock()
        self.store = Store.from_url(self.settings.database_url, clock=self.clock)
        self.store.upgrade()
        self.queue = JobQueue.from_url(self.settings.queue_url, "modelherd")
        clients = GitHubClients(self.settings.github, pacer=LocalPacer(PacingPolicy(write_interval=0)),
                                options=client_options)
        self.dispatcher = Dispatcher(self.store, self.queue,
                                     build(self.settings, self.store, self.queue, registries={"mlflow": registry},
                                           github=clients)).bind()
        self.client = create_app(self.settings, self.store, self.queue).test_client()
        self.repo = fake.add_repo(owner, name, files=files or example_files())
        self.installation = fake.installation_id(owner)

    # -- the repository --------------------------------------------------------------------------
    def pull_request(self, files: dict[str, str | None], author: str = "alice") -> int:
        base = self.fake.head(self.repo)
        head = self.fake.add_commit(self.repo, files, parent=base, author=author)
        return self.fake.open_pull(self.repo, base, head, author=author)

    def file(self, path: str, ref: str | None = None) -> str:
        return self.fake.read_file(self.repo, ref or self.fake.head(self.repo), path)

    def bump(self, model: str, old: int, new: int) -> dict[str, str]:
        path = f"models/{model}.yaml"
        return {path: self.file(path).replace(f"name: {model}, version: {old}}}", f"name: {model}, version: {new}}}")}

    # -- webhooks ----------------------------------------------------------------------------------
    def _point(self, payload: dict[str, Any]) -> dict[str, Any]:
        owner, name = self.repo.split("/")
        payload["repository"] = {**payload["repository"], "full_name": self.repo, "name": name,
                                 "owner": {**payload["repository"]["owner"], "login": owner}}
        payload["installation"] = {"id": self.installation, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u"}
        return payload

    def pull_request_payload(self, action: str, number: int) -> dict[str, Any]:
        fixture = {"opened": "opened.json", "synchronize": "synchronize.json", "reopened": "reopened.json",
                   "ready_for_review": "ready_for_review.json", "closed": "closed.json"}[action]
        payload = copy.deepcopy(webhook_fixture("pull_request", fixture))
        pr = self.fake.pull(self.repo, number)
        payload["number"] = number
        payload["pull_request"] = {**payload["pull_request"], "number": number,
                                   "head": {**payload["pull_request"]["head"], "sha": pr.head_sha},
                                   "base": {**payload["pull_request"]["base"], "sha": pr.base_sha}}
        return self._point(payload)

    def check_rerun_payload(self, number: int, head_sha: str, name: str = "modelherd/plan") -> dict[str, Any]:
        payload = copy.deepcopy(webhook_fixture("check_run", "rerequested.json"))
        payload["check_run"] = {**payload["check_run"], "name": name, "head_sha": head_sha,
                                "pull_requests": [{**(payload["check_run"].get("pull_requests") or [{}])[0],
                                                   "number": number}]}
        return self._point(payload)

    def review_payload(self, action: str, number: int, user: str, state: str) -> dict[str, Any]:
        name = {"submitted": "submitted.json", "dismissed": "dismissed.json"}[action]
        payload = copy.deepcopy(webhook_fixture("pull_request_review", name))
        payload["pull_request"] = {**payload["pull_request"], "number": number}
        payload["review"] = {**payload["review"], "state": state.lower(),
                             "user": {**payload["review"]["user"], "login": user}}
        return self._point(payload)

    def comment_payload(self, action: str, number: int, user: str, body: str, comment_id: int,
                        user_type: str = "User") -> dict[str, Any]:
        payload = copy.deepcopy(webhook_fixture("issue_comment", f"{action}.json"))
        issue = payload["issue"]
        payload["issue"] = {**issue, "number": number,
                            "pull_request": issue.get("pull_request") or {"url": f"https://example.invalid/pulls/{number}"}}
        payload["comment"] = {**payload["comment"], "id": comment_id, "body": body,
                              "user": {**payload["comment"]["user"], "login": user, "type": user_type}}
        return self._point(payload)

    def comment(self, number: int, user: str, body: str, *, action: str = "created") -> Any:
        """A person comments on the PR (stored on the fake) and GitHub delivers the webhook."""
        comment_id = self.fake.add_comment(self.repo, number, user, body)
        return self.deliver("issue_comment", self.comment_payload(action, number, user, body, comment_id))

    def push_payload(self, sha: str, branch: str = "main") -> dict[str, Any]:
        payload = copy.deepcopy(webhook_fixture("push", "payload.json"))
        payload.update({"ref": f"refs/heads/{branch}", "after": sha, "deleted": False})
        payload = self._point(payload)
        payload["repository"] = {**payload["repository"], "default_branch": "main", "master_branch": "main"}
        return payload

    def deliver(self, event: str, payload: dict[str, Any], delivery: str | None = None):
        body = json.dumps(payload).encode()
        headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                   "X-Hub-Signature-256": sign(body, SECRET), "Content-Type": "application/json"}
        return self.client.post("/webhooks/github", data=body, headers=headers)

    # -- what GitHub shows -------------------------------------------------------------------------
    def comments(self, number: int) -> list[Any]:
        return self.fake.comments(self.repo, number)

    def merge(self, number: int) -> str:
        """Merge the PR on the fake and deliver the ``closed`` (merged) webhook; returns the merge commit."""
        sha = self.fake.merge_pull(self.repo, number)
        payload = self.pull_request_payload("closed", number)
        payload["pull_request"] = {**payload["pull_request"], "merged": True, "merge_commit_sha": sha}
        self.deliver("pull_request", payload)
        return sha

    def check(self, sha: str, name: str = "modelherd/plan") -> Any:
        runs = [r for r in self.fake.check_runs(self.repo, sha) if r.name == name]
        assert runs, f"no {name} check on {sha[:7]}"
        return runs[-1]

    def close(self) -> None:
        self.queue.close()
        self.store.dispose()
