"""A fake Slack Web API over real HTTP, holding every call to Slack's own API description.

    with FakeSlack() as fake:                          # channels: #deploys (C0DEPLOYS1) and more
        client = WebClient(token=fake.token, base_url=fake.base_url)
        client.chat_postMessage(channel="#deploys", text="hi")
        fake.messages                                   # what was posted, with updates and thread replies
        fake.assert_clean()                             # no call broke the description

The description is Slack's ``slack_web_openapi_v2.json`` (Swagger 2.0), vendored gzip-compressed in
``tests/contracts/slack/``.  Swagger 2.0 is not OpenAPI 3, so each served method's ``formData`` /
``query`` parameters are turned into a JSON Schema (:class:`SwaggerMethodValidator`): the body (JSON,
form-encoded or multipart, as Slack accepts) must have the required parameters, only known ones, each
of its declared type (form values are strings: booleans ``true``/``false``/``1``/``0``, integers by
their digits).  Parameters the description types as a "JSON-based array … presented as a URL-encoded
string" (``blocks``, ``attachments``) may be the JSON array itself in a JSON body, as Slack accepts,
and are checked against the description's ``blocks`` definition.  The description declares the token
as a ``token`` header; Slack (and slack-sdk) send ``Authorization: Bearer``, a form ``token`` works too.
Responses are validated against the method's success or error schema.

On top of the description the fake enforces what Slack documents in prose: text or blocks, Block Kit
limits (50 blocks, 3000 characters of section text, 10 context elements), an existing channel, an
existing parent for ``thread_ts`` (a top-level message: a reply's ``ts`` is refused), an existing message
for ``chat.update``, ``reply_broadcast`` only in a thread, a channel *id* (not a name) for
``conversations.history`` and ``conversations.replies``.

One correction of the description (:data:`CORRECTIONS`): ``conversations.history`` of an empty channel
answers ``"messages": []``, which the description's ``minItems: 1`` would refuse.

Scopes, as Slack enforces them for a bot token: the token holds the bot scopes of the Slack app
manifest the README tells users to create (``deploy/slack-app-manifest.yaml``, read at test time), and
a method whose scope it lacks is answered ``{"ok": false, "error": "missing_scope", "needed": …,
"provided": …}`` (with Slack's ``X-OAuth-Scopes`` / ``X-Accepted-OAuth-Scopes`` headers on every
answer). The scope a method needs comes from the description's ``security`` (``slackAuth``), which
still names the pre-2020 scopes: :data:`GRANULAR` maps them to the bot scopes of today's apps
(``chat:write:bot`` → ``chat:write``; ``chat:write:user`` is a user-token scope), and
``conversations.info`` needs the scope of the conversation's kind (``channels:read`` for a public
channel). The description's error schemas of ``chat.postMessage`` and ``chat.update`` lack
``missing_scope`` and its ``needed``/``provided`` fields, which Slack sends for every method (its
``conversations.info`` schema has them): :func:`scope_error_schema` adds them. A bot posts only in a
channel it is a member of (``not_in_channel``) unless it holds ``chat:write.public``; the bot is a
member of every channel of the fake unless told otherwise (``joined``), as after ``/invite``.

Faults: :meth:`FakeSlack.rate_limit` answers the next calls 429 with ``Retry-After``;
:meth:`FakeSlack.outage` answers 503 (or :meth:`FakeSlack.down` as a context manager) until
:meth:`FakeSlack.recover`; :meth:`FakeSlack.lose_next` carries a call out and answers 500 anyway (the
answer was lost: the client cannot tell whether the message was posted).

Pytest: the ``fake_slack`` fixture here (register with ``pytest_plugins = ["tests.fakes.slack"]``);
its teardown fails the test when a call broke the description.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import jsonschema
import pytest
import yaml
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.http import QuietHandler

SPEC_FILE = ("slack", "slack_web_openapi_v2.json.gz")
SERVED = ("chat.postMessage", "chat.update", "conversations.info", "conversations.list", "conversations.history",
          "conversations.replies")
DEFAULT_CHANNELS = {"C0DEPLOYS1": "deploys", "C0PRODOPS1": "prod-deploys", "C0STAGING1": "staging-deploys",
                    "C0RISKML01": "risk-ml", "C0DRIFT001": "model-drift", "C0PRIVATE1": "ml-private"}
DEFAULT_PRIVATE = frozenset({"C0PRIVATE1"})        # private channels (Slack: a bot sees them once invited)
TEAM_ID, BOT_ID, BOT_USER = "T0FAKETEAM", "B0FAKEBOT1", "U0FAKEBOT1"
MAX_BLOCKS, SECTION_TEXT, HEADER_TEXT, CONTEXT_ELEMENTS = 50, 3000, 150, 10
SLACK_APP_MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "slack-app-manifest.yaml"
#: The description's (pre-granular) scope names → the bot scope of a Slack app today; None: not a bot
#: scope (a user token's).
GRANULAR = {"chat:write:bot": "chat:write", "chat:write:user": None}
#: conversations.info / .list: the scope per kind of conversation (Slack's documentation of the methods).
CONVERSATION_SCOPES = {"public": "channels:read", "private": "groups:read", "im": "im:read", "mpim": "mpim:read"}
#: conversations.history / .replies: the scope per kind of conversation.
HISTORY_SCOPES = {"public": "channels:history", "private": "groups:history", "im": "im:history",
                  "mpim": "mpim:history"}
#: conversations.list ``types`` → the kind of conversation.
LIST_TYPES = {"public_channel": "public", "private_channel": "private", "im": "im", "mpim": "mpim"}


def manifest_bot_scopes(path: Path = SLACK_APP_MANIFEST) -> list[str]:
    """The bot scopes of the Slack app manifest users are told to create."""
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    return list(manifest["oauth_config"]["scopes"]["bot"])


def bot_scopes(spec: Mapping[str, Any], method: str) -> list[str]:
    """The bot scopes that let a bot token call ``method`` (any one), from the description."""
    operation = next(iter(spec["paths"][f"/{method}"].values()))
    named = [scope for entry in operation.get("security", []) for scope in entry.get("slackAuth", [])]
    scopes = [GRANULAR.get(scope, scope) for scope in named]
    return [scope for scope in dict.fromkeys(scopes) if scope and scope != "none"]


def scope_error_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An error schema that also admits ``missing_scope`` with its ``needed`` and ``provided``."""
    fixed = copy.deepcopy(dict(schema))
    enum = fixed.get("properties", {}).get("error", {}).get("enum")
    if enum is not None and "missing_scope" not in enum:
        enum.append("missing_scope")
    fixed.setdefault("properties", {}).setdefault("needed", {"type": "string"})
    fixed["properties"].setdefault("provided", {"type": "string"})
    return fixed


@functools.cache
def load_slack_description() -> dict[str, Any]:
    """Slack's Web API description with :data:`CORRECTIONS` applied (parsed once per process; don't mutate)."""
    from tests.contracts import contract_text

    spec = json.loads(contract_text(*SPEC_FILE))
    for correct in CORRECTIONS:
        correct(spec)
    return spec


def _empty_history_is_a_list(spec: dict[str, Any]) -> None:
    """``conversations.history`` of a channel with no messages answers ``"messages": []``."""
    schema = spec["paths"]["/conversations.history"]["get"]["responses"]["200"]["schema"]
    schema["properties"]["messages"].pop("minItems", None)


#: Where Slack answers what its (2020) description refuses.
CORRECTIONS = (_empty_history_is_a_list,)


# ==================================================================================================
# Validation against the Swagger 2.0 description


class SwaggerMethodValidator:
    """Requests and responses of one Web API method, from its Swagger 2.0 operation."""

    _COERCE: ClassVar[dict[str, dict[str, bool]]] = {"boolean": {"true": True, "false": False, "1": True, "0": False}}

    def __init__(self, spec: Mapping[str, Any], method: str):
        item = spec["paths"][f"/{method}"]
        self.method = method
        self.http_method, self.operation = next(iter(item.items()))
        self.definitions = spec["definitions"]
        params = [p for p in self.operation.get("parameters", []) if p["in"] in ("formData", "query")]
        self.params = {p["name"]: p for p in params}
        self.token_param = next((p for p in self.operation.get("parameters", []) if p["name"] == "token"), None)
        self.json_encoded = {p["name"] for p in params if "JSON-based array" in p.get("description", "")}

    def body_schema(self, json_body: bool) -> dict[str, Any]:
        """A JSON Schema of the parameters (token excluded: it is checked as authentication)."""
        properties: dict[str, Any] = {}
        for name, param in self.params.items():
            if name == "token":
                continue
            schema: dict[str, Any] = {"type": param.get("type", "string")}
            if json_body and name in self.json_encoded:
                schema = {"anyOf": [schema, {"$ref": "#/definitions/blocks"}]}
            properties[name] = schema
        required = sorted(n for n, p in self.params.items() if p.get("required") and n != "token")
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False,
                "definitions": self.definitions}

    def coerce_form(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Form values typed as the description declares them (an untypable value stays a string)."""
        out: dict[str, Any] = {}
        for name, value in form.items():
            kind = self.params.get(name, {}).get("type", "string")
            if kind == "boolean":
                out[name] = self._COERCE["boolean"].get(value.lower(), value)
            elif kind == "integer" and value.lstrip("-").isdigit():
                out[name] = int(value)
            elif kind == "number" and value.replace(".", "", 1).lstrip("-").isdigit():
                out[name] = float(value)
            else:
                out[name] = value
        return out

    def validate_request(self, args: Mapping[str, Any], *, json_body: bool) -> list[str]:
        """Errors of the request's parameters; JSON-encoded strings (form bodies) are decoded and checked."""
        errors = [f"{self.method}: {_where(e)}: {e.message}" for e in
                  jsonschema.Draft4Validator(self.body_schema(json_body)).iter_errors(dict(args))]
        for name in self.json_encoded & set(args):
            value = args[name]
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError as exc:
                    errors.append(f"{self.method}: {name} is not JSON: {exc}")
                    continue
            schema = {"$ref": "#/definitions/blocks", "definitions": self.definitions}
            errors += [f"{self.method}: {name}/{_where(e)}: {e.message}"
                       for e in jsonschema.Draft4Validator(schema).iter_errors(value)]
        return errors

    def validate_response(self, status: int, body: Any) -> list[str]:
        """Errors of a response body against the success (200, ok) or the error (default) schema."""
        responses = self.operation["responses"]
        ok = status == 200 and body.get("ok")
        response = responses["200"] if ok else responses.get("default")
        if response is None or "schema" not in response:
            return []
        schema = response["schema"] if ok else scope_error_schema(response["schema"])
        schema = {**schema, "definitions": self.definitions}
        return [f"{self.method} response: {_where(e)}: {e.message}"
                for e in jsonschema.Draft4Validator(schema).iter_errors(body)]


def _where(error: jsonschema.ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(root)"


# ==================================================================================================
# State


@dataclass
class Posted:
    """A message as the fake holds it; ``updates`` are its earlier versions, oldest first."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None

    def mrkdwn(self) -> list[str]:
        """Every text the blocks carry (mrkdwn and plain_text), in order."""
        return list(_texts(self.blocks or []))


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            if isinstance(value, (dict, list)):
                yield from _texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _texts(value)


@dataclass
class Call:
    method: str
    status: int
    ok: bool
    error: str | None
    args: dict[str, Any]


class SlackError(Exception):
    """Answered ``{"ok": false, "error": code}`` with ``status`` (200 unless told)."""

    def __init__(self, code: str, status: int = 200, headers: dict[str, str] | None = None,
                 **fields: str):
        super().__init__(code)
        self.code, self.status, self.headers, self.fields = code, status, headers or {}, fields


class SlackState:
    """Channels and their messages, with Slack's rules for posting, threading and updating."""

    def __init__(self, channels: Mapping[str, str], joined: set[str] | None = None,
                 private: frozenset[str] | set[str] = DEFAULT_PRIVATE):
        self.channels = dict(channels)            # id → name
        self.joined = set(self.channels) if joined is None else set(joined)   # where the bot is a member
        self.private = set(private) & set(self.channels)
        self.messages: list[Posted] = []
        self._ts = itertools.count(1)
        self._lock = threading.Lock()

    def kind(self, channel_id: str) -> str:
        """``private`` or ``public``: which scopes read the channel."""
        return "private" if channel_id in self.private else "public"

    def channel_id(self, channel: str) -> str:
        """An id or ``#name`` / ``name`` → the id; ``channel_not_found`` otherwise."""
        if channel in self.channels:
            return channel
        name = channel.lstrip("#")
        for cid, cname in self.channels.items():
            if cname == name:
                return cid
        raise SlackError("channel_not_found")

    def channel_by_id(self, channel: str) -> str:
        """Methods of ``conversations.*`` take a channel id, never a name: ``channel_not_found``."""
        if channel not in self.channels:
            raise SlackError("channel_not_found")
        return channel

    def find(self, channel_id: str, ts: str) -> Posted | None:
        return next((m for m in self.messages if m.channel == channel_id and m.ts == ts), None)

    def post(self, args: Mapping[str, Any]) -> Posted:
        channel = self.channel_id(str(args["channel"]))
        text, blocks = args.get("text"), _blocks(args.get("blocks"))
        if not text and not blocks:
            raise SlackError("no_text")
        check_blocks(blocks)
        thread_ts = args.get("thread_ts")
        with self._lock:
            if thread_ts is not None:
                parent = self.find(channel, str(thread_ts))
                if parent is None or parent.is_reply:
                    raise SlackError("thread_not_found")
            elif args.get("reply_broadcast"):
                raise SlackError("invalid_arguments")
            message = Posted(channel, f"{1_700_000_000 + next(self._ts)}.000100", text, blocks,
                             str(thread_ts) if thread_ts else None, bool(args.get("reply_broadcast")))
            self.messages.append(message)
            return message

    def update(self, args: Mapping[str, Any]) -> Posted:
        channel = self.channel_id(str(args["channel"]))
        blocks = _blocks(args.get("blocks"))
        check_blocks(blocks)
        with self._lock:
            message = self.find(channel, str(args["ts"]))
            if message is None:
                raise SlackError("message_not_found")
            message.updates.append({"text": message.text, "blocks": message.blocks})
            if "text" in args:
                message.text = args["text"]
            if "blocks" in args:
                message.blocks = blocks
            return message


def _after(ts: str, oldest: Any) -> bool:
    """Whether a message's ``ts`` is after ``oldest`` (exclusive, as Slack's default); no ``oldest``: yes."""
    return oldest is None or float(ts) > float(oldest)


def _ts_text(value: Any) -> str:
    """A ``ts`` as Slack writes it (the description types it a number: a form sends its text)."""
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else value


def check_blocks(blocks: list[dict[str, Any]] | None) -> None:
    """Block Kit limits Slack enforces (``invalid_blocks``)."""
    if not blocks:
        return
    if len(blocks) > MAX_BLOCKS:
        raise SlackError("invalid_blocks")
    for block in blocks:
        kind = block.get("type")
        text = block.get("text") or {}
        if kind == "section" and (len(text.get("text", "")) > SECTION_TEXT or
                                  text.get("type") not in ("mrkdwn", "plain_text") or not text.get("text")):
            raise SlackError("invalid_blocks")
        if kind == "header" and (text.get("type") != "plain_text" or len(text.get("text", "")) > HEADER_TEXT):
            raise SlackError("invalid_blocks")
        if kind == "context" and not 0 < len(block.get("elements", [])) <= CONTEXT_ELEMENTS:
            raise SlackError("invalid_blocks")


# ==================================================================================================
# The server


class FakeSlack:
    """The HTTP server, validation, faults and recording (see the module docstring)."""

    def __init__(self, channels: Mapping[str, str] | None = None, token: str = "xoxb-fake-test-token", *,
                 scopes: list[str] | None = None, joined: set[str] | None = None):
        """``scopes``: the bot token's (default: the manifest's); ``joined``: ids of the channels the bot
        is a member of (default: all)."""
        spec = load_slack_description()
        self.validators = {m: SwaggerMethodValidator(spec, m) for m in SERVED}
        self.method_scopes = {m: bot_scopes(spec, m) for m in SERVED}
        self.known_methods = {p.lstrip("/") for p in spec["paths"]}
        self.token = token
        self.scopes = list(manifest_bot_scopes() if scopes is None else scopes)
        self.scopes_used: set[str] = set()       # the scopes that authorised a call
        self.state = SlackState(channels or DEFAULT_CHANNELS, joined)
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.response_errors: list[str] = []
        self._rate_limited: list[int] = []        # Retry-After of the next 429 answers
        self._outage: int | None = 0              # 503 answers left; None: until recover()
        self._lost: list[tuple[int, Any]] = []    # (status, match) of calls carried out, then answered so
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-slack", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/api/"

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------------
    def rate_limit(self, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls 429 with ``Retry-After: retry_after``."""
        with self._lock:
            self._rate_limited.extend([retry_after] * times)

    def outage(self, times: int | None = None) -> None:
        """Answer 503 to the next ``times`` calls, or to every call until :meth:`recover`."""
        with self._lock:
            self._outage = times

    def recover(self) -> None:
        with self._lock:
            self._outage, self._rate_limited, self._lost = 0, [], []

    def lose_next(self, n: int = 1, status: int = 500, *, match: Any = None) -> None:
        """Carry out the next ``n`` calls ``match(method, args)`` accepts (default: every
        ``chat.postMessage``), then answer ``status`` with no JSON: Slack acted, its answer was lost."""
        match = match or (lambda method, _args: method == "chat.postMessage")
        with self._lock:
            self._lost.extend([(status, match)] * n)

    @contextmanager
    def down(self) -> Iterator[None]:
        """Slack answers 503 inside the block."""
        self.outage()
        try:
            yield
        finally:
            self.recover()

    # -- what was recorded -------------------------------------------------------------------------
    @property
    def messages(self) -> list[Posted]:
        return list(self.state.messages)

    def top_level(self, channel: str | None = None) -> list[Posted]:
        cid = self.state.channel_id(channel) if channel else None
        return [m for m in self.messages if not m.is_reply and (cid is None or m.channel == cid)]

    def replies(self, parent: Posted) -> list[Posted]:
        return [m for m in self.messages if m.thread_ts == parent.ts and m.channel == parent.channel]

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def assert_clean(self) -> None:
        problems = self.violations + self.response_errors
        assert not problems, "calls broke Slack's Web API description:\n" + "\n".join(problems)

    def transcript(self) -> str:
        """The channel as a reader sees it: each top-level message, its replies indented."""
        lines: list[str] = []
        for top in self.top_level():
            lines.append(_render(top, f"#{self.state.channels[top.channel]}"))
            lines += ["    " + _render(r, "↳").replace("\n", "\n    ") for r in self.replies(top)]
        return "\n".join(lines)

    # -- HTTP --------------------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        method = request.path.removeprefix("/api/")
        status, body, headers = self._handle(method, request)
        response = Response(body if isinstance(body, str) else json.dumps(body), status=status, headers=headers,
                            content_type="text/plain" if isinstance(body, str) else "application/json; charset=utf-8")
        return response(environ, start_response)

    def _handle(self, method: str, request: Request) -> tuple[int, Any, dict[str, str]]:
        args, json_body = self._arguments(request)
        fault = self._fault()
        if fault is not None:
            self.calls.append(Call(method, fault[0], False, "fault", args))
            return fault
        try:
            if method not in self.known_methods:
                raise SlackError("unknown_method", status=404)
            validator = self.validators.get(method)
            if validator is None:
                self.violations.append(f"{method}: exists in the description but the fake does not serve it")
                raise SlackError("unknown_method", status=404)
            self._authenticate(request, args)
            args.pop("token", None)
            if not json_body:
                args = validator.coerce_form(args)
            errors = validator.validate_request(args, json_body=json_body)
            if errors:
                self.violations.extend(errors)
                raise SlackError("invalid_arguments")
            lost = self._take_lost(method, args)
            self._authorize(method, args)
            status, body = 200, self._dispatch(method, args)
        except SlackError as exc:
            status, body = exc.status, {"ok": False, "error": exc.code, **exc.fields}
            lost = None
        if method in self.validators:
            self.response_errors.extend(self.validators[method].validate_response(status, body))
        if lost is not None:                      # done, but the client hears a failure
            self.calls.append(Call(method, lost, False, "lost", args))
            return lost, "upstream request timeout", {}
        self.calls.append(Call(method, status, bool(body.get("ok")), body.get("error"), args))
        headers = {"X-OAuth-Scopes": ",".join(self.scopes)}
        if method in self.method_scopes:
            headers["X-Accepted-OAuth-Scopes"] = ",".join(self.method_scopes[method])
        return status, body, headers

    def _take_lost(self, method: str, args: Mapping[str, Any]) -> int | None:
        with self._lock:
            for index, (status, match) in enumerate(self._lost):
                if match(method, args):
                    del self._lost[index]
                    return status
        return None

    def _fault(self) -> tuple[int, Any, dict[str, str]] | None:
        with self._lock:
            if self._rate_limited:
                wait = self._rate_limited.pop(0)
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)}
            if self._outage is None or self._outage > 0:
                if self._outage:
                    self._outage -= 1
                return 503, "upstream connect error or disconnect/reset before headers", {}
        return None

    def _arguments(self, request: Request) -> tuple[dict[str, Any], bool]:
        """The call's arguments from the query and a JSON, form or multipart body; (args, JSON body?)."""
        args: dict[str, Any] = dict(parse_qsl(request.query_string.decode()))
        if request.mimetype == "application/json":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                self.violations.append(f"{request.path}: JSON body is not an object")
                return args, True
            args.update(body)
            return args, True
        args.update(request.form.to_dict())
        return args, False

    def _authenticate(self, request: Request, args: Mapping[str, Any]) -> None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else args.get("token")
        if not token:
            raise SlackError("not_authed")
        if token != self.token:
            raise SlackError("invalid_auth")

    def _authorize(self, method: str, args: Mapping[str, Any]) -> None:
        """Slack's scope check for the bot token, then channel membership for posting."""
        accepted = self.method_scopes[method]
        if method in ("conversations.info", "conversations.history", "conversations.replies"):
            table = CONVERSATION_SCOPES if method == "conversations.info" else HISTORY_SCOPES
            channel = str(args.get("channel", ""))
            if channel in self.state.channels:                 # unknown: channel_not_found, later
                accepted = [table[self.state.kind(channel)]]
        if method == "conversations.list":
            kinds = [LIST_TYPES.get(t.strip(), "public") for t in str(args.get("types") or "public_channel").split(",")]
            missing = [CONVERSATION_SCOPES[k] for k in kinds if CONVERSATION_SCOPES[k] not in self.scopes]
            if missing:                                        # every type asked for needs its scope
                raise SlackError("missing_scope", needed=",".join(missing), provided=",".join(self.scopes))
            self.scopes_used.update(CONVERSATION_SCOPES[k] for k in kinds)
            return
        if accepted and not set(accepted) & set(self.scopes):
            raise SlackError("missing_scope", needed=",".join(accepted), provided=",".join(self.scopes))
        self.scopes_used.update(set(accepted) & set(self.scopes))
        if method == "chat.postMessage":
            channel = self.state.channel_id(str(args.get("channel", "")))
            if channel not in self.state.joined and self.state.kind(channel) == "private":
                raise SlackError("channel_not_found")            # a private channel the bot is not in
            if channel not in self.state.joined and "chat:write.public" not in self.scopes:
                raise SlackError("not_in_channel")

    def _dispatch(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "chat.postMessage":
            message = self.state.post(args)
            return {"ok": True, "channel": message.channel, "ts": message.ts,
                    "message": self._message_object(message)}
        if method == "chat.update":
            message = self.state.update(args)
            return {"ok": True, "channel": message.channel, "ts": message.ts, "text": message.text or "",
                    "message": {"text": message.text or ""}}
        if method == "conversations.list":
            kinds = {LIST_TYPES.get(t.strip(), "public") for t in str(args.get("types") or "public_channel").split(",")}
            listed = [cid for cid in self.state.channels if self.state.kind(cid) in kinds
                      and (self.state.kind(cid) == "public" or cid in self.state.joined)]
            return {"ok": True, "channels": [self._channel_object(cid) for cid in listed],
                    "response_metadata": {"next_cursor": ""}}
        if method == "conversations.history":
            channel = self.state.channel_by_id(str(args.get("channel", "")))
            tops = [m for m in reversed(self.state.messages) if m.channel == channel and not m.is_reply
                    and _after(m.ts, args.get("oldest"))]
            limit = int(args.get("limit") or 100)
            return {"ok": True, "messages": [self._message_object(m) for m in tops[:limit]],
                    "has_more": len(tops) > limit, "pin_count": 0, "channel_actions_ts": None,
                    "channel_actions_count": 0}
        if method == "conversations.replies":
            channel = self.state.channel_by_id(str(args.get("channel", "")))
            parent = self.state.find(channel, _ts_text(args.get("ts")))
            if parent is None:
                raise SlackError("thread_not_found")
            replies = [m for m in self.state.messages if m.channel == channel and m.thread_ts == parent.ts
                       and _after(m.ts, args.get("oldest"))]
            head = {"type": "message", "user": BOT_USER, "text": parent.text or "", "ts": parent.ts,
                    "thread_ts": parent.ts, "reply_count": len(replies), "subscribed": False}
            return {"ok": True, "messages": [head, *({"type": "message", "user": BOT_USER, "text": m.text or "",
                                                      "ts": m.ts, "thread_ts": parent.ts, "parent_user_id": BOT_USER}
                                                     for m in replies)]}
        cid = self.state.channel_id(str(args.get("channel", "")))
        return {"ok": True, "channel": self._channel_object(cid)}

    def _channel_object(self, cid: str) -> dict[str, Any]:
        return {"id": cid, "name": self.state.channels[cid], "is_channel": True, "created": 1700000000,
                "creator": BOT_USER, "is_private": self.state.kind(cid) == "private"}

    @staticmethod
    def _message_object(message: Posted) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text or "",
                               "bot_id": BOT_ID, "user": BOT_USER, "team": TEAM_ID}
        if message.blocks:
            out["blocks"] = message.blocks
        if message.thread_ts:
            out["thread_ts"] = message.thread_ts
        return out


def _render(message: Posted, where: str) -> str:
    """One message as text: where, flags, and each block's text."""
    flags = []
    if message.reply_broadcast:
        flags.append("also sent to the channel")
    if message.updates:
        flags.append(f"edited {len(message.updates)}x")
    head = f"{where} ts={message.ts}" + (f" ({', '.join(flags)})" if flags else "")
    body = "\n".join("  " + t.replace("\n", "\n  ") for t in message.mrkdwn())
    return f"{head}\n  text: {message.text}\n{body}"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A running :class:`FakeSlack`; clean at teardown."""
    with FakeSlack() as fake:
        yield fake
        fake.assert_clean()
