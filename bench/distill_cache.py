"""Teacher-logit caching: a multi-epoch distillation with the teacher's logits computed once (memory-mapped
float16 files) against the same run with the teacher run on every batch.

Teacher: a reader (default: runs/quickstart, else bench/out/distill/teacher); student: --student-layers of
its layers, --questions SQuAD v1.1 training questions (300), --epochs epochs (4, as the TinyRoBERTa recipe),
batch 16, the seed's temperature 1.5 and weight 0.75. Wall time includes computing the cache. `ratio` =
uncached wall time / cached wall time. Also printed: what a teacher forward costs per window (live: the
difference in loop time; cached: the one-off pass), so the saving can be scaled to a teacher that costs
more relative to its student (RoBERTa-large teaching a 6-layer model: ~1.5 student steps per window,
against ~0.2-0.5 here), and both runs' final training loss (float16 logits barely change the targets).
Both runs use spanqa's default precision (bf16 where the CPU has native bf16 units, else fp32).
Takes ~7 minutes on 2 AVX2 cores at the default size.
Usage: python bench/distill_cache.py [--teacher DIR] [--questions 300] [--epochs 4] [--student-layers 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import SQUAD_V1_TRAIN, cpu_banner, report


def distil(teacher: str, out: str, questions: int, epochs: float, cache: bool, layers: int) -> dict:
    from spanqa.tasks.reader_task import DistillSettings, train

    flags = {"teacher": teacher, "student_layers": layers, "temperature": 1.5, "distillation_loss_weight": 0.75,
             "cache_teacher_logits": cache, "train_data": str(SQUAD_V1_TRAIN), "max_train_samples": questions,
             "num_train_epochs": epochs, "per_device_train_batch_size": 16, "learning_rate": 1e-4,
             "output_dir": out, "save_steps": 0, "report_to": "none", "seed": 42}
    t0 = time.perf_counter()
    results = train(DistillSettings.resolve({}, flags))
    results["wall_s"] = time.perf_counter() - t0
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = next((p for p in ("runs/quickstart", "bench/out/distill/teacher") if Path(p, "model.safetensors").exists()), "")
    parser.add_argument("--teacher", default=default)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--student-layers", type=int, default=3)
    args = parser.parse_args()
    cpu = cpu_banner()
    if not SQUAD_V1_TRAIN.exists() or not args.teacher:
        print(f"needs {SQUAD_V1_TRAIN} and a teacher reader (--teacher, e.g. from `spanqa quickstart`)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        cached = distil(args.teacher, f"{tmp}/cached", args.questions, args.epochs, True, args.student_layers)
        live = distil(args.teacher, f"{tmp}/live", args.questions, args.epochs, False, args.student_layers)
    for name, r in (("cached teacher logits", cached), ("teacher every batch", live)):
        print(f"{name:>22}: {r['wall_s']:6.1f} s wall, {r['train_samples_per_second']:.1f} windows/s, "
              f"final train loss {r['train_loss']:.4f}")
    ratio = live["wall_s"] / cached["wall_s"]
    windows = cached["train_samples"]
    step_ms = 1000 / cached["train_samples_per_second"]
    live_teacher_ms = 1000 / live["train_samples_per_second"] - step_ms
    build_ms = 1000 * (cached["wall_s"] - cached["train_runtime"] - (live["wall_s"] - live["train_runtime"])) / windows
    print(f"per window: student step {step_ms:.1f} ms, teacher forward in the loop {live_teacher_ms:.1f} ms, "
          f"one-off cache pass {build_ms:.1f} ms")
    print(f"caching speed-up over {args.epochs:g} epochs: x{ratio:.2f}")
    report({"benchmark": "distill_cache", "teacher": args.teacher, "questions": args.questions, "epochs": args.epochs,
            "wall_s": {"cached": cached["wall_s"], "live": live["wall_s"]},
            "windows_per_second": {"cached": cached["train_samples_per_second"], "live": live["train_samples_per_second"]},
            "train_loss": {"cached": cached["train_loss"], "live": live["train_loss"]},
            "per_window_ms": {"student_step": step_ms, "teacher_in_loop": live_teacher_ms, "cache_pass": build_ms},
            "student_layers": args.student_layers, "ratio": ratio}, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
