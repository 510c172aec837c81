"""The work queue: one entry per key, never two workers on a key, no event lost."""

from __future__ import annotations

import asyncio

from kiu.controller import queue


async def test_a_key_is_queued_once() -> None:
    work: queue.WorkQueue[str] = queue.WorkQueue()
    for _ in range(3):
        work.add("a")
    work.add("b")
    assert len(work) == 2
    assert await work.get() == "a"
    assert await work.get() == "b"


async def test_a_key_dirtied_while_active_comes_back_once_done() -> None:
    work: queue.WorkQueue[str] = queue.WorkQueue()
    work.add("a")
    key = await work.get()
    work.add("a")
    work.add("a")
    assert len(work) == 0  # not handed to a second worker while the first has it
    work.done(key)
    assert len(work) == 1
    assert await work.get() == "a"


async def test_add_after_keeps_the_earliest_wakeup() -> None:
    work: queue.WorkQueue[str] = queue.WorkQueue()
    work.add_after("a", 10.0)
    work.add_after("a", 0.01)
    work.add_after("a", 5.0)
    assert await asyncio.wait_for(work.get(), timeout=1.0) == "a"


async def test_retry_backs_off_and_success_resets() -> None:
    work: queue.WorkQueue[str] = queue.WorkQueue()
    assert [work.retry("a") for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    work.succeeded("a")
    assert work.retry("a") == 1.0
    work.forget("a")
    assert len(work) == 0
