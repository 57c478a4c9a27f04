"""Property: whatever arrives at ``/webhooks/github`` or ``/webhooks/gitlab`` — signed or not, any JSON
(deeply nested, odd types, NaN, NUL, lone surrogates, huge numbers), any encoding, odd headers — intake
answers below 500, a refusal carries a one-line reason, and what it accepts the store reads back.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import copy
import json
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelherd.app import create_app
from modelherd.settings import GitHubSettings, GitLabSettings, Settings
from tests.fixtures_store import WEBHOOK_SECRET, sign
from tests.gitlab_app import gitlab_fixture

GITLAB_SECRET = "gitlab-secret"
PROPERTY = settings(max_examples=200, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

# -- JSON values and their texts ---------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**200), max_value=2**200)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.sampled_from(["", "\x00", "a\x00b", "\u2028", "\ufeff", "é", "\U0001f600", "null"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@st.composite
def deep(draw) -> str:
    depth = draw(st.sampled_from([1, 10, 100, 990, 1100, 5000, 100_000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    return opener * depth + "1" + closer * depth


#: JSON-looking texts, valid or not: what json.dumps writes (NaN and Infinity included), deep nesting,
#: escapes no database keeps, truncation.
json_texts = st.one_of(
    json_values.map(lambda v: json.dumps(v)),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
    json_values.map(lambda v: json.dumps({"action": "opened", "x": v})),
    deep(),
    deep(),
    st.sampled_from(['{"a": "\\u0000"}', '{"a": "\\ud800"}', '{"a": "\\udc00\\ud800"}', '["\\ud83d\\ude00"]',
                     '{"a": NaN}', '[Infinity]', '{"n": 1e400}', '{"n": -1e-400}', '{"a": 1, "a": 2}',
                     '{"n": ' + "9" * 5000 + "}", "", "{", "[]", "null", '"x"', "\ufeff{}", '{"a":"\\x"}']),
    json_values.map(lambda v: json.dumps(v)[:-1]),
)


@st.composite
def bodies(draw, texts=json_texts) -> tuple[bytes, str]:
    """(body, content type) in one of the encodings a client might use."""
    text = draw(texts)
    how = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "latin-1", "form", "form", "bytes", "surrogate-bytes"]))
    if how == "form":
        field = draw(st.sampled_from(["payload", "payload", "data", ""]))
        return urlencode({field: text} if field else {}).encode(), "application/x-www-form-urlencoded"
    if how == "bytes":
        return draw(st.binary(max_size=200)), draw(content_types)
    if how == "surrogate-bytes":
        return text.encode("utf-8", "ignore") + b"\xed\xa0\x80", "application/json"
    return text.encode(how, "replace"), draw(st.sampled_from(
        ["application/json", f"application/json; charset={how}", "application/json; charset=bogus"]))


content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", "",
                                 "application/json; charset=utf-8", "multipart/form-data; boundary=x"])
#: Header values: mostly printable, sometimes with control or Latin-1 characters (what WSGI can carry).
header_text = (st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=70)
               | st.text(st.characters(max_codepoint=255, blacklist_characters="\r\n"), max_size=70))


# -- the app ----------------------------------------------------------------------------------------------


@pytest.fixture
def client(store, sqlite_queue):
    settings_ = Settings(github=GitHubSettings(webhook_secret=WEBHOOK_SECRET),
                         gitlab=GitLabSettings(url="https://gitlab.example.com", token="glpat-x",
                                               webhook_secret=GITLAB_SECRET))
    return create_app(settings_, store, sqlite_queue).test_client()


def check(response, store, forge: str) -> None:
    assert response.status_code < 500, (response.status_code, response.data[:500])
    data = response.get_json(silent=True)
    assert isinstance(data, dict), response.data[:200]
    if response.status_code >= 400:
        assert data["error"] and "\n" not in data["error"], data
    elif response.status_code == 202:
        event = store.find_event(forge, data["delivery"])      # what was accepted reads back
        assert event is not None and isinstance(event.payload, dict)
        assert store.claim(event.id, 60) is not None


@st.composite
def github_requests(draw) -> tuple[bytes, dict[str, str]]:
    body, content_type = draw(bodies())
    headers = {"Content-Type": content_type,
               "X-GitHub-Event": draw(st.sampled_from(["pull_request", "push", "ping", "issue_comment"]) | header_text),
               "X-GitHub-Delivery": draw(st.uuids().map(str) | header_text)}
    signature = draw(st.sampled_from(["good", "good", "good", "wrong", "missing", "non-ascii", "random"]))
    if signature == "good":
        headers["X-Hub-Signature-256"] = sign(body)
    elif signature == "wrong":
        headers["X-Hub-Signature-256"] = sign(body, "other")
    elif signature == "non-ascii":
        headers["X-Hub-Signature-256"] = "sha256=" + draw(header_text.filter(lambda s: not s.isascii()))
    elif signature == "random":
        headers["X-Hub-Signature-256"] = draw(header_text)
    for name in draw(st.sets(st.sampled_from(["Content-Type", "X-GitHub-Event", "X-GitHub-Delivery"]), max_size=1)):
        headers.pop(name)
    return body, headers


@PROPERTY
@given(request=github_requests())
def test_github_intake_never_answers_5xx(client, store, request) -> None:
    body, headers = request
    check(client.post("/webhooks/github", data=body, headers=headers), store, "github")


# -- GitLab: real hooks with fields replaced by anything ------------------------------------------------

HOOKS = {name: gitlab_fixture(name) for name in ("merge_request.json", "note_merge_request.json", "push.json",
                                                 "pipeline.json")}
KINDS = {"merge_request": "Merge Request Hook", "note": "Note Hook", "push": "Push Hook", "pipeline": "Pipeline Hook"}


def _paths(node, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    return out


@st.composite
def odd_hooks(draw) -> str:
    """A documented hook with a few fields (at any depth) replaced by random JSON values."""
    hook = copy.deepcopy(HOOKS[draw(st.sampled_from(sorted(HOOKS)))])
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(hook)[1:]))
        node = hook
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = draw(json_values)
    return json.dumps(hook)


@st.composite
def gitlab_requests(draw) -> tuple[bytes, dict[str, str]]:
    body, content_type = draw(bodies(st.one_of(odd_hooks(), odd_hooks(), json_texts)))
    headers = {"Content-Type": content_type,
               "X-Gitlab-Event": draw(st.sampled_from(sorted(KINDS.values())) | header_text)}
    token = draw(st.sampled_from(["good", "good", "good", "wrong", "missing", "odd"]))
    if token != "missing":
        headers["X-Gitlab-Token"] = {"good": GITLAB_SECRET, "wrong": "nope"}.get(token) or draw(header_text)
    for name in ("X-Gitlab-Event-UUID", "Idempotency-Key"):
        if draw(st.booleans()):
            headers[name] = draw(st.uuids().map(str) | header_text)
    return body, headers


@PROPERTY
@given(request=gitlab_requests())
def test_gitlab_intake_never_answers_5xx(client, store, request) -> None:
    body, headers = request
    check(client.post("/webhooks/gitlab", data=body, headers=headers), store, "gitlab")
