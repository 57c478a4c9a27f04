"""The fake GitHub itself: the real PyGithub client gets through it cleanly on both flavors, and a
request the official description rejects is caught, recorded and answered 422."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from github import Auth, Github, GithubException

from tests.fakes.github import FakeGitHub

FLAVORS = ["github.com", "ghes-3.19"]
ANNOTATION = {"path": "models/m1.yaml", "start_line": 1, "end_line": 1, "annotation_level": "failure",
              "message": "replicas must be at least 2"}


@pytest.fixture
def world(fake_github: FakeGitHub):
    """A repository with a pull request changing 75 manifests, and a PyGithub client logged in as the app."""
    repo = fake_github.add_repo("acme", "models")
    key = fake_github.generate_app_key()
    base = fake_github.head(repo)
    head = fake_github.add_commit(repo, {f"models/m{i}.yaml": f"name: m{i}\nreplicas: 1\n" for i in range(75)})
    number = fake_github.open_pull(repo, base, head, author="alice")
    auth = Auth.AppAuth(fake_github.state.app_id, key).get_installation_auth(fake_github.installation_id("acme"))
    gh = Github(base_url=fake_github.base_url, auth=auth, seconds_between_requests=0, seconds_between_writes=0,
                retry=None)
    return fake_github, gh, repo, number, head


def raw(fake: FakeGitHub, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, fake.url(path), json=body, headers={"Authorization": "token test"}, timeout=10)


# -- the real client, both flavors ------------------------------------------------------------------


@pytest.mark.parametrize("fake_github", FLAVORS, indirect=True)
def test_pygithub_plan_flow_breaks_no_rule(world):
    fake, gh, repo_name, number, head = world
    repo = gh.get_repo(repo_name)
    pr = repo.get_pull(number)
    assert pr.head.sha == head and pr.user.login == "alice"

    files = list(pr.get_files())  # 75 files: three pages of 30, followed through the Link header
    assert len(files) == 75 and {f.status for f in files} == {"added"}
    assert len(fake.calls_to("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files")) == 3

    comment = pr.create_issue_comment("<!-- modelherd:plan -->\nplanning…")
    comment.edit("<!-- modelherd:plan -->\n2 changes")
    assert [c.body for c in fake.comments(repo_name, number)] == ["<!-- modelherd:plan -->\n2 changes"]
    assert fake.comments(repo_name, number)[0].user == "modelherd[bot]"

    run = repo.create_check_run("modelherd/plan", head, status="completed", conclusion="failure",
                                output={"title": "1 manifest fails", "summary": "…", "annotations": [ANNOTATION] * 50})
    run.edit(output={"title": "1 manifest fails", "summary": "…", "annotations": [ANNOTATION] * 7})
    assert len(fake.check_runs(repo_name, head)[0].annotations) == 57

    # app.yaml grants no ``statuses`` permission (the app reports with check runs): GitHub refuses
    with pytest.raises(GithubException) as refused:
        repo.get_commit(head).create_status("success", context="modelherd/approvals", description="2 of 2")
    assert refused.value.status == 403 and refused.value.data["message"] == "Resource not accessible by integration"
    assert fake.statuses(repo_name, head) == []

    assert fake.violations == [] and fake.response_errors == []
    assert len(fake.writes()) == 6  # token, comment, edit, check run, update, refused status


@pytest.mark.parametrize("fake_github", FLAVORS, indirect=True)
def test_reads_for_approvals_and_contents(world):
    fake, gh, repo_name, number, head = world
    fake.add_review(repo_name, number, "bob", "APPROVED")
    fake.set_permission(repo_name, "bob", "maintain")
    fake.add_team_member("acme", "platform", "bob", state="active")
    fake.add_team_member("acme", "platform", "carol", state="pending")
    repo = gh.get_repo(repo_name)

    reviews = list(repo.get_pull(number).get_reviews())
    assert [(r.user.login, r.state, r.commit_id) for r in reviews] == [("bob", "APPROVED", head)]
    assert repo.get_collaborator_permission("bob") == "write"  # maintain reads as write; role_name keeps it
    states = {login: raw_membership(fake, gh, login) for login in ("bob", "carol", "dave")}
    assert states == {"bob": "active", "carol": "pending", "dave": 404}

    content = repo.get_contents("models/m1.yaml", ref=head)
    assert content.decoded_content == b"name: m1\nreplicas: 1\n"
    tree = repo.get_git_tree(head, recursive=True).tree
    assert {e.path for e in tree} >= {"models", "models/m1.yaml", "README.md"}
    with pytest.raises(GithubException) as missing:
        repo.get_contents("models/nope.yaml", ref=head)
    assert missing.value.status == 404


def raw_membership(fake: FakeGitHub, gh: Github, login: str):
    """Team membership state through PyGithub's requester (its Team API needs the team's id first)."""
    status, _, body = gh.requester.requestJson("GET", f"/orgs/acme/teams/platform/memberships/{login}")
    return json.loads(body)["state"] if status == 200 else status


def test_conditional_request_gets_304_and_spends_no_rate_limit(fake_github: FakeGitHub):
    repo = fake_github.add_repo("acme", "models", files={"models/a.yaml": "name: a\n"})
    first = raw(fake_github, "GET", f"/repos/{repo}/contents/models/a.yaml?ref=main")
    assert first.status_code == 200 and first.headers["ETag"]
    assert base64.b64decode(first.json()["content"]) == b"name: a\n"
    remaining = int(first.headers["X-RateLimit-Remaining"])
    again = requests.get(fake_github.url(f"/repos/{repo}/contents/models/a.yaml?ref=main"), timeout=10,
                         headers={"Authorization": "token test", "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert int(again.headers["X-RateLimit-Remaining"]) == remaining
    for name in ("Limit", "Remaining", "Reset", "Used", "Resource"):
        assert f"X-RateLimit-{name}" in again.headers


def test_revert_pull_request_through_the_git_database(fake_github: FakeGitHub):
    repo = fake_github.add_repo("acme", "models", files={"models/a.yaml": "version: 1\n"})
    fake_github.add_commit(repo, {"models/a.yaml": "version: 2\n"}, branch="main")
    fake_github.add_user_token("pat", "maintainer")
    fake_github.set_permission(repo, "maintainer", "write")
    gh = Github(base_url=fake_github.base_url, auth=Auth.Token("pat"), seconds_between_requests=0,
                seconds_between_writes=0, retry=None)
    r = gh.get_repo(repo)
    main = r.get_git_ref("heads/main").object.sha
    blob = r.create_git_blob("version: 1\n", "utf-8")
    tree = r.create_git_tree([_tree_element("models/a.yaml", blob.sha)], base_tree=r.get_git_tree(main))
    commit = r.create_git_commit("Revert to version 1", tree, [r.get_git_commit(main)])
    r.create_git_ref("refs/heads/revert-a", commit.sha)
    pr = r.create_pull(base="main", head="revert-a", title="Revert a to version 1", body="/rollback")
    assert pr.number == 1 and fake_github.read_file(repo, "revert-a", "models/a.yaml") == "version: 1\n"
    assert [f.filename for f in pr.get_files()] == ["models/a.yaml"]


def _tree_element(path: str, sha: str):
    from github import InputGitTreeElement

    return InputGitTreeElement(path, "100644", "blob", sha=sha)


# -- validation bites -------------------------------------------------------------------------------


@pytest.mark.parametrize("fake_github", FLAVORS, indirect=True)
@pytest.mark.parametrize("body, where", [
    ({"name": "modelherd/plan", "head_sha": "abc", "conclusion": "great"}, "conclusion"),
    ({"name": "modelherd/plan", "head_sha": "abc",
      "output": {"title": "t", "summary": "s", "annotations": [ANNOTATION] * 51}}, "output/annotations"),
    ({"head_sha": "abc"}, "'name' is a required property"),
])
def test_invalid_check_run_is_a_violation_answered_422(fake_github: FakeGitHub, body, where):
    repo = fake_github.add_repo("acme", "models")
    response = raw(fake_github, "POST", f"/repos/{repo}/check-runs", body)
    assert response.status_code == 422
    assert where in response.json()["message"]
    violations = fake_github.take_violations()
    assert len(violations) == 1 and where in violations[0] and violations[0].startswith("POST /repos/acme/models/")
    assert fake_github.check_runs(repo) == []  # nothing was created
    assert fake_github.calls[-1].status == 422 and fake_github.calls[-1].is_write


def test_comment_without_body_and_bad_path_parameter(fake_github: FakeGitHub):
    repo = fake_github.add_repo("acme", "models")
    assert raw(fake_github, "POST", f"/repos/{repo}/issues/1/comments", {"text": "hi"}).status_code == 422
    assert raw(fake_github, "POST", f"/repos/{repo}/issues/one/comments", {"body": "hi"}).status_code == 422
    violations = fake_github.take_violations()
    assert "'body' is a required property" in violations[0]
    assert "issue_number" in violations[1]


def test_unknown_and_unserved_operations_are_violations(fake_github: FakeGitHub):
    repo = fake_github.add_repo("acme", "models")
    assert raw(fake_github, "GET", f"/repos/{repo}/pullz/1").status_code == 422
    assert raw(fake_github, "DELETE", f"/repos/{repo}/contents/a.yaml", {"message": "m", "sha": "x"}).status_code == 501
    unknown, unserved = fake_github.take_violations()
    assert "no such path in the API description" in unknown
    assert "does not serve it" in unserved


def test_violations_fail_the_fixture_teardown(github_validators):
    with FakeGitHub("github.com", validator=github_validators.get("github.com")) as fake:
        raw(fake, "POST", "/repos/acme/models/check-runs", {"name": "x", "head_sha": "a", "conclusion": "great"})
        with pytest.raises(AssertionError, match="request broke the description"):
            fake.assert_clean()


def test_concurrent_clients_are_all_recorded(fake_github: FakeGitHub):
    from concurrent.futures import ThreadPoolExecutor

    repo = fake_github.add_repo("acme", "models")
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: raw(fake_github, "GET", f"/repos/{repo}").status_code, range(30)))
    assert statuses == [200] * 30 and len(fake_github.reads()) == 30
    assert fake_github.rate.used == 30


# -- politeness: faults, rate limits, latency ----------------------------------------------------------


def test_injected_faults_and_rate_limit_headers(fake_github: FakeGitHub):
    repo = fake_github.add_repo("acme", "models")
    fake_github.fail_next(1, 502)
    fake_github.fail_next(1, 403, retry_after=7)
    fake_github.fail_next(1, 429, reset_in=30)
    first, second, third = (raw(fake_github, "GET", f"/repos/{repo}") for _ in range(3))
    assert first.status_code == 502
    assert second.status_code == 403 and second.headers["Retry-After"] == "7"
    assert "secondary rate limit" in second.json()["message"]
    assert third.status_code == 429 and third.headers["X-RateLimit-Remaining"] == "0"
    assert 25 <= int(third.headers["X-RateLimit-Reset"]) - time.time() <= 31
    assert raw(fake_github, "GET", f"/repos/{repo}").status_code == 200
    assert [c.status for c in fake_github.calls] == [502, 403, 429, 200]


def test_fault_can_target_one_endpoint_and_latency_is_added(fake_github: FakeGitHub):
    repo = fake_github.add_repo("acme", "models")
    fake_github.fail_next(1, 502, match=lambda method, path: method == "POST")
    fake_github.latency_ms = 50
    started = time.perf_counter()
    assert raw(fake_github, "GET", f"/repos/{repo}").status_code == 200
    assert time.perf_counter() - started >= 0.05
    assert len(fake_github.faults) == 1


def test_installation_tokens_expire_and_need_a_valid_jwt(fake_github: FakeGitHub):
    fake_github.add_repo("acme", "models")
    key = fake_github.generate_app_key()
    auth = Auth.AppAuth(fake_github.state.app_id, key)
    gh = Github(base_url=fake_github.base_url, auth=auth.get_installation_auth(fake_github.installation_id("acme")),
                seconds_between_requests=0, seconds_between_writes=0, retry=None)
    assert gh.get_repo("acme/models").default_branch == "main"
    token = fake_github.calls_to("POST", "/app/installations/{installation_id}/access_tokens")
    assert len(token) == 1 and token[0].status == 201

    forged = Auth.AppAuth(fake_github.state.app_id, FakeGitHub().generate_app_key())
    response = requests.get(fake_github.url("/app"), timeout=10,
                            headers={"Authorization": f"Bearer {forged.create_jwt()}"})
    assert response.status_code == 401

    fake_github.expire_tokens()
    with pytest.raises(GithubException) as expired:
        gh.get_repo("acme/models")
    assert expired.value.status == 401

    unknown = requests.get(fake_github.url("/repos/acme/models"), timeout=10,
                           headers={"Authorization": "token ghs_" + "0" * 36})
    assert unknown.status_code == 401        # a token this server never issued, as GitHub answers


# -- figures -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_validation_cost(flavor, github_validators, capsys):
    validator = github_validators.get(flavor)
    body = json.dumps({"name": "modelherd/plan", "head_sha": "a" * 40, "status": "completed", "conclusion": "success",
                       "output": {"title": "t", "summary": "s", "annotations": [ANNOTATION] * 50}})
    headers = {"Content-Type": "application/json"}
    rounds = 50
    started = time.perf_counter()
    for _ in range(rounds):
        assert validator.validate("POST", "/repos/acme/models/check-runs", None, headers, body) == []
    big = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        assert validator.validate("GET", "/repos/acme/models/contents/models/a.yaml", {"ref": "main"}) == []
    small = (time.perf_counter() - started) / rounds
    with capsys.disabled():
        print(f"\n[{flavor}] validator built in {validator.stats.build_seconds * 1000:.0f} ms over "
              f"{len(validator.spec['paths'])} paths; request validation: GET {small * 1000:.2f} ms, "
              f"POST check run with 50 annotations {big * 1000:.2f} ms")
    assert small < 0.05 and big < 0.1


@pytest.mark.parametrize("fake_github", FLAVORS, indirect=True)
def test_tarball_redirects_to_a_real_archive_of_the_commit(world):
    """As GitHub: 302 from the API to codeload (github.com: another host; GHES: its own /_codeload), which
    answers the commit's tree as a .tar.gz below ``owner-repo-<sha7>/`` with the SHA in its pax header;
    a private repository's archive needs the token the redirect carries."""
    import io
    import tarfile

    fake, gh, repo, _, head = world
    link = gh.get_repo(repo).get_archive_link("tarball", head)
    if fake.flavor == "github.com":
        assert link.startswith("http://localhost:") and "/acme/models/legacy.tar.gz/" in link
    else:
        assert link.startswith(fake.host_url + "/_codeload/acme/models/legacy.tar.gz/")
    response = requests.get(link, timeout=10)
    assert response.status_code == 200 and "Content-Length" not in response.headers
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}
        assert tar.pax_headers == {"comment": head}
    top = f"acme-models-{head[:7]}/"
    assert files[top + "models/m3.yaml"] == b"name: m3\nreplicas: 1\n" and len(files) == 76   # + README
    assert [c.template for c in fake.calls[-2:]] == ["/repos/{owner}/{repo}/tarball/{ref}",
                                                    "(codeload) /{owner}/{repo}/legacy.tar.gz/{ref}"]

    fake.state.repos["acme/models"].private = True
    assert requests.get(link, timeout=10).status_code == 404                   # no token: not found
    private = gh.get_repo(repo).get_archive_link("tarball", head)
    assert "token=" in private and requests.get(private, timeout=10).status_code == 200
