"""Micro-batching: concurrent requests share one forward pass.

Requests wait in a queue; a worker takes up to `max_batch_size` questions, or whatever arrived within
`max_wait_ms` of the first, runs them through `Reader.answer_batch` in a thread (so the event loop keeps
accepting requests), and hands each request its answers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class _Job:
    pairs: list[tuple[str, str]]
    top_k: int
    future: asyncio.Future


@dataclass
class BatchStats:
    """What the batcher did: forward passes and questions, for /v1/model and the load test."""

    batches: int = 0
    questions: int = 0
    busy_seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)


class MicroBatcher:
    """Groups questions from concurrent requests into `Reader.answer_batch` calls."""

    def __init__(self, answer_batch, max_batch_size: int = 32, max_wait_ms: float = 5.0) -> None:
        self.answer_batch, self.max_batch_size, self.max_wait = answer_batch, max_batch_size, max_wait_ms / 1000
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.stats = BatchStats()
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    def waiting(self) -> int:
        """Questions queued and not yet taken into a batch."""
        return sum(_passages(job) for job in self.queue._queue)  # noqa: SLF001 - asyncio.Queue keeps a deque

    async def submit(self, pairs: list[tuple[str, str]], top_k: int) -> list:
        """Answers for `pairs` (input order), computed in a batch with whatever else is waiting."""
        self.start()
        job = _Job(pairs, top_k, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            await self._process(jobs)

    async def _collect(self) -> list[_Job]:
        jobs = [await self.queue.get()]
        size = _passages(jobs[0])
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = await asyncio.wait_for(self.queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            jobs.append(job)
            size += _passages(job)
        return jobs

    async def _process(self, jobs: list[_Job]) -> None:
        pairs = [p for job in jobs for p in job.pairs]
        top_k = max(job.top_k for job in jobs)
        t0 = time.perf_counter()
        try:
            answers = await asyncio.to_thread(self.answer_batch, pairs, top_k)
        except Exception as exc:  # one bad batch must not kill the worker; every waiter gets the error
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._record(len(pairs), time.perf_counter() - t0)
        i = 0
        for job in jobs:
            part = [a[: job.top_k] for a in answers[i : i + len(job.pairs)]]
            i += len(job.pairs)
            if not job.future.done():
                job.future.set_result(part)

    def _record(self, n: int, seconds: float) -> None:
        s = self.stats
        s.batches += 1
        s.questions += n
        s.busy_seconds += seconds
        s.sizes = (s.sizes + [n])[-1000:]


def _passages(job: _Job) -> int:
    """Passages a job brings to the forward pass (a question with `contexts` brings all of them)."""
    return sum(1 if isinstance(c, str) else len(c) for _, c in job.pairs)
