"""Micro-batching with fair scheduling: concurrent requests share forward passes, and a large request cannot
starve small ones.

Requests wait in a queue. The worker takes whatever arrived within `max_wait_ms` of the first, then builds
a pass of at most `max_batch_size` questions and `max_batch_windows` windows (what a forward pass costs) by
deficit round-robin: every waiting request earns an equal share of the pass's windows as credit, and sends
its next questions while its credit covers them. A request of 48 long passages is therefore answered over
many passes, each shared with the small requests that arrived meanwhile, instead of holding the model for a
minute; a question larger than any credit it could earn goes alone once it is the closest to its cost. The
pass runs `Reader.answer_batch` in a thread (the event loop keeps accepting requests); each request gets its
answers when all of its questions are done.

Worked example, max_batch_windows 32, a request of 3 questions x 20 windows and 30 one-window requests:
each earns 32 // 31 = 1 window per pass, so every pass answers the 30 small ones and the large request
banks credit, sending a 20-window question once it has earned it (or alone, when it is the closest); the
small requests wait one pass, not three 20-window ones.

Heavy passes are spaced out: a question costing more than the pass's fair share (20 windows above) does not
go in the pass right after one that held such a question while lighter questions wait. Two large requests
bank credit at the same rate and would otherwise send back-to-back heavy passes, doubling what a small
request waits behind them.

A batch that fails is retried question by question, so a bad question fails its own request only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class _Job:
    pairs: list
    top_k: int
    future: asyncio.Future
    costs: list[int]
    answers: list = field(default_factory=list)
    next: int = 0  # the next question to schedule
    credit: int = 0  # windows this request may still send (deficit round-robin)
    pending: int = 0  # questions scheduled or waiting, not yet answered

    def __post_init__(self) -> None:
        self.answers = [None] * len(self.pairs)
        self.pending = len(self.pairs)


@dataclass
class BatchStats:
    """What the batcher did: forward passes and questions, for /v1/model, /metrics and the load test."""

    batches: int = 0
    questions: int = 0
    busy_seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)


class MicroBatcher:
    """Groups questions from concurrent requests into fair `Reader.answer_batch` calls (see the module doc)."""

    def __init__(self, answer_batch, max_batch_size: int = 32, max_wait_ms: float = 5.0,
                 max_batch_windows: int = 64, cost=None, fair: bool = True, on_batch=None) -> None:
        """
        Args:
            cost: cost(pairs) -> windows of each pair (default: one per passage).
            on_batch: optional callable(questions) after each forward pass (the server's metrics).
            fair: round-robin over requests; False takes requests whole, first come first served (the
                behaviour the load benchmark compares against).
        """
        self.answer_batch, self.max_batch_size, self.max_wait = answer_batch, max_batch_size, max_wait_ms / 1000
        self.max_batch_windows, self.fair, self.on_batch = max_batch_windows, fair, on_batch
        self.cost = cost or (lambda pairs: [1 if isinstance(c, str) else len(c) for _, c in pairs])
        self.active: list[_Job] = []
        self.arrived = asyncio.Event()
        self.stats = BatchStats()
        self._worker: asyncio.Task | None = None
        self._heavy_last = False  # the last pass held a question costing more than its fair share

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
        """Questions accepted and not yet taken into a batch."""
        return sum(len(job.pairs) - job.next for job in self.active)

    async def submit(self, pairs: list, top_k: int, costs: list[int] | None = None) -> list:
        """Answers for `pairs` (input order), computed in batches shared with whatever else is waiting."""
        self.start()
        costs = costs if costs is not None else self.cost(pairs)
        job = _Job(list(pairs), top_k, asyncio.get_running_loop().create_future(), list(costs))
        self.active.append(job)
        self.arrived.set()
        try:
            return await job.future
        finally:
            if job in self.active:  # cancelled or timed out: its unscheduled questions are dropped
                self.active.remove(job)

    async def _run(self) -> None:
        while True:
            while not any(job.next < len(job.pairs) for job in self.active):
                self.arrived.clear()
                await self.arrived.wait()
            await asyncio.sleep(self.max_wait)  # let concurrent requests join this batch
            await self._process(self._take())

    def _take(self) -> list[tuple[_Job, int]]:
        """One pass: deficit round-robin by windows over the waiting requests (never empty)."""
        if not self.fair:
            return self._take_whole()
        jobs = [job for job in self.active if job.next < len(job.pairs)]
        share = max(1, self.max_batch_windows // len(jobs))
        for job in jobs:
            # credit is capped at one pass (or the next question's cost, if larger): a request that waited
            # through many passes cannot bank enough to take several whole passes in a row afterwards
            job.credit = min(job.credit + share, max(self.max_batch_windows, job.costs[job.next]))
        # after a heavy pass, heavy questions wait one pass while anything lighter waits
        light_only = self._heavy_last and any(job.costs[job.next] <= share for job in jobs)
        picked, windows, progressed = [], 0, True
        # round-robin one question per request per round, so a request with credit for ten questions cannot
        # fill the pass before the next request gets its first
        while progressed and len(picked) < self.max_batch_size:
            progressed = False
            for job in jobs:
                if job.next == len(job.pairs) or len(picked) == self.max_batch_size:
                    continue
                cost = job.costs[job.next]
                if cost > job.credit or windows + cost > self.max_batch_windows or (light_only and cost > share):
                    continue
                picked.append((job, job.next))
                job.next, job.credit, windows, progressed = job.next + 1, job.credit - cost, windows + cost, True
        if not picked:  # no credit covers a question yet, or it is larger than a pass: the closest one goes
            job = min(jobs, key=lambda j: j.costs[j.next] - j.credit)
            picked.append((job, job.next))
            job.credit -= job.costs[job.next]
            job.next += 1
        self._heavy_last = any(job.costs[i] > share for job, i in picked)
        served = {id(job) for job, _ in picked}  # rotate: whoever was served goes behind whoever waited
        self.active.sort(key=lambda job: id(job) in served)
        return picked

    def _take_whole(self) -> list[tuple[_Job, int]]:
        """First come first served: whole requests, while they fit (the first always does)."""
        picked = []
        for job in [j for j in self.active if j.next < len(j.pairs)]:
            if picked and len(picked) + len(job.pairs) - job.next > self.max_batch_size:
                break
            picked += [(job, i) for i in range(job.next, len(job.pairs))]
            job.next = len(job.pairs)
        return picked

    async def _process(self, picked: list[tuple[_Job, int]]) -> None:
        pairs = [job.pairs[i] for job, i in picked]
        top_k = max(job.top_k for job, _ in picked)  # one call for the pass; each request is cut to its own below
        t0 = time.perf_counter()
        try:
            answers = await asyncio.to_thread(self.answer_batch, pairs, top_k)
        except Exception:  # find the bad question: one by one, so it fails its own request only
            answers = []
            for pair in pairs:
                try:
                    answers.append((await asyncio.to_thread(self.answer_batch, [pair], top_k))[0])
                except Exception as exc:
                    answers.append(exc)
        self._record(len(pairs), time.perf_counter() - t0)
        for (job, i), answer in zip(picked, answers):
            if job.future.done():
                continue
            if isinstance(answer, Exception):
                job.future.set_exception(answer)
                continue
            job.answers[i] = answer[: job.top_k]
            job.pending -= 1
            if job.pending == 0:
                job.future.set_result(job.answers)

    def _record(self, n: int, seconds: float) -> None:
        s = self.stats
        s.batches += 1
        s.questions += n
        s.busy_seconds += seconds
        s.sizes = (s.sizes + [n])[-1000:]
        if self.on_batch is not None:
            self.on_batch(n)
