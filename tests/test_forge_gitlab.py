"""The GitLab adapter (:mod:`modelherd.forges.gitlab`) against the fake GitLab, over real HTTP.

Every request the adapter sends is validated against GitLab 19.5's OpenAPI description
(``fake_gitlab``'s teardown fails a test otherwise). Where that description lacks what the bot
needs, the fake follows GitLab's REST documentation — the corrections are listed in
:mod:`tests.fakes.gitlab` and held here by ``test_description_corrections_are_what_gitlab_does``:
``POST …/repository/commits`` takes JSON actions (described as a multipart ``file``), MR notes, the
repository tree and an MR's ``approved_by`` are lists (described as one object), a member's
``access_level`` is an integer (described as a string), and GitLab sends nulls the description
does not allow (the fake omits them).
"""


from __future__ import annotations

import time
from datetime import UTC

import pytest
from gitlab.exceptions import GitlabHttpError
from modelherd.forges.base import BranchTip, CheckReport, CheckStatus, NothingToRevert
from modelherd.forges.gitlab import (
    GitLabClients,
    GitLabError,
    GitLabForge,
    ProjectCaches,
    approval_commit,
    role_for,
    status_state,
)
from modelherd.pacing import LocalPacer, RateLimited

from tests.fakes.gitlab import DEVELOPER, GUEST, MAINTAINER, OWNER, REPORTER, FakeGitLab

MARKER = "<!-- modelherd:plan -->"


@pytest.fixture
def project(fake_gitlab: FakeGitLab) -> str:
    return fake_gitlab.add_project("acme/ml/models", files={"models/a.yaml": "name: a\n", "README.md": "# models\n"})


@pytest.fixture
def clients(fake_gitlab: FakeGitLab) -> GitLabClients:
    return GitLabClients(fake_gitlab.url, fake_gitlab.bot_token, pacer=LocalPacer(sleep=lambda s: None))


@pytest.fixture
def forge(clients: GitLabClients, project: str) -> GitLabForge:
    return clients.forge(project)


def open_mr(fake: FakeGitLab, project: str, files: dict, *, author: str = "alice", **kw) -> int:
    base = fake.head(project)
    head = fake.add_commit(project, files, base, author=author)
    return fake.open_merge_request(project, base, head, author, **kw)


# -- merge requests --------------------------------------------------------------------------------------


def test_change_request_maps_a_merge_request(fake_gitlab, project, forge):
    iid = open_mr(fake_gitlab, project, {"models/a.yaml": "name: a\nv: 2\n"}, source_branch="feat",
                  draft=True, labels=["ml", "urgent"], title="Bump a")
    mr = fake_gitlab.merge_request(project, iid)
    cr = forge.change_request(iid)
    assert (cr.repo, cr.number, cr.title, cr.author, cr.state) == (project, iid, "Bump a", "alice", "open")
    assert (cr.base_ref, cr.head_ref, cr.head_sha, cr.base_sha) == ("main", "feat", mr.head.head, mr.head.start)
    assert cr.draft and cr.labels == ("ml", "urgent") and not cr.from_fork and not cr.author_is_bot
    assert cr.default_branch == "main" and cr.merge_sha is None
    assert cr.url.endswith(f"/acme/ml/models/-/merge_requests/{iid}")


def test_change_request_fork_bot_and_closed(fake_gitlab, project, forge):
    fake_gitlab.add_user("project_7_bot_abc123", bot=True)
    iid = open_mr(fake_gitlab, project, {"x": "1"}, author="project_7_bot_abc123", from_fork=True)
    fake_gitlab.merge_request(project, iid).state = "closed"
    cr = forge.change_request(iid)
    assert cr.from_fork and cr.author_is_bot and cr.state == "closed"


@pytest.mark.parametrize("how", ["merge", "squash", "fast_forward"])
def test_merged_request_knows_the_commit_on_the_target(fake_gitlab, project, forge, how):
    iid = open_mr(fake_gitlab, project, {"models/a.yaml": "name: a\nv: 3\n"})
    tip = fake_gitlab.merge(project, iid, squash=how == "squash", fast_forward=how == "fast_forward")
    cr = forge.change_request(iid)
    assert cr.state == "merged" and cr.merge_sha == tip
    assert forge.reader(cr).changed_files(cr.base_sha, tip) == ["models/a.yaml"]


def test_unknown_merge_request_is_a_clear_error(forge):
    with pytest.raises(GitLabError, match=r"read merge request !99: 404") as caught:
        forge.change_request(99)
    assert caught.value.status == 404


def test_a_rejected_token_is_a_clear_error(fake_gitlab, project):
    forge = GitLabClients(fake_gitlab.url, "glpat-wrong").forge(project)
    with pytest.raises(GitLabError, match="401") as caught:
        forge.change_request(1)
    assert caught.value.status == 401


# -- reading -----------------------------------------------------------------------------------------------


def test_changed_files_list_both_names_of_a_rename_and_deletions(fake_gitlab, project, forge):
    base = fake_gitlab.head(project)
    head = fake_gitlab.add_commit(project, {"models/a.yaml": None, "models/renamed.yaml": "name: a\n",
                                            "models/new.yaml": "n", "README.md": None})
    iid = fake_gitlab.open_merge_request(project, base, head, "alice")
    cr = forge.change_request(iid)
    reader = forge.reader(cr)
    assert reader.changed_files(cr.base_sha, cr.head_sha) == ["README.md", "models/a.yaml", "models/new.yaml",
                                                               "models/renamed.yaml"]
    fake_gitlab.reset_calls()
    assert reader.changed_files(cr.base_sha, cr.head_sha)          # cached per (iid, base, head)
    assert fake_gitlab.calls == []
    with pytest.raises(GitLabError, match="read the merge request again"):
        reader.changed_files(cr.base_sha, "f" * 40)


def test_read_many_at_a_sha_is_read_once(fake_gitlab, project, forge):
    iid = open_mr(fake_gitlab, project, {"models/a.yaml": "name: a\nv: 2\n"})
    cr = forge.change_request(iid)
    reader = forge.reader(cr)
    fake_gitlab.reset_calls()
    wanted = ["models/a.yaml", "models/missing.yaml"]
    assert reader.read_many(cr.head_sha, wanted) == {"models/a.yaml": b"name: a\nv: 2\n", "models/missing.yaml": None}
    assert reader.read_many(cr.base_sha, ["models/a.yaml"]) == {"models/a.yaml": b"name: a\n"}
    assert len(fake_gitlab.calls_to("GET", "/projects/{id}/repository/files/{file_path}/raw")) == 3
    fake_gitlab.reset_calls()
    reader.read_many(cr.head_sha, wanted)
    assert fake_gitlab.calls == []
    assert reader.read_many("main", ["models/a.yaml"])["models/a.yaml"] == b"name: a\n"   # a branch: not cached
    assert len(fake_gitlab.calls) == 1


def test_list_files_is_recursive_paginated_and_cached(fake_gitlab, project, forge):
    files = {f"models/team{i % 3}/m{i:03}.yaml": f"name: m{i}\n" for i in range(130)}
    sha = fake_gitlab.add_commit(project, files, branch="main")
    reader = forge.reader(forge.change_request(open_mr(fake_gitlab, project, {"x": "y"})))
    fake_gitlab.reset_calls()
    listed = reader.list_files(sha, "models/")
    assert listed == sorted([*files, "models/a.yaml"])
    assert len(fake_gitlab.calls_to("GET", "/projects/{id}/repository/tree")) == 2     # 130+ entries, 100 a page
    fake_gitlab.reset_calls()
    assert reader.list_files(sha, "models") == listed and fake_gitlab.calls == []
    assert reader.list_files(sha, "nowhere") == []


# -- notes and reactions -------------------------------------------------------------------------------------


def test_sticky_note_is_created_once_then_edited_in_place(fake_gitlab, project, forge):
    iid = open_mr(fake_gitlab, project, {"x": "1"})
    fake_gitlab.add_note(project, iid, "mallory", f"{MARKER} quoting the marker")
    first = forge.upsert_comment(iid, MARKER, "plan v1")
    fake_gitlab.reset_calls()
    second = forge.upsert_comment(iid, MARKER, "plan v2")
    assert first == second
    assert [(c.method, c.template) for c in fake_gitlab.calls] == [
        ("PUT", "/api/v4/projects/{id}/merge_requests/{noteable_id}/notes/{note_id}")]
    notes = fake_gitlab.notes(project, iid)
    assert [n.body for n in notes] == [f"{MARKER} quoting the marker", f"{MARKER}\nplan v2"]


def test_sticky_note_found_by_a_new_process_and_recreated_when_deleted(fake_gitlab, clients, project):
    iid = open_mr(fake_gitlab, project, {"x": "1"})
    created = clients.forge(project).upsert_comment(iid, MARKER, "one")
    fresh = GitLabForge(clients.client, project)                  # another process: empty caches
    assert fresh.upsert_comment(iid, MARKER, "two") == created
    del fake_gitlab.state.notes[int(created)]
    assert fresh.upsert_comment(iid, MARKER, "gone", create=False) is None
    again = fresh.upsert_comment(iid, MARKER, "three")
    assert again != created and fake_gitlab.notes(project, iid)[-1].body == f"{MARKER}\nthree"


def test_comment_and_eyes_reaction(fake_gitlab, project, forge):
    iid = open_mr(fake_gitlab, project, {"x": "1"})
    command = fake_gitlab.add_note(project, iid, "alice", "/deploy staging")
    forge.react(iid, command, "eyes")
    forge.react(iid, command, "eyes")                            # awarded already: a no-op
    reply = forge.create_comment(iid, "deploying")
    forge.react(iid, reply, "+1")
    notes = {n.id: n for n in fake_gitlab.notes(project, iid)}
    assert [a["name"] for a in notes[command].awards] == ["eyes"]
    assert [a["name"] for a in notes[int(reply)].awards] == ["thumbsup"]
    with pytest.raises(GitLabError):
        forge.react(iid, 99999, "eyes")                          # no such note
    with pytest.raises(ValueError):
        forge.react(iid, command, "party")


# -- commit statuses -----------------------------------------------------------------------------------------


def test_checks_are_commit_statuses(fake_gitlab, project, forge):
    iid = open_mr(fake_gitlab, project, {"x": "1"}, source_branch="feat")
    cr = forge.change_request(iid)
    forge.report_check(cr.head_sha, CheckReport("modelherd/plan", CheckStatus.IN_PROGRESS, title="Planning"))
    forge.report_check(cr.head_sha, CheckReport("modelherd/plan", CheckStatus.IN_PROGRESS, title="Planning"))
    long_title = "word " * 100
    forge.report_check(cr.head_sha, CheckReport("modelherd/plan", CheckStatus.COMPLETED, "failure", title=long_title,
                                                details_url="https://modelherd.example/plans/1"))
    forge.report_check(cr.head_sha, CheckReport("modelherd/approvals", CheckStatus.COMPLETED, "neutral",
                                                summary="\nwaiting for\nreviews", details_url="https://x/" + "y" * 300))
    statuses = fake_gitlab.statuses(project, cr.head_sha)
    assert [(s.name, s.status, s.ref) for s in statuses] == [("modelherd/plan", "failed", "feat"),
                                                              ("modelherd/approvals", "success", "feat")]
    assert len(statuses[0].description) == 255 and statuses[0].description.endswith("…")
    assert statuses[0].target_url == "https://modelherd.example/plans/1"
    assert statuses[1].description == "waiting for" and statuses[1].target_url is None   # a cut URL leads nowhere
    assert len(fake_gitlab.calls_to("POST", "/projects/{id}/statuses/{sha}")) == 3       # the repeat was skipped


def test_a_status_already_in_that_state_is_taken_as_done(fake_gitlab, clients, project):
    iid = open_mr(fake_gitlab, project, {"x": "1"})
    sha = fake_gitlab.merge_request(project, iid).head.head
    report = CheckReport("modelherd/rollout", CheckStatus.QUEUED, title="Queued")
    clients.forge(project).report_check(sha, report)
    GitLabForge(clients.client, project).report_check(sha, report)     # another worker: GitLab answers 400
    assert [s.status for s in fake_gitlab.statuses(project, sha)] == ["pending"]


@pytest.mark.parametrize(("status", "conclusion", "state"), [
    (CheckStatus.QUEUED, None, "pending"), (CheckStatus.IN_PROGRESS, None, "running"),
    (CheckStatus.COMPLETED, "success", "success"), (CheckStatus.COMPLETED, "neutral", "success"),
    (CheckStatus.COMPLETED, "skipped", "success"), (CheckStatus.COMPLETED, "cancelled", "canceled"),
    (CheckStatus.COMPLETED, "failure", "failed"), (CheckStatus.COMPLETED, "action_required", "failed"),
    (CheckStatus.COMPLETED, "timed_out", "failed")])
def test_status_state_mapping(status, conclusion, state):
    assert status_state(CheckReport("c", status, conclusion)) == state


# -- people --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "role"), [(OWNER, "admin"), (MAINTAINER, "maintain"), (DEVELOPER, "write"),
                                             (REPORTER, "triage"), (15, "read"), (GUEST, "read"), (5, "none"),
                                             (0, "none")])
def test_permission_from_access_level(fake_gitlab, project, forge, level, role):
    fake_gitlab.set_access_level(project, "carol", level)
    assert forge.permission("carol") == role == role_for(level)


def test_permission_inherited_blocked_and_unknown(fake_gitlab, project, forge):
    fake_gitlab.add_group_member("acme", "dana", MAINTAINER)
    assert forge.permission("dana") == "maintain"                  # inherited from the parent group
    fake_gitlab.add_user("erin", state="blocked")
    fake_gitlab.set_access_level(project, "erin", OWNER)
    assert forge.permission("erin") == "none"
    assert forge.permission("nobody-at-all") == "none"


def test_team_membership_of_groups(fake_gitlab, forge):
    fake_gitlab.add_group_member("acme/ml-owners", fake_gitlab.bot_username, GUEST)   # the bot must see the group
    fake_gitlab.add_group_member("acme/ml-owners", "frank")
    fake_gitlab.add_group_member("acme/ml-owners", "gina", state="awaiting")
    fake_gitlab.add_group_member("acme", "hank")
    fake_gitlab.add_group_member("acme/ml-owners/leads", "ivy")
    fake_gitlab.add_user("judy")
    assert forge.team_membership("acme", "ml-owners", "frank") == "active"
    assert forge.team_membership("acme", "ml-owners", "gina") == "pending"
    assert forge.team_membership("acme", "ml-owners", "hank") == "active"      # inherited from acme
    assert forge.team_membership("acme", "ml-owners/leads", "ivy") == "active"
    assert forge.team_membership("acme", "ml-owners", "ivy") is None
    assert forge.team_membership("acme", "ml-owners", "judy") is None
    assert forge.team_membership("nowhere", "team", "frank") is None


def test_a_private_group_the_bot_cannot_see_has_no_members_for_it(fake_gitlab, forge):
    """GitLab hides a private group from anyone outside it (404): a rule naming such a group is never
    met, which is why the README asks for the bot to be a member of the groups rules name."""
    fake_gitlab.add_group_member("acme/secret-reviewers", "frank")
    assert forge.team_membership("acme", "secret-reviewers", "frank") is None
    fake_gitlab.set_group_visibility("acme/secret-reviewers", "internal")
    assert forge.team_membership("acme", "secret-reviewers", "frank") == "active"


def test_commit_authors_by_public_email(fake_gitlab, project, forge):
    fake_gitlab.add_user("kim", public_email="kim@acme.example")
    base = fake_gitlab.head(project)
    one = fake_gitlab.add_commit(project, {"a": "1"}, base, author="kim")
    two = fake_gitlab.add_commit(project, {"a": "2"}, one, author="stranger")
    iid = fake_gitlab.open_merge_request(project, base, two, "kim")
    assert [(c["sha"], c["author"], c["author_name"]) for c in forge.commits(iid)] == [
        (one, "kim", "kim"), (two, None, "stranger")]


# -- approvals -------------------------------------------------------------------------------------------


def test_approvals_are_bound_to_the_version_they_were_given_on(fake_gitlab, project, forge):
    iid = open_mr(fake_gitlab, project, {"models/a.yaml": "name: a\nv: 2\n"})
    first = fake_gitlab.merge_request(project, iid).head.head
    fake_gitlab.approve(project, iid, "bob")
    second = fake_gitlab.push(project, iid, {"models/a.yaml": "name: a\nv: 3\n"})
    fake_gitlab.add_user("project_3_bot_x", bot=True)
    fake_gitlab.approve(project, iid, "carol")
    fake_gitlab.approve(project, iid, "project_3_bot_x")
    reviews = forge.reviews(iid)
    assert [(r["user"], r["state"], r["commit_id"], r["user_type"]) for r in reviews] == [
        ("bob", "APPROVED", first, "User"),          # GitLab kept it across the push: stale, not the head
        ("carol", "APPROVED", second, "User"),
        ("project_3_bot_x", "APPROVED", second, "Bot")]
    assert all(r["submitted_at"] and r["id"] for r in reviews)


def test_a_project_that_resets_approvals_on_push(fake_gitlab, forge, clients):
    project = fake_gitlab.add_project("acme/strict", reset_approvals_on_push=True)
    iid = open_mr(fake_gitlab, project, {"x": "1"})
    fake_gitlab.approve(project, iid, "bob")
    fake_gitlab.push(project, iid, {"x": "2"})
    assert clients.forge(project).reviews(iid) == []


def test_no_approvals_cost_one_read(fake_gitlab, project, forge):
    iid = open_mr(fake_gitlab, project, {"x": "1"})
    fake_gitlab.reset_calls()
    assert forge.reviews(iid) == [] and len(fake_gitlab.calls) == 1


def test_approval_commit_is_safe_without_a_time():
    from datetime import datetime

    t = [datetime(2026, 1, 1, 10, m, tzinfo=UTC) for m in range(3)]
    versions = [(t[0], "a"), (t[1], "b")]
    assert approval_commit(None, versions) is None
    assert approval_commit(t[1], versions) == "a"             # same instant as a push: the older version
    assert approval_commit(t[2], versions) == "b"
    assert approval_commit(t[0], versions) is None


# -- deployments -----------------------------------------------------------------------------------------


def test_deployment_lifecycle(fake_gitlab, project, forge):
    sha = fake_gitlab.head(project)
    deployment = forge.create_deployment(sha, "prod-eu", description="rollout 7", production=True,
                                         payload={"modelherd_rollout": 7})
    env = fake_gitlab.environment(project, "prod-eu")
    assert env.tier == "production"
    [made] = fake_gitlab.deployments(project)
    assert (str(made.id), made.sha, made.ref, made.status) == (deployment, sha, "main", "running")
    fake_gitlab.reset_calls()
    forge.set_deployment_status(deployment, "queued")
    forge.set_deployment_status(deployment, "in_progress", environment_url="https://eu.example/models")
    forge.set_deployment_status(deployment, "in_progress", environment_url="https://eu.example/models")
    forge.set_deployment_status(deployment, "success", log_url="https://modelherd.example/rollouts/7")
    forge.set_deployment_status(deployment, "inactive")
    assert [(c.method, c.template.rsplit("/", 2)[-2]) for c in fake_gitlab.calls] == [
        ("PUT", "environments"), ("PUT", "deployments")]
    assert made.status == "success" and env.external_url == "https://eu.example/models"
    forge.set_deployment_status(deployment, "failure")
    assert made.status == "failed"
    with pytest.raises(ValueError):
        forge.set_deployment_status(deployment, "done")


def test_inactive_cancels_an_unfinished_deployment_and_retiring_stops_the_environment(fake_gitlab, project, forge):
    sha = fake_gitlab.head(project)
    live = forge.create_deployment(sha, "staging/churn", description="", payload={"modelherd_rollout": 1},
                                   production=False)
    forge.set_deployment_status(live, "success")
    cancelled = forge.create_deployment(sha, "staging/churn", description="", payload={"modelherd_rollout": 2},
                                        production=False)
    forge.set_deployment_status(cancelled, "inactive")                # a rollout cancelled before it finished
    status = {str(d.id): d.status for d in fake_gitlab.deployments(project)}
    assert status == {live: "success", cancelled: "canceled"}        # not left "running" for ever
    assert fake_gitlab.environment(project, "staging/churn").state == "available"
    forge.retire_environment("staging/churn")                          # a decommission finished
    forge.retire_environment("staging/churn")                          # stopped already: nothing sent
    forge.retire_environment("never-deployed")
    assert fake_gitlab.environment(project, "staging/churn").state == "stopped"
    assert len([c for c in fake_gitlab.calls if c.template.endswith("/stop")]) == 1


def test_deployment_is_idempotent_per_rollout_even_after_a_restart(fake_gitlab, clients, project):
    sha = fake_gitlab.head(project)
    forge = clients.forge(project)
    first = forge.create_deployment(sha, "staging", description="", payload={"modelherd_rollout": 3}, production=False)
    fake_gitlab.reset_calls()
    assert forge.create_deployment(sha, "staging", description="", payload={"modelherd_rollout": 3},
                                   production=False) == first
    assert fake_gitlab.calls == []
    restarted = GitLabForge(clients.client, project, caches=ProjectCaches())
    assert restarted.create_deployment(sha, "staging", description="", payload={"modelherd_rollout": 3},
                                       production=False) == first
    restarted.set_deployment_status(first, "success")
    another = restarted.create_deployment(sha, "staging", description="", payload={"modelherd_rollout": 4},
                                          production=False)
    assert another != first and len(fake_gitlab.deployments(project)) == 2
    assert fake_gitlab.environment(project, "staging").tier == "staging"


def test_deployment_of_a_branch_name(fake_gitlab, project, forge):
    deployment = forge.create_deployment("main", "dev", description="", payload={}, production=False, transient=True)
    [made] = fake_gitlab.deployments(project)
    assert str(made.id) == deployment and made.sha == fake_gitlab.head(project) and made.ref == "main"
    assert fake_gitlab.environment(project, "dev").tier == "development"


# -- revert merge requests ---------------------------------------------------------------------------------


def test_revert_merge_request_is_one_commit_and_one_merge_request(fake_gitlab, project, forge):
    fake_gitlab.reset_calls()
    files = {"models/a.yaml": "name: a\nv: 1\n", "models/new.yaml": "n: 1\n", "README.md": None}
    iid = forge.open_revert_pull("main", files, branch="modelherd/revert-1", title="Revert @alice's change",
                                 body="Rolls back.")
    writes = [(c.method, c.template) for c in fake_gitlab.writes()]
    assert writes == [("POST", "/api/v4/projects/{id}/repository/commits"),
                      ("POST", "/api/v4/projects/{id}/merge_requests")]
    mr = fake_gitlab.merge_request(project, iid)
    assert mr.title == "Revert @\u200balice's change" and mr.source_branch == "modelherd/revert-1"
    assert [a["action"] for a in fake_gitlab.writes()[0].body["actions"]] == ["delete", "update", "create"]
    assert fake_gitlab.read_file(project, "modelherd/revert-1", "models/new.yaml") == "n: 1\n"
    assert fake_gitlab.read_file(project, "modelherd/revert-1", "README.md") is None
    fake_gitlab.reset_calls()
    assert forge.open_revert_pull("main", files, branch="modelherd/revert-1", title="t", body="b") == iid
    assert fake_gitlab.writes() == []                                  # same contents: nothing new
    assert forge.open_revert_pull("main", {**files, "models/a.yaml": "name: a\nv: 0\n"},
                                  branch="modelherd/revert-1", title="t", body="b") == iid
    assert len(fake_gitlab.merge_request(project, iid).versions) == 2  # one more commit on the open request


def test_revert_rebuilds_a_stale_branch_and_refuses_when_nothing_differs(fake_gitlab, project, forge):
    stale = fake_gitlab.add_commit(project, {"junk": "x"}, branch="modelherd/revert-2")
    iid = forge.open_revert_pull("main", {"models/a.yaml": "name: a\nv: 9\n"}, branch="modelherd/revert-2",
                                 title="Revert", body="")
    head = fake_gitlab.head(project, "modelherd/revert-2")
    assert head != stale and fake_gitlab.read_file(project, head, "junk") is None
    assert fake_gitlab.state.git.commits[head].parents == [fake_gitlab.head(project)]
    assert fake_gitlab.merge_request(project, iid).state == "opened"
    with pytest.raises(NothingToRevert):
        forge.open_revert_pull("main", {"models/a.yaml": "name: a\n"}, branch="modelherd/revert-3",
                               title="Revert", body="")


def test_default_branch_tip_is_read_fresh(fake_gitlab, project, forge):
    tip = forge.default_branch_tip()
    assert tip == BranchTip("main", fake_gitlab.head(project))
    assert [c.template for c in fake_gitlab.reads()][-2:] == ["/api/v4/projects/{id}",
                                                               "/api/v4/projects/{id}/repository/branches/{branch}"]
    moved = fake_gitlab.add_commit(project, {".modelherd.yaml": "environments: []\n"}, branch="main")
    assert forge.default_branch_tip().sha == moved                 # never cached: each event asks again
    # another default branch (renamed in the project's settings): the next event follows it, and so
    # does what the adapter remembers for change requests
    trunk = fake_gitlab.add_commit(project, {"x": "1"}, branch="trunk")
    fake_gitlab.project(project).default_branch = "trunk"
    assert forge.default_branch_tip() == BranchTip("trunk", trunk)
    assert forge.default_branch() == "trunk"
    fake_gitlab.project(project).default_branch = "gone"
    with pytest.raises(GitLabError, match="default branch gone"):
        forge.default_branch_tip()


# -- the plan sequence: writes constant in the number of manifests ---------------------------------------


@pytest.mark.parametrize("manifests", [1, 12])
def test_plan_sequence_writes_are_constant(fake_gitlab, project, forge, manifests):
    """What ``refresh_pull_request`` does through the forge, twice (opened, then a push)."""
    files = {f"models/m{i}.yaml": f"name: m{i}\nv: 2\n" for i in range(manifests)}
    iid = open_mr(fake_gitlab, project, files)
    fake_gitlab.set_access_level(project, "bob", DEVELOPER)
    fake_gitlab.approve(project, iid, "bob")

    def plan() -> None:
        cr = forge.change_request(iid)
        rules = forge.default_branch_tip()
        reader = forge.reader(cr)
        reader.read_many(rules.sha, [".modelherd.yaml"])
        changed = reader.changed_files(cr.base_sha, cr.head_sha)
        reader.read_many(cr.base_sha, changed)
        reader.read_many(cr.head_sha, changed)
        for review in forge.reviews(iid):
            forge.permission(review["user"])
        forge.commits(iid)
        forge.upsert_comment(iid, MARKER, f"plan of {len(changed)} manifests at {cr.head_sha}")
        forge.report_check(cr.head_sha, CheckReport("modelherd/plan", CheckStatus.COMPLETED, "success", title="ok"))
        forge.report_check(cr.head_sha, CheckReport("modelherd/approvals", CheckStatus.COMPLETED, "success",
                                                    title="approved"))

    plan()
    first_writes = [(c.method, c.template) for c in fake_gitlab.writes()]
    assert len(first_writes) == 3                      # note created, two statuses
    fake_gitlab.push(project, iid, {"models/m0.yaml": "name: m0\nv: 3\n"})
    fake_gitlab.reset_calls()
    plan()
    writes = [(c.method, c.template.rsplit("/", 1)[-1]) for c in fake_gitlab.writes()]
    assert writes == [("PUT", "{note_id}"), ("POST", "{sha}"), ("POST", "{sha}")]
    # The MR, the default branch (the project, then its branch: always fresh), its diffs, the new head's
    # files (the base's and the rules' are cached by SHA), approvals and versions, bob's access (his
    # user id is remembered) and the commits: one read per manifest, no more.
    assert len(fake_gitlab.reads()) == 8 + manifests


# -- retries, rate limits, errors ------------------------------------------------------------------------


def test_server_errors_are_retried_for_reads_not_for_posts(fake_gitlab, project, forge):
    iid = open_mr(fake_gitlab, project, {"x": "1"})
    fake_gitlab.fail_next(2, 502)
    assert forge.change_request(iid).number == iid
    assert [c.status for c in fake_gitlab.calls_to("GET", "/projects/{id}/merge_requests/{merge_request_iid}")
            ][-3:] == [502, 502, 200]
    fake_gitlab.reset_calls()
    fake_gitlab.fail_next(1, 500, match=lambda method, path: method == "POST")
    with pytest.raises(GitLabError, match="500") as caught:
        forge.create_comment(iid, "hello")
    assert caught.value.status == 500 and len(fake_gitlab.calls) == 1     # a POST may have acted: not resent
    fake_gitlab.fail_next(1, 503, match=lambda method, path: "/statuses/" in path)
    forge.report_check(fake_gitlab.head(project), CheckReport("c", CheckStatus.QUEUED))   # statuses are upserts
    assert len(fake_gitlab.statuses(project)) == 1


def test_retries_are_bounded(fake_gitlab, project, forge):
    fake_gitlab.fail_next(10, 502)
    with pytest.raises(GitLabError, match="502") as caught:
        forge.change_request(1)
    assert caught.value.status == 502 and len(fake_gitlab.calls) == 4     # one try and three retries


def test_rate_limits_honour_retry_after_and_hold_every_worker(fake_gitlab, project):
    waits: list[float] = []
    pacer = LocalPacer(sleep=waits.append)
    clients = GitLabClients(fake_gitlab.url, fake_gitlab.bot_token, pacer=pacer, max_wait=30)
    forge = clients.forge(project)
    fake_gitlab.fail_next(1, 429, retry_after=1)
    started = time.monotonic()
    assert forge.default_branch() == "main"
    assert time.monotonic() - started >= 1.0                            # python-gitlab waited Retry-After
    assert [c.status for c in fake_gitlab.calls] == [429, 200]
    fake_gitlab.fail_next(1, 429, retry_after=600)
    with pytest.raises(RateLimited) as caught:
        forge.bot_user()
    assert 590 < caught.value.retry_in <= 600
    pacer.acquire(clients.pace_key, write=False)                        # every worker now waits
    assert waits and waits[-1] > 590


# -- the description ---------------------------------------------------------------------------------------


def test_description_corrections_are_what_gitlab_does(fake_gitlab, project, clients):
    """GitLab's description lacks what the bot needs in a few places; the fake follows the REST
    documentation there (see tests/fakes/gitlab.py), and still rejects what GitLab would."""
    gl = clients.client
    encoded = "acme%2Fml%2Fmodels"
    gl.http_post(f"/projects/{encoded}/repository/commits", post_data={   # JSON, not multipart
        "branch": "side", "start_branch": "main", "commit_message": "m",
        "actions": [{"action": "create", "file_path": "n", "content": "1"}]})
    assert isinstance(gl.http_get(f"/projects/{encoded}/repository/tree"), list)
    assert fake_gitlab.violations == [] and fake_gitlab.response_errors == []
    with pytest.raises(GitlabHttpError):
        gl.http_post(f"/projects/{encoded}/statuses/{fake_gitlab.head(project)}", post_data={"state": "bogus"})
    [violation] = fake_gitlab.take_violations()
    assert "state" in violation


# -- the role the bot needs --------------------------------------------------------------------------------


def gitlab_tour(fake: FakeGitLab, project: str, forge: GitLabForge) -> None:
    """Every operation of the GitLab forge, as the handlers use them."""
    fake.add_user("bob")
    iid = open_mr(fake, project, {"models/a.yaml": "name: a\nv: 2\n"})
    cr = forge.change_request(iid)
    reader = forge.reader(cr)
    reader.changed_files(cr.base_sha, cr.head_sha)
    reader.read_many(cr.head_sha, ["models/a.yaml", "README.md"])
    reader.list_files(cr.head_sha, "models")
    forge.upsert_comment(iid, MARKER, "plan")
    forge.upsert_comment(iid, MARKER, "plan, edited")
    note = fake.add_note(project, iid, "alice", "/deploy prod")
    forge.react(iid, note, "eyes")
    forge.reviews(iid)
    forge.commits(iid)
    forge.permission("alice")
    forge.team_membership("acme", "ml", "alice")
    forge.report_check(cr.head_sha, CheckReport("modelherd/plan", CheckStatus.COMPLETED, "success", title="plan",
                                                summary="ok"))
    deployment = forge.create_deployment(cr.head_sha, "prod", description="rollout 1",
                                         payload={"modelherd_rollout": "r1"}, production=True)
    forge.set_deployment_status(deployment, "success", description="done")
    forge.retire_environment("prod")
    forge.open_revert_pull("main", {"models/a.yaml": "name: a\nv: 0\n"}, branch="modelherd/revert-1",
                           title="Revert a", body="rolled back")


def refused(fake: FakeGitLab) -> set[tuple[str, str]]:
    return {(c.method, c.template.removeprefix("/api/v4")) for c in fake.calls if c.status == 403}


@pytest.mark.parametrize("role", [DEVELOPER, MAINTAINER])
def test_every_operation_works_with_the_developer_role(role):
    with FakeGitLab(bot_role=role) as fake:
        project = fake.add_project("acme/ml/models", files={"models/a.yaml": "name: a\n", "README.md": "# m\n"})
        gitlab_tour(fake, project, GitLabClients(fake.url, fake.bot_token).forge(project))
        assert refused(fake) == set()
        fake.assert_clean()


def test_reporter_is_not_enough():
    """Developer is the least role: a Reporter bot can read and comment, but GitLab refuses it the
    commit statuses, deployments and the revert merge request (403 Forbidden)."""
    with FakeGitLab(bot_role=REPORTER) as fake:
        project = fake.add_project("acme/ml/models", files={"models/a.yaml": "name: a\n", "README.md": "# m\n"})
        forge = GitLabClients(fake.url, fake.bot_token).forge(project)
        with pytest.raises(GitLabError) as caught:
            gitlab_tour(fake, project, forge)
        assert caught.value.status == 403
        assert refused(fake) == {("POST", "/projects/{id}/statuses/{sha}")}   # the tour stops at the first
        sha = fake.head(project)
        for attempt in (lambda: forge.create_deployment(sha, "prod", description="r", production=True,
                                                        payload={"modelherd_rollout": "r1"}),
                        lambda: forge.open_revert_pull("main", {"models/a.yaml": "v: 0\n"}, branch="modelherd/r",
                                                       title="Revert", body="")):
            with pytest.raises(GitLabError) as caught:
                attempt()
            assert caught.value.status == 403
        assert {" ".join(call) for call in refused(fake)} == {
            "POST /projects/{id}/statuses/{sha}", "POST /projects/{id}/environments",
            "POST /projects/{id}/repository/commits"}
        iid = forge.open_pulls()[0]
        assert forge.change_request(iid).number == iid                  # reading and commenting work
        assert [n.body for n in fake.notes(project, iid) if "plan" in n.body]
        fake.assert_clean()


def test_a_guest_or_a_stranger_sees_nothing():
    with FakeGitLab(bot_role=GUEST) as fake:
        project = fake.add_project("acme/ml/models")
        forge = GitLabClients(fake.url, fake.bot_token).forge(project)
        with pytest.raises(GitLabError) as caught:
            forge.reader().read_many("main", ["README.md"])
        assert caught.value.status == 403
    with FakeGitLab(bot_role=0) as fake:
        project = fake.add_project("acme/ml/models")
        with pytest.raises(GitLabError) as caught:
            GitLabClients(fake.url, fake.bot_token).forge(project).open_pulls()
        assert caught.value.status == 404                               # a private project is hidden


def test_protected_default_branch_and_environment(fake_gitlab, project, clients, forge):
    gl = clients.client
    with pytest.raises(GitlabHttpError) as caught:
        gl.http_post("/projects/acme%2Fml%2Fmodels/repository/commits", post_data={
            "branch": "main", "commit_message": "m", "actions": [{"action": "create", "file_path": "n", "content": "1"}]})
    assert caught.value.response_code == 403
    assert caught.value.error_message == "403 Forbidden - You are not allowed to push into this branch"
    fake_gitlab.protect_environment(project, "prod")                    # Maintainers deploy
    sha = fake_gitlab.head(project)
    with pytest.raises(GitLabError) as refused_deploy:
        forge.create_deployment(sha, "prod", description="r", payload={"modelherd_rollout": "r1"}, production=True)
    assert refused_deploy.value.status == 403
    fake_gitlab.protect_environment(project, "prod", users=[fake_gitlab.bot_username])
    assert forge.create_deployment(sha, "prod", description="r", payload={"modelherd_rollout": "r1"}, production=True)
