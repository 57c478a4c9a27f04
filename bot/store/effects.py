"""Idempotency of side effects under retried jobs.

Two tools, pick per effect:

- :meth:`EffectsRepo.once` — *at most once*: reserves the key before acting.  Use it when doing the
  effect twice is worse than not doing it (e.g. a Slack "rollout started" message).
- :meth:`EffectsRepo.run_once` — *at least once, remembered*: runs the effect unless its key already
  has a recorded result, then records the result (e.g. the id of the comment posted).  A worker
  killed between the effect and the record repeats the effect, so pair it with an effect that is
  itself safe to repeat (upsert a comment found by its marker, update a check run by id).
- :meth:`EffectsRepo.commit_once` — *exactly once, for effects inside the store*: runs the action (store
  writes only) and records its result in the same transaction, so the writes and the record happen
  together or not at all (e.g. the rollouts a ``/deploy`` starts, with the reply that names them).
  A retry finds the record and repeats nothing; what the action decided is decided for good.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from modelherd.store.models import Effect

T = TypeVar("T")


class _Recorded(Exception):
    """Another run recorded the effect first (raised to roll this run's writes back)."""


class EffectsRepo:
    """Effect operations of :class:`~modelherd.store.Store` (needs ``_tx()`` and ``now()``)."""

    def once(self, key: str, *, event_id: int | None = None) -> bool:
        """True the first time ``key`` is seen (and reserve it), False ever after."""
        return self.record_effect(key, None, event_id=event_id)

    def record_effect(self, key: str, result: Any = None, *, event_id: int | None = None) -> bool:
        """Remember that the effect ``key`` happened with ``result`` (JSON); False if already recorded."""
        values = dict(key=key, result=result, event_id=event_id, created_at=self.now())
        with self._tx() as s:
            dialect = s.get_bind().dialect.name
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = insert(Effect).values(**values).on_conflict_do_nothing(index_elements=["key"])
            return s.execute(stmt.returning(Effect.key)).scalar_one_or_none() is not None

    def has_effect(self, key: str) -> bool:
        with self._tx() as s:
            return s.execute(select(Effect.key).where(Effect.key == key)).first() is not None

    def effect_result(self, key: str) -> Any:
        """The recorded result of ``key`` (``None`` when absent or recorded without a result)."""
        with self._tx() as s:
            return s.execute(select(Effect.result).where(Effect.key == key)).scalar_one_or_none()

    def run_once(self, key: str, action: Callable[[], T], *, event_id: int | None = None) -> T:
        """Run ``action`` unless ``key`` was recorded; return its (possibly remembered) result."""
        with self._tx() as s:
            found = s.execute(select(Effect.result).where(Effect.key == key)).first()
        if found is not None:
            return found[0]
        result = action()
        if not self.record_effect(key, result, event_id=event_id):
            return self.effect_result(key)  # a concurrent run recorded first; its result wins
        return result

    def commit_once(self, key: str, action: Callable[[], T], *, event_id: int | None = None) -> T:
        """Run ``action`` and record its result (JSON) in one transaction, unless ``key`` is recorded;
        return the recorded result.

        ``action`` makes store calls only (no network: see :meth:`Store.atomic`); they commit with the
        record or not at all. A concurrent run that commits first wins: its result is returned."""
        try:
            with self.atomic():
                with self._tx() as s:
                    found = s.execute(select(Effect.result).where(Effect.key == key)).first()
                if found is not None:
                    return found[0]
                result = action()
                if not self.record_effect(key, result, event_id=event_id):
                    raise _Recorded(key)        # roll back this run's writes
                return result
        except (_Recorded, IntegrityError):
            if not self.has_effect(key):        # an integrity error of the action's own
                raise
            return self.effect_result(key)

    def forget_effect(self, key: str) -> bool:
        """Drop a recorded effect so it may happen again (e.g. after the comment was deleted)."""
        with self._tx() as s:
            return s.execute(delete(Effect).where(Effect.key == key)).rowcount == 1

    # provided by Store
    def _tx(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def atomic(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def now(self) -> Any:  # pragma: no cover
        raise NotImplementedError
