"""modelherd on GitLab end to end for tests: webhook intake (Flask), store, queue, worker, and the fake GitLab.

    app = GitLabApp(fake_gitlab, tmp_path, registry)
    iid = app.merge_request(app.bump("fraud-detector", 1, 2))      # an MR on the fake's project
    app.deliver("Merge Request Hook", app.merge_request_hook("open", iid))
    app.work()                                                     # run the queued jobs in this thread

Hooks are the real payloads GitLab documents (``tests/contracts/gitlab/webhooks``), pointed at the
fake's project, merge request and users, and sent with the webhook's secret token — the mirror of
:mod:`tests.github_app`.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

from modelherd.app import create_app
from modelherd.forges.gitlab import GitLabClients
from modelherd.pacing import LocalPacer, PacingPolicy
from modelherd.queue import JobQueue
from modelherd.registry.memory import InMemoryRegistry
from modelherd.settings import ClusterConfig, GitLabSettings, Settings
from modelherd.store import Store
from modelherd.wiring import build
from modelherd.worker import Dispatcher

from tests.clock import Clock
from tests.github_app import CLUSTERS, WorkerLoop, example_files
from tests.contracts import contract_path

SECRET = "gitlab webhook secret token"
ZERO_SHA = "0" * 40
#: The hook file of each X-Gitlab-Event this harness sends.
FIXTURES = {"Merge Request Hook": "merge_request.json", "Note Hook": "note_merge_request.json",
            "Push Hook": "push.json"}


def gitlab_fixture(name: str) -> dict[str, Any]:
    """One of GitLab's documented webhook payloads, parsed."""
    return json.loads(contract_path("gitlab", "webhooks", name).read_text())


class GitLabApp(WorkerLoop):
    """The app wired to GitLab only (no GitHub settings), over ``fake`` (a started FakeGitLab)."""

    def __init__(self, fake: Any, tmp_path: Path, registry: InMemoryRegistry, *, project: str = "acme/models",
                 clusters: dict[str, ClusterConfig] | None = None, files: dict[str, str] | None = None):
        self.fake, self.registry = fake, registry
        self.settings = Settings(
            gitlab=GitLabSettings(url=fake.url, token=fake.bot_token, webhook_secret=SECRET,
                                  write_interval_seconds=0),
            database_url=f"sqlite:///{tmp_path / 'modelherd.db'}",
            queue_url=f"sqlite:///{tmp_path / 'queue.db'}", clusters=clusters or CLUSTERS)
        self.clock = Clock()
        self.store = Store.from_url(self.settings.database_url, clock=self.clock)
        self.store.upgrade()
        self.queue = JobQueue.from_url(self.settings.queue_url, "modelherd")
        self.clients = GitLabClients(fake.url, fake.bot_token, pacer=LocalPacer(PacingPolicy(write_interval=0)))
        self.dispatcher = Dispatcher(self.store, self.queue,
                                     build(self.settings, self.store, self.queue, registries={"mlflow": registry},
                                           gitlab=self.clients)).bind()
        self.client = create_app(self.settings, self.store, self.queue).test_client()
        self.repo = fake.add_project(project, files=files or example_files())

    # -- the project ---------------------------------------------------------------------------------
    def merge_request(self, files: dict[str, str | None], author: str = "alice") -> int:
        """An MR whose one commit on the default branch's head writes ``files``; its iid."""
        base = self.fake.head(self.repo)
        head = self.fake.add_commit(self.repo, files, parent=base, author=author)
        return self.fake.open_merge_request(self.repo, base, head, author=author)

    def file(self, path: str, ref: str | None = None) -> str:
        return self.fake.read_file(self.repo, ref or self.fake.head(self.repo), path)

    def bump(self, model: str, old: int, new: int) -> dict[str, str]:
        path = f"models/{model}.yaml"
        return {path: self.file(path).replace(f"name: {model}, version: {old}}}", f"name: {model}, version: {new}}}")}

    def head(self, iid: int) -> str:
        return self.fake.merge_request(self.repo, iid).head.head

    # -- hooks ----------------------------------------------------------------------------------------
    def _project(self, hook: dict[str, Any]) -> dict[str, Any]:
        """Point a hook's ``project`` at the fake's project."""
        project = self.fake.project(self.repo)
        hook["project"] = {**hook["project"], "id": project.id, "name": project.name,
                           "path_with_namespace": self.repo, "default_branch": project.default_branch}
        return hook

    def _user(self, username: str) -> dict[str, Any]:
        return {"id": self.fake.user_id(username), "name": username.title(), "username": username,
                "avatar_url": None, "email": f"{username}@example.com"}

    def merge_request_hook(self, action: str, iid: int, *, oldrev: str | None = None,
                           user: str = "alice") -> dict[str, Any]:
        """A Merge Request Hook for MR ``iid``: ``action`` open/update/reopen/close/merge/approved/…"""
        hook = copy.deepcopy(gitlab_fixture(FIXTURES["Merge Request Hook"]))
        mr = self.fake.merge_request(self.repo, iid)
        attrs = hook["object_attributes"]
        attrs.update(iid=iid, id=mr.id, action=action, state=mr.state, source_branch=mr.source_branch,
                     target_branch=mr.target_branch, last_commit={**attrs["last_commit"], "id": mr.head.head})
        attrs.pop("oldrev", None)
        if oldrev:
            attrs["oldrev"] = oldrev
        hook["user"] = self._user(user)
        return self._project(hook)

    def note_hook(self, iid: int, note_id: int, user: str, body: str, action: str = "create") -> dict[str, Any]:
        """A Note Hook for a note on MR ``iid``."""
        hook = copy.deepcopy(gitlab_fixture(FIXTURES["Note Hook"]))
        hook["object_attributes"].update(id=note_id, note=body, action=action, noteable_type="MergeRequest")
        hook["merge_request"] = {**hook["merge_request"], "iid": iid,
                                 "id": self.fake.merge_request(self.repo, iid).id}
        hook["user"] = self._user(user)
        return self._project(hook)

    def push_hook(self, after: str, branch: str = "main", before: str = ZERO_SHA) -> dict[str, Any]:
        """A Push Hook moving ``branch`` to ``after``."""
        hook = copy.deepcopy(gitlab_fixture(FIXTURES["Push Hook"]))
        hook.update(ref=f"refs/heads/{branch}", before=before, after=after, checkout_sha=after)
        return self._project(hook)

    def deliver(self, kind: str, hook: dict[str, Any], uuid_: str | None = None, *, token: str | None = SECRET):
        """POST the hook as GitLab does (``X-Gitlab-Event``, ``X-Gitlab-Event-UUID``, ``X-Gitlab-Token``)."""
        headers = {"X-Gitlab-Event": kind, "X-Gitlab-Event-UUID": uuid_ or str(uuid.uuid4()),
                   "X-Gitlab-Webhook-UUID": "3f1c0a5e-0d7c-4a0c-9f0a-6b2d1c7e8f90",
                   "Content-Type": "application/json"}
        if token is not None:
            headers["X-Gitlab-Token"] = token
        return self.client.post("/webhooks/gitlab", data=json.dumps(hook).encode(), headers=headers)

    # -- what people do on GitLab (each with its hook) ------------------------------------------------
    def push(self, iid: int, files: dict[str, str | None]) -> str:
        """A new commit on the MR's source branch, and the ``update`` hook with ``oldrev``; the new head."""
        old = self.head(iid)
        sha = self.fake.push(self.repo, iid, files)
        self.deliver("Merge Request Hook", self.merge_request_hook("update", iid, oldrev=old))
        return sha

    def approve(self, iid: int, user: str) -> None:
        self.fake.approve(self.repo, iid, user)
        self.deliver("Merge Request Hook", self.merge_request_hook("approved", iid, user=user))

    def comment(self, iid: int, user: str, body: str) -> Any:
        """A person writes a note on the MR (stored on the fake) and GitLab sends the Note Hook."""
        note_id = self.fake.add_note(self.repo, iid, user, body)
        return self.deliver("Note Hook", self.note_hook(iid, note_id, user, body))

    def merge(self, iid: int) -> str:
        """Merge the MR on the fake and send the ``merge`` hook; returns the merge commit."""
        sha = self.fake.merge(self.repo, iid)
        self.deliver("Merge Request Hook", self.merge_request_hook("merge", iid))
        return sha

    # -- what GitLab shows ----------------------------------------------------------------------------
    def notes(self, iid: int) -> list[Any]:
        return self.fake.notes(self.repo, iid)

    def bot_notes(self, iid: int) -> list[Any]:
        bot = self.fake.user_id(self.fake.bot_username)
        return [n for n in self.notes(iid) if n.author == bot]

    def status(self, sha: str, name: str = "modelherd/plan") -> Any:
        """The newest commit status ``name`` on ``sha``."""
        found = [s for s in self.fake.statuses(self.repo, sha) if s.name == name]
        assert found, f"no {name} status on {sha[:7]}"
        return found[-1]

    def close(self) -> None:
        self.clients.close()
        self.queue.close()
        self.store.dispose()
