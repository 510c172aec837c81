"""Triton's dynamic batching, for the cpu runtime's ONNX models.

Requests that arrive within the model's `max_queue_delay_microseconds` of the
oldest waiting one run as one batch of at most `max_batch_size` items: on a
CPU one call on eight images costs far less than eight calls on one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Tensors = dict[str, np.ndarray]


@dataclass
class _Waiting:
    inputs: Tensors
    size: int
    arrival: float
    future: asyncio.Future[Tensors]


class DynamicBatcher:
    """Queues requests for one model instance and runs them in batches, one batch at a time."""

    def __init__(
        self, run: Callable[[Tensors], Tensors], *, max_batch_size: int, delay: float
    ) -> None:
        self._run = run
        self._max = max_batch_size
        self._delay = delay
        self._waiting: deque[_Waiting] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, inputs: Tensors) -> Tensors:
        """Run `inputs` (batch-first arrays) as part of a batch; returns this request's rows."""
        loop = asyncio.get_running_loop()
        size = len(next(iter(inputs.values())))
        waiting = _Waiting(inputs, size, loop.time(), loop.create_future())
        self._waiting.append(waiting)
        if self._worker is None or self._worker.done() or self._arrived is None:
            # a new worker, and its event, for the running loop (a batcher can outlive a loop)
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._drain(self._arrived))
        self._arrived.set()
        return await waiting.future

    def _queued(self) -> int:
        return sum(w.size for w in self._waiting)

    async def _drain(self, arrived: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            deadline = self._waiting[0].arrival + self._delay
            while self._queued() < self._max and (left := deadline - loop.time()) > 0:
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), left)
            batch = [self._waiting.popleft()]
            total = batch[0].size
            while self._waiting and total + self._waiting[0].size <= self._max:
                total += self._waiting[0].size
                batch.append(self._waiting.popleft())
            await self._execute(batch)

    async def _execute(self, batch: list[_Waiting]) -> None:
        inputs = {name: np.concatenate([w.inputs[name] for w in batch]) for name in batch[0].inputs}
        try:
            outputs = await asyncio.to_thread(self._run, inputs)
        except Exception as error:  # the model's failure is each waiting request's failure
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            return
        offset = 0
        for waiting in batch:
            if not waiting.future.done():  # a caller that went away leaves a cancelled future
                rows = slice(offset, offset + waiting.size)
                waiting.future.set_result({name: array[rows] for name, array in outputs.items()})
            offset += waiting.size
