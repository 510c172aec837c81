"""What kopf does to ProjectVersions, as docs/crd.md ("Where the operator keeps its own
state") says: no finalizer, no diff base, handler progress in annotations, no Events."""

from __future__ import annotations

from typing import Any, cast

import kopf

from kiu.controller import handlers


def test_only_event_handlers_and_indices_so_kopf_adds_no_finalizer() -> None:
    registry = handlers.registry(cast(Any, None))
    # Change handlers, daemons and timers are what make kopf add a finalizer and keep
    # a diff base; the operator has none.
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    assert registry._watching.get_all_handlers()
    assert registry._indexing.get_all_handlers()


def test_kopf_keeps_progress_in_annotations_and_posts_no_events() -> None:
    settings = handlers.settings()
    storage = settings.persistence.progress_storage
    assert isinstance(storage, kopf.AnnotationsProgressStorage)
    assert storage.prefix == "kiu.dev"
    assert settings.posting.enabled is False
