"""Validate HTTP traffic against an OpenAPI 3.0 description, and shape bodies after its schemas.

Built for the fake forges of the test suite (see ``tests/fakes/github.py``), but it knows nothing
about GitHub: give it a description (a ``dict``) and, to keep building fast, the path templates you
care about.

Three concerns, one class each:

* :class:`PathRouter` — finds the path template (and its parameters) for a concrete path. Unlike
  openapi-core's own matcher, parameters named ``path`` or ``ref`` may hold slashes
  (``contents/{path}`` with ``models/a.yaml``, ``git/ref/{ref}`` with ``heads/main``); when several
  templates match, the most specific (most literal characters) wins.
* :class:`OpenApiValidator` — request and response validation with ``openapi-core`` (spec validation
  off: building then takes milliseconds instead of seconds). The router's result is handed to
  openapi-core as the request's ``path_pattern`` plus resolved path parameters, so no
  percent-encoding trick is needed and openapi-core does not scan every template per request.
* :class:`SchemaExampleBuilder` — builds a value that satisfies a schema from a partial "overlay"
  (the fields the fake cares about), filling every other required field with a type-correct
  placeholder; the fake answers with these, and :meth:`OpenApiValidator.validate_response` checks.

Validators are expensive enough to build once: use :func:`validator_for` (cached per process).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

# Path parameters that may legitimately contain "/" (GitHub: file paths and git refs).
SLASHY_PARAMETERS = frozenset({"path", "ref"})

# Which description file in ``tests/contracts/github/`` each flavour uses.
GITHUB_DESCRIPTIONS = {
    "github.com": "api.github.com.json.gz",
    "ghes-3.19": "ghes-3.19.json.gz",
}


# --------------------------------------------------------------------------------------------------
# Loading


@functools.cache
def load_github_description(flavor: str) -> dict[str, Any]:
    """The official GitHub REST description for ``flavor`` (parsed once per process; don't mutate)."""
    from tests.contracts import contract_text

    try:
        filename = GITHUB_DESCRIPTIONS[flavor]
    except KeyError:
        raise ValueError(f"unknown GitHub flavor {flavor!r}; known: {sorted(GITHUB_DESCRIPTIONS)}")
    return json.loads(contract_text("github", filename))


# --------------------------------------------------------------------------------------------------
# Routing


@dataclass(frozen=True)
class Route:
    """A concrete path matched to a template of the description."""

    template: str
    params: dict[str, str]


class PathRouter:
    """Match concrete paths (already percent-decoded) to OpenAPI path templates."""

    _PARAM = re.compile(r"\{([^}/]+)\}")

    def __init__(self, templates: Iterable[str]):
        entries = [(self._specificity(t), t, *self._compile(t)) for t in templates]
        entries.sort(key=lambda entry: entry[0], reverse=True)  # most specific first: first match wins
        self._entries = [(template, regex, names) for _, template, regex, names in entries]
        self.templates = frozenset(template for template, _, _ in self._entries)

    def match(self, path: str) -> Route | None:
        for template, regex, names in self._entries:
            found = regex.fullmatch(path)
            if found:
                return Route(template, {names[group]: value for group, value in found.groupdict().items()})
        return None

    @classmethod
    def _compile(cls, template: str) -> tuple[re.Pattern[str], dict[str, str]]:
        """A regex for ``template`` and the map from its group names to parameter names."""
        parts, names, last = [], {}, 0
        for index, param in enumerate(cls._PARAM.finditer(template)):
            name, group = param.group(1), f"p{index}"
            names[group] = name
            charset = ".+" if name in SLASHY_PARAMETERS else "[^/]+"
            parts.append(re.escape(template[last : param.start()]))
            parts.append(f"(?P<{group}>{charset})")
            last = param.end()
        parts.append(re.escape(template[last:]))
        return re.compile("".join(parts)), names

    @classmethod
    def _specificity(cls, template: str) -> tuple[int, int]:
        return (len(cls._PARAM.sub("", template)), -len(cls._PARAM.findall(template)))


# --------------------------------------------------------------------------------------------------
# openapi-core adapters


class _CoreRequest:
    """The request protocol openapi-core expects, with the path template already resolved."""

    def __init__(
        self,
        host_url: str,
        path_pattern: str,
        path_params: Mapping[str, str],
        method: str,
        query: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        body: bytes | None,
    ):
        self.host_url = host_url
        self.path = path_pattern
        self.path_pattern = path_pattern
        self.method = method.lower()
        self.body = body or None
        header = Headers(headers or {})
        self.content_type = (header.get("Content-Type") or "application/octet-stream").lower()
        self.parameters = RequestParameters(
            query=_multidict(query),
            header=header,
            cookie=ImmutableMultiDict(),
            path=dict(path_params),
        )


class _CoreResponse:
    def __init__(self, status: int, headers: Mapping[str, str] | None, body: bytes | None):
        self.status_code = status
        self.headers = Headers(headers or {})
        self.content_type = (self.headers.get("Content-Type") or "application/json").lower()
        self.data = body or b""


def _multidict(query: Mapping[str, Any] | None) -> ImmutableMultiDict:
    if query is None:
        return ImmutableMultiDict()
    if isinstance(query, ImmutableMultiDict):
        return query
    if hasattr(query, "getlist"):  # any werkzeug MultiDict
        return ImmutableMultiDict(list(query.items(multi=True)))
    items: list[tuple[str, str]] = []
    for key, value in query.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        items.extend((key, str(v)) for v in values)
    return ImmutableMultiDict(items)


def _describe(error: BaseException, limit: int = 300) -> list[str]:
    """Flatten an openapi-core error into short readable lines, one per schema error.

    openapi-core chains its errors (``InvalidRequestBody`` ← ``InvalidSchemaValue`` with the
    jsonschema errors); the values themselves are left out, they can be huge.
    """
    kind = type(error).__name__
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    lines = []
    for link in chain:
        for schema_error in getattr(link, "schema_errors", None) or ():
            where = "/".join(str(p) for p in schema_error.absolute_path) or "(root)"
            message = schema_error.message
            if len(message) > limit:  # the message quotes the whole value; name the rule instead
                message = f"violates {schema_error.validator}={schema_error.validator_value!r}"
            lines.append(_shorten(f"{kind} at {where}: {message}", limit))
    if lines:
        return lines
    return [_shorten(" ← ".join(f"{type(link).__name__}: {link}" for link in chain), limit)]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------
# Validation


@dataclass
class ValidationStats:
    """How long building and validating took; figures for the closing note."""

    build_seconds: float = 0.0
    requests: int = 0
    request_seconds: float = 0.0
    responses: int = 0
    response_seconds: float = 0.0

    def per_request_ms(self) -> float:
        return 1000 * self.request_seconds / self.requests if self.requests else 0.0

    def per_response_ms(self) -> float:
        return 1000 * self.response_seconds / self.responses if self.responses else 0.0


class OpenApiValidator:
    """Validate requests (and, best effort, responses) against an OpenAPI 3.0 description.

    ``paths_filter`` keeps only some path templates: a collection of templates, or a predicate over
    a template. Every path of the full description is still *routable*, so a call to an existing
    operation outside the subset is told apart from a call to something that does not exist.

    Paths given to :meth:`validate` are relative to the description's server (for GHES, without
    ``/api/v3``) and percent-decoded.
    """

    def __init__(
        self,
        spec_dict: Mapping[str, Any],
        paths_filter: Iterable[str] | Callable[[str], bool] | None = None,
    ):
        started = time.perf_counter()
        keep = _path_predicate(paths_filter)
        self.spec = dict(spec_dict)
        kept = {t: item for t, item in spec_dict["paths"].items() if keep(t)}
        self.spec["paths"] = _drop_discriminators_over_non_objects(kept, spec_dict)
        self.spec["components"] = _null_in_nullable_enums(spec_dict.get("components", {}))
        self.host_url, self.base_path = _server_base(self.spec)
        self._openapi = OpenAPI.from_dict(self.spec, config=Config(spec_validator_cls=None))
        self.router = PathRouter(self.spec["paths"])
        self.described = PathRouter(spec_dict["paths"])  # everything the API has, for diagnostics
        self.examples = SchemaExampleBuilder(self.spec)
        self._lock = threading.Lock()  # openapi-core's caches are not documented as thread-safe
        self.stats = ValidationStats(build_seconds=time.perf_counter() - started)

    # -- lookup -----------------------------------------------------------------------------------

    def route(self, path: str) -> Route | None:
        """The template (within the subset) that ``path`` belongs to."""
        return self.router.match(path)

    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        return self.spec["paths"].get(template, {}).get(method.lower())

    def explain_unrouted(self, method: str, path: str) -> str:
        """Why ``method path`` is not in the subset: absent from the API, or merely not kept."""
        route = self.described.match(path)
        if route is None:
            return f"{method.upper()} {path}: no such path in the API description"
        return f"{method.upper()} {path}: {route.template} exists in the description but is not served here"

    # -- requests ---------------------------------------------------------------------------------

    def validate(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> list[str]:
        """Errors in a request (path and query parameters, content type, body schema); [] if valid."""
        started = time.perf_counter()
        try:
            route = self.route(path)
            if route is None:
                return [self.explain_unrouted(method, path)]
            if self.operation(method, route.template) is None:
                return [f"{method.upper()} {path}: {route.template} has no {method.upper()} operation"]
            request = self._core_request(method, route, query, headers, _as_bytes(body))
            with self._lock:
                errors = list(self._openapi.iter_apicall_request_errors(request))
            return [line for error in errors for line in _describe(error)]
        finally:
            self.stats.requests += 1
            self.stats.request_seconds += time.perf_counter() - started

    # -- responses --------------------------------------------------------------------------------

    def validate_response(
        self,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Any | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Errors in a response to ``method path`` against the description of ``status``.

        Best effort: a status the description does not list is reported as such; a body that is
        not ``bytes``/``str`` is serialised as JSON first.
        """
        started = time.perf_counter()
        try:
            route = self.route(path)
            if route is None or self.operation(method, route.template) is None:
                return [self.explain_unrouted(method, path)]
            headers = dict(headers or {})
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            request = self._core_request(method, route, query, None, None)
            response = _CoreResponse(status, headers, _as_bytes(body))
            with self._lock:
                errors = list(self._openapi.iter_apicall_response_errors(request, response))
            return [line for error in errors for line in _describe(error)]
        finally:
            self.stats.responses += 1
            self.stats.response_seconds += time.perf_counter() - started

    def assert_valid_response(self, method: str, path: str, status: int, body: Any, **kw: Any) -> None:
        errors = self.validate_response(method, path, status, body=body, **kw)
        assert not errors, f"response to {method} {path} ({status}) breaks the description:\n" + "\n".join(errors)

    def response_schema(self, method: str, template: str, status: int) -> dict[str, Any] | None:
        """The JSON schema of the response body for ``status`` (or the ``default`` response)."""
        operation = self.operation(method, template) or {}
        responses = operation.get("responses", {})
        response = responses.get(str(status)) or responses.get("default")
        if response is None:
            return None
        response = self.examples.resolve(response)
        content = response.get("content", {})
        media = content.get("application/json") or next(iter(content.values()), None)
        return None if media is None else media.get("schema")

    def example(self, method: str, template: str, status: int, overlay: Any = None) -> Any:
        """A response body for ``status`` built from ``overlay`` with required fields filled in."""
        schema = self.response_schema(method, template, status)
        if schema is None:
            return overlay
        return self.examples.build(schema, overlay)

    # -- internals --------------------------------------------------------------------------------

    def _core_request(self, method, route, query, headers, body) -> _CoreRequest:
        return _CoreRequest(
            self.host_url, self.base_path + route.template, route.params, method, query, headers, body
        )


def _as_bytes(body: bytes | str | None) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    return body.encode("utf-8")


def _drop_discriminators_over_non_objects(paths: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Copies of ``paths`` without the discriminators that openapi-core cannot apply.

    A discriminator only means something over object alternatives, but openapi-core applies it to
    every value; GitHub's ``GET …/contents/{path}`` puts one over ``oneOf: [directory (an array),
    file, symlink, submodule]``, so every directory listing — GitHub's own included — would fail.
    """
    examples = SchemaExampleBuilder(spec)

    def is_object(schema: Any) -> bool:
        schema = examples.resolve(schema)
        return schema.get("type", "object" if "properties" in schema else None) == "object"

    def clean(node: Any) -> Any:
        if isinstance(node, list):
            return [clean(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: clean(value) for key, value in node.items()}
        alternatives = node.get("oneOf") or node.get("anyOf")
        if "discriminator" in node and alternatives and not all(is_object(a) for a in alternatives):
            del node["discriminator"]
        return node

    return {template: clean(item) for template, item in paths.items()}


def _null_in_nullable_enums(node: Any) -> Any:
    """A copy where every ``nullable: true`` schema with an ``enum`` also lists ``None``.

    OpenAPI 3.0 says ``nullable`` admits null, but a JSON Schema validator checks ``enum`` first:
    GitHub's check run ``conclusion`` (``nullable`` with an enum) is null while the run is in
    progress, and that real answer would otherwise fail validation.
    """
    if isinstance(node, list):
        return [_null_in_nullable_enums(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _null_in_nullable_enums(value) for key, value in node.items()}
    if node.get("nullable") is True and isinstance(node.get("enum"), list) and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    return node


def _path_predicate(paths_filter) -> Callable[[str], bool]:
    if paths_filter is None:
        return lambda template: True
    if callable(paths_filter):
        return paths_filter
    wanted = frozenset(paths_filter)
    return wanted.__contains__


def _server_base(spec: Mapping[str, Any]) -> tuple[str, str]:
    """(scheme://host, base path) of the first server, with its variables at their defaults."""
    servers = spec.get("servers") or [{"url": "/"}]
    server = servers[0]
    url = server["url"]
    for name, variable in (server.get("variables") or {}).items():
        url = url.replace("{" + name + "}", str(variable.get("default", "")))
    parts = urlsplit(url)
    host_url = f"{parts.scheme or 'http'}://{parts.netloc or 'localhost'}"
    return host_url, parts.path.rstrip("/")


@functools.cache
def _cached_validator(flavor: str, templates: frozenset[str]) -> OpenApiValidator:
    return OpenApiValidator(load_github_description(flavor), templates)


def validator_for(flavor: str, templates: Iterable[str]) -> OpenApiValidator:
    """The GitHub validator for ``flavor`` over ``templates``, built once per process.

    Templates the flavour's description lacks (an endpoint missing on GHES, say) are ignored, so one
    list serves both flavours.
    """
    return _cached_validator(flavor, frozenset(templates))


# --------------------------------------------------------------------------------------------------
# Schema-shaped bodies


class SchemaExampleBuilder:
    """Build values that satisfy a schema, from an overlay of the fields that matter.

    ``build(schema, overlay)`` walks the schema: objects get every *required* property (from the
    overlay when given, else a placeholder) plus every overlay key; arrays map their items;
    ``allOf`` merges, ``oneOf``/``anyOf`` pick the first alternative that fits the overlay; a
    nullable field without overlay becomes ``None``; scalars use the overlay, then ``default``,
    ``enum[0]``, or a placeholder matching ``format``.
    """

    PLACEHOLDERS = {
        "date-time": "2026-01-01T00:00:00Z",
        "date": "2026-01-01",
        "uri": "https://example.invalid/",
        "url": "https://example.invalid/",
        "uri-template": "https://example.invalid/{id}",
        "email": "someone@example.invalid",
        "uuid": "00000000-0000-4000-8000-000000000000",
        "hostname": "example.invalid",
    }

    def __init__(self, spec: Mapping[str, Any]):
        self._spec = spec

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = self._pointer(node["$ref"])
        return node

    def build(self, schema: Mapping[str, Any], overlay: Any = None, _depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if _depth > 40:
            return overlay
        if "allOf" in schema:
            return self.build(self._merge_all_of(schema), overlay, _depth + 1)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return self._build_alternative(schema, schema[key], overlay, _depth)
        if overlay is None and schema.get("nullable"):
            return None
        kind = schema.get("type") or ("object" if "properties" in schema else None)
        if kind == "object":
            return self._build_object(schema, overlay, _depth)
        if kind == "array":
            items = schema.get("items", {})
            values = overlay if isinstance(overlay, list) else [None] * schema.get("minItems", 0)
            return [self.build(items, value, _depth + 1) for value in values]
        if overlay is not None:
            return overlay
        return self._scalar(schema, kind)

    # -- helpers ----------------------------------------------------------------------------------

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported: {ref}")
        node: Any = self._spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _merge_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties = dict(merged.get("properties", {}))
        required = list(merged.get("required", []))
        for part in schema["allOf"]:
            part = self.resolve(part)
            if "allOf" in part:
                part = self._merge_all_of(part)
            properties.update(part.get("properties", {}))
            required.extend(r for r in part.get("required", []) if r not in required)
            for key, value in part.items():
                if key not in ("properties", "required"):
                    merged.setdefault(key, value)
        merged["properties"], merged["required"] = properties, required
        return merged

    def _build_alternative(self, schema, alternatives, overlay, depth) -> Any:
        options = [self.resolve(a) for a in alternatives]
        if overlay is None and (schema.get("nullable") or any(o.get("type") == "null" for o in options)):
            return None
        chosen = next((o for o in options if self._fits(o, overlay)), options[0])
        return self.build(chosen, overlay, depth + 1)

    def _fits(self, schema: Mapping[str, Any], overlay: Any) -> bool:
        schema = self.resolve(schema)
        kind = schema.get("type")
        if overlay is None:
            return kind != "null"
        if kind is None:
            return True
        expected = {
            "object": dict, "array": list, "string": str, "boolean": bool,
            "integer": int, "number": (int, float), "null": type(None),
        }.get(kind, object)
        if kind in ("integer", "number") and isinstance(overlay, bool):
            return False
        if not isinstance(overlay, expected):
            return False
        if kind == "object" and isinstance(overlay, dict) and schema.get("properties"):
            return set(overlay) <= set(schema["properties"]) or bool(schema.get("additionalProperties"))
        return True

    def _build_object(self, schema, overlay, depth) -> dict[str, Any]:
        overlay = overlay if isinstance(overlay, dict) else {}
        properties = schema.get("properties", {})
        result: dict[str, Any] = {}
        for name in schema.get("required", []):
            result[name] = self.build(properties.get(name, {}), overlay.get(name), depth + 1)
        for name, value in overlay.items():
            if name in properties:
                result[name] = self.build(properties[name], value, depth + 1)
            else:
                result[name] = copy.deepcopy(value)
        return result

    def _scalar(self, schema: Mapping[str, Any], kind: str | None) -> Any:
        if "default" in schema and schema["default"] is not None:
            return schema["default"]
        if schema.get("enum"):
            return next((v for v in schema["enum"] if v is not None), schema["enum"][0])
        if kind == "string":
            return self.PLACEHOLDERS.get(schema.get("format", ""), "x" * max(1, schema.get("minLength", 1)))
        if kind == "integer":
            return int(schema.get("minimum", 1))
        if kind == "number":
            return float(schema.get("minimum", 1))
        if kind == "boolean":
            return False
        return None
