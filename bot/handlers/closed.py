"""What happens when a pull request is closed without merging: its locks are released.

(A merged pull request also releases its locks; its rollouts are started by the merge handler.)
"""

from __future__ import annotations

import logging
from typing import Any

from modelherd.router import Router

log = logging.getLogger(__name__)
router = Router()


@router.register("pull_request", action="closed")
def on_closed(event: Any, *, store: Any, **_: Any) -> None:
    """Release every model/environment lock the closed PR held."""
    number = int(event.payload["pull_request"]["number"])
    released = store.release_locks(event.repo, number)
    if released:
        log.info("%s#%d closed: released %s", event.repo, number,
                 ", ".join(f"{lock.model}/{lock.environment}" for lock in released))
