"""The training loop, shared by fine-tuning, distillation and pretraining.

What the loop trains is a `loss_fn(model, batch) -> [b] per-window loss`; what it trains on is a
`Features`-like object with `lengths` and `pad(rows, pad_id)`. Everything else (schedules, accumulation,
mixed precision, DDP through Accelerate, evaluation, checkpoints, pre-emption) is the same for all.

Loss normalisation: each process backpropagates sum(its window losses) * world_size / (windows in the
whole optimizer step). DDP averages gradients over processes, so the update is the mean over every
window of the step, however the windows were split between processes or micro-batches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from spanqa.errors import SpanqaError
from spanqa.precision import autocast
from spanqa.train.sampling import epoch_batches, rank_slice
from spanqa.train.run_config import OptimConfig
from spanqa.train.optim import StepPlan
from spanqa.train.signals import StopRequest

log = logging.getLogger(__name__)
TIMED_STEPS = 5  # with --max-time: steps timed (after the first, which warms caches up) before re-planning
REPLAN_SHARE = 0.1  # and then a re-plan every this share of the plan, from the steps since the last one


@dataclass
class TrainState:
    """Where a run is; saved in every checkpoint."""

    step: int = 0
    windows_seen: int = 0
    loss_sum: float = 0.0
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_checkpoint: str | None = None
    planned_total: int = 0
    log_history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class LoopParts:
    """What the loop drives. `model` may be DDP-wrapped; `evaluate(step)` and `save(step)` are hooks; `plan`
    is the step plan the schedule reads (a time budget may shorten it)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    accelerator: object
    data: object
    pad_id: int
    loss_fn: Callable
    precision: str
    evaluate: Callable[[int], dict | None]
    save: Callable[[int], None]
    on_log: Callable[[dict], None]
    plan: StepPlan
    ema: object | None = None  # `train.ema.EMA`, updated after every optimizer step


def plan_steps(n_windows: int, optim: OptimConfig, world_size: int) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps).

    Raises:
        SpanqaError: fewer training windows than one optimizer step needs.
    """
    global_micro = optim.per_device_train_batch_size * world_size
    micro_per_epoch = n_windows // global_micro + (n_windows % global_micro >= world_size)
    steps_per_epoch = micro_per_epoch // optim.gradient_accumulation_steps
    if steps_per_epoch < 1:
        raise SpanqaError(
            f"{n_windows} training windows are fewer than one optimizer step needs "
            f"({global_micro} x {optim.gradient_accumulation_steps} accumulation steps); lower the batch size."
        )
    total = optim.max_steps or math.ceil(optim.num_train_epochs * steps_per_epoch)
    return steps_per_epoch, total


def step_batches(data, optim: OptimConfig, world_size: int, step: int, steps_per_epoch: int) -> list[np.ndarray]:
    """The global micro-batches of optimizer step `step` (a pure function of seed, step and sizes)."""
    epoch, within = divmod(step, steps_per_epoch)
    batches = epoch_batches(
        data.lengths, optim.per_device_train_batch_size * world_size, optim.seed, epoch, optim.group_by_length
    )
    batches = [b for b in batches if len(b) >= world_size]  # a last batch too small to split is dropped
    accum = optim.gradient_accumulation_steps
    return batches[within * accum : (within + 1) * accum]


def train_loop(parts: LoopParts, optim: OptimConfig, state: TrainState, progress=None) -> str:
    """Run optimizer steps until the planned total, the time budget or a stop signal.

    Returns:
        "done" (the plan ran to its end), "time" (the `--max-time` budget ran out before it), or the name of the
        signal that stopped the run (after a checkpoint).
    """
    acc = parts.accelerator
    world, rank = acc.num_processes, acc.process_index
    steps_per_epoch, total = plan_steps(len(parts.data), optim, world)
    plan = parts.plan
    budget = _Budget(optim.max_time, state, acc, total) if optim.max_time else None
    window_loss, window_count, t_log = 0.0, 0, time.perf_counter()
    with StopRequest() as stop:
        while state.step < plan.total:
            t0 = time.perf_counter()
            micro = step_batches(parts.data, optim, world, state.step, steps_per_epoch)
            loss_sum, n = _optimizer_step(parts, optim, micro, rank, world)
            state.step += 1
            state.windows_seen += n
            state.loss_sum += loss_sum
            state.train_seconds += time.perf_counter() - t0
            window_loss, window_count = window_loss + loss_sum, window_count + n
            if budget is not None:
                budget.replan(plan)
            if progress is not None:
                progress(state, n, loss_sum / max(n, 1))
            last = state.step == plan.total
            if state.step % optim.logging_steps == 0 or last:
                _log(parts, state, window_loss / max(window_count, 1), window_count / (time.perf_counter() - t_log))
                window_loss, window_count, t_log = 0.0, 0, time.perf_counter()
            if budget is not None and not last and budget.spent():
                return "time"
            if optim.eval_steps and state.step % optim.eval_steps == 0 and not last:
                parts.evaluate(state.step)
            stopping = _agreed(acc, stop.requested)
            if stopping or (optim.save_steps and state.step % optim.save_steps == 0 and not last):
                parts.save(state.step)
            if stopping:
                return stop.signal_name or "SIGTERM"
    return "done"  # every planned step ran (a budget may have planned fewer than the recipe: `state.planned_total`)


class _Budget:
    """`--max-time`: plan the schedule to end within the budget from the measured step time, re-planning as
    training goes, and stop at the budget whatever the estimate said.

    Re-plans happen after TIMED_STEPS steps (the first step is never timed) and then every `REPLAN_SHARE` of the
    plan, each from the steps since the previous re-plan: the early steps run slower (allocator, kernel choice,
    caches), so a plan made from them alone plans too few steps, and later re-plans give those steps back. The
    plan never grows past the recipe's own total, and moves only when the estimate differs by more than 1%
    (the schedule reads `plan.total`: warmup and decay keep their shares and the learning rate still reaches
    zero at the end). Worked example, 100 s budget, recipe 200 steps, the first 6 steps 3 s each, then 1 s: the
    first re-plan (3 s per step) plans 33 steps; by step 11 it has measured 1 s per step and plans 80; later
    ones settle near 85, where the budget ends.
    """

    def __init__(self, seconds: float, state: TrainState, acc, recipe_total: int) -> None:
        self.seconds, self.state, self.acc, self.recipe_total = seconds, state, acc, recipe_total
        self.first_step = state.step + 1  # timing starts after this step
        self.mark: tuple[int, float] | None = None  # (step, train seconds) the current rate is measured from
        self.next_at = self.first_step + TIMED_STEPS
        self.done = bool(state.planned_total and state.step)  # a resumed run keeps its saved plan
        self.replans = 0

    def replan(self, plan: StepPlan) -> None:
        st = self.state
        if self.done:
            return
        if st.step == self.first_step:
            # the first step pays for one-off work (allocator warm-up, oneDNN kernel selection, lazy imports)
            self.mark = (st.step, st.train_seconds)
            return
        if self.mark is None or st.step < self.next_at:
            return
        per_step = (st.train_seconds - self.mark[1]) / (st.step - self.mark[0])
        fits = st.step + int((self.seconds - st.train_seconds) / max(per_step, 1e-9))
        fits = int(_agreed_min(self.acc, min(fits, self.recipe_total)))  # DDP: every process stops together
        fits = max(fits, st.step + 1)
        if abs(fits - plan.total) > 0.01 * plan.total:
            log.info("--max-time %.0f s: %.2f s per step lately, so %d of the recipe's %d steps fit; the schedule now "
                     "ends there (was %d)", self.seconds, per_step, fits, self.recipe_total, plan.total)
            plan.total = fits
            self.replans += 1
        st.planned_total = plan.total
        self.mark = (st.step, st.train_seconds)
        self.next_at = st.step + max(TIMED_STEPS, int(REPLAN_SHARE * plan.total))

    def spent(self) -> bool:
        return _agreed(self.acc, self.state.train_seconds >= self.seconds)


def _agreed_min(acc, value: int) -> int:
    """The smallest `value` over all processes (every process must run the same number of steps)."""
    if acc.num_processes == 1:
        return value
    t = torch.tensor([float(value)], device=acc.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return int(t.item())


def _optimizer_step(parts: LoopParts, optim: OptimConfig, micro: list[np.ndarray], rank: int, world: int):
    """Forward/backward over the step's micro-batches, then clip, step, schedule. Returns (loss sum, windows)."""
    model, device = parts.model, parts.accelerator.device
    n_total = sum(len(b) for b in micro)
    loss_sum = torch.zeros((), device=device)
    for j, global_batch in enumerate(micro):
        rows = rank_slice(global_batch, rank, world)
        sync = j == len(micro) - 1
        with contextlib.nullcontext() if sync or world == 1 else parts.accelerator.no_sync(model):
            batch = parts.data.pad(rows, parts.pad_id, multiple_of=8)
            with autocast(parts.precision, device):
                per_window = parts.loss_fn(model, batch)  # [b]
            loss = per_window.sum() * (world / n_total)
            (parts.scaler.scale(loss) if parts.scaler else loss).backward()
            loss_sum += per_window.detach().sum()
    if parts.scaler:
        parts.scaler.unscale_(parts.optimizer)
    if optim.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.max_grad_norm)
    if parts.scaler:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    parts.scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    if parts.ema is not None:
        parts.ema.update(parts.accelerator.unwrap_model(model))
    if world > 1:
        loss_sum = parts.accelerator.reduce(loss_sum, reduction="sum")
    return float(loss_sum), n_total


def _log(parts: LoopParts, state: TrainState, loss: float, windows_per_s: float) -> None:
    record = {
        "step": state.step,
        "loss": round(loss, 6),
        "learning_rate": parts.scheduler.get_last_lr()[0],
        "train_samples_per_second": round(windows_per_s, 3),
    }
    state.log_history.append(record)
    parts.on_log(record)


def _agreed(acc, requested: bool) -> bool:
    """True on every process when any process received a stop signal."""
    if acc.num_processes == 1:
        return requested
    flag = torch.tensor([1.0 if requested else 0.0], device=acc.device)
    return bool(acc.reduce(flag, reduction="sum").item() > 0)
