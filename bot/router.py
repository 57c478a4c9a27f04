"""Routing of forge events to handlers, in the style of gidgethub's ``Router`` but synchronous.

Each feature module keeps its own router::

    router = Router()

    @router.register("pull_request", action="opened")
    def plan_on_open(event: EventRecord, **deps) -> None:
        \"\"\"Post the plan when a PR is opened.\"\"\"

and the wiring combines them once: ``Router(plan.router, commands.router)``.  A handler receives the
stored event and the dependencies the worker passes (forge, registry, store, queue, notifier…); it
builds none of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class RoutableEvent(Protocol):
    forge: str
    event: str
    payload: Any


Handler = Callable[..., Any]


class Router:
    """Handlers by event name, optionally narrowed by forge and one top-level payload value."""

    def __init__(self, *others: Router):
        self._routes: dict[str, list[tuple[str | None, str | None, Any, Handler]]] = defaultdict(list)
        for other in others:
            self.include(other)

    def include(self, other: Router) -> None:
        """Add every route of ``other`` to this router."""
        for event, routes in other._routes.items():
            self._routes[event].extend(routes)

    def add(self, handler: Handler, event: str, *, forge: str | None = None, **detail: Any) -> None:
        """Register ``handler`` for ``event``; ``detail`` is at most one ``key=value`` of the payload."""
        if len(detail) > 1:
            raise TypeError(f"register() takes at most one payload detail, got {sorted(detail)}")
        key, value = next(iter(detail.items())) if detail else (None, None)
        self._routes[event].append((forge, key, value, handler))

    def register(self, event: str, *, forge: str | None = None, **detail: Any) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`: ``@router.register("pull_request", action="opened")``."""
        def decorator(handler: Handler) -> Handler:
            self.add(handler, event, forge=forge, **detail)
            return handler
        return decorator

    def fetch(self, event: RoutableEvent) -> list[Handler]:
        """The handlers that match ``event``, in registration order, each once."""
        payload = event.payload if isinstance(event.payload, dict) else {}
        found: list[Handler] = []
        for forge, key, value, handler in self._routes.get(event.event, ()):
            if forge is not None and forge != event.forge:
                continue
            if key is not None and (key not in payload or payload[key] != value):
                continue
            if handler not in found:
                found.append(handler)
        return found

    def dispatch(self, event: RoutableEvent, **deps: Any) -> int:
        """Call every matching handler with ``(event, **deps)``; how many were called (0: no handler)."""
        handlers = self.fetch(event)
        for handler in handlers:
            handler(event, **deps)
        return len(handlers)

    def events(self) -> Iterable[str]:
        """Event names with at least one handler (e.g. to compare with the app manifest)."""
        return sorted(self._routes)
