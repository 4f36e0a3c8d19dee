"""What startup leaves is kept out of garbage collection: its garbage is collected first, the rest
frozen (so a full collection no longer walks the models and modules), and a real server does it
before it turns ready."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from service.app import freeze_startup_objects

from .conftest import running_server


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def tracked(obj: object) -> bool:
    """True while the collector's generations hold obj (frozen objects are in none of them)."""
    return any(o is obj for o in gc.get_objects())


def test_startup_garbage_is_collected_and_the_rest_frozen() -> None:
    garbage = weakref.ref(Node())
    kept = Node()
    try:
        assert garbage() is not None and tracked(kept)
        frozen = freeze_startup_objects()
        assert garbage() is None  # collected before the freeze, not kept for ever
        assert frozen > 0  # (the count falls as frozen objects are freed: other tests' threads run)
        assert not tracked(kept)
        later = Node()
        assert tracked(later)  # objects made afterwards are collected as before
    finally:
        gc.unfreeze()


def test_a_ready_server_has_frozen_its_startup(model_dir: Path) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with running_server(model_dir, warmup=False) as server:
        assert gc.get_freeze_count() > 0
        assert not tracked(server.app.state.service.registry)
    gc.unfreeze()
