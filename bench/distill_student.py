"""Does distillation pay? A 3-layer student distilled from a 6-layer reader against the same student
fine-tuned without a teacher, on the same budget; and how much faster the student answers.

1. Teacher: minilm-l6 (6 layers) fine-tuned by `spanqa train` on the first --teacher-questions SQuAD v1.1
   training questions (skipped when --out already holds it; delete it after changing the size).
2. Students: 3 of the teacher's 6 layers (`--student-layers 3`: layers 0, 2/3, 5 evenly spaced) with the
   teacher's span head, trained on the first --student-questions training questions for one epoch:
   - distilled: `spanqa distill` with the seed's temperature 1.5 and weight 0.75, teacher logits cached;
   - baseline: the same command with weight 0 (gold spans only, no teacher).
3. All three scored on the first --dev-questions SQuAD v1.1 dev questions (spanqa's decoder, official
   metrics), then timed answering --speed-questions dev questions with `Reader.answer_batch` (default
   precision: bf16 where the CPU has native bf16 units, else fp32; training uses the same default).
`ratio` = student questions/s / teacher questions/s. Takes ~8 minutes on 2 AVX2 cores at the default
sizes; a teacher that small is weak, so for the distillation gain itself use e.g. --teacher-questions 12000
--student-questions 12000 --dev-questions 1000 (hours on 2 AVX2 cores, far less with AMX).
Usage: python bench/distill_student.py [--out bench/out/distill] [--teacher-questions 800] [--student-questions 800]
       [--dev-questions 500] [--speed-questions 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import SQUAD_V1_DEV, SQUAD_V1_TRAIN, cpu_banner, report, spanqa_train

from spanqa.data import load_examples
from spanqa.evaluation import evaluate
from spanqa.reader import Reader

HPARAMS = {"learning_rate": 1e-4, "per_device_train_batch_size": 16, "num_train_epochs": 1.0, "seed": 42,
           "warmup_ratio": 0.1, "weight_decay": 0.01}


def distil(teacher: str, out: str, questions: int, weight: float) -> float:
    from spanqa.tasks.reader_task import DistillSettings, train

    flags = {"teacher": teacher, "student_layers": 3, "temperature": 1.5, "distillation_loss_weight": weight,
             "train_data": str(SQUAD_V1_TRAIN), "max_train_samples": questions, "output_dir": out,
             "overwrite_output_dir": True, "save_steps": 0, "report_to": "none", **HPARAMS}
    t0 = time.perf_counter()
    train(DistillSettings.resolve({}, flags))
    return time.perf_counter() - t0


def score(model_dir: str, dev) -> dict:
    reader = Reader.load(model_dir, device="cpu", precision="fp32")
    preds = reader.predict(dev.examples)
    return evaluate(dev, {p.id: p.answer for p in preds})


def speed(model_dir: str, pairs, repeats: int = 2) -> float:
    reader = Reader.load(model_dir, device="cpu")
    reader.answer_batch(pairs[:8])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        reader.answer_batch(pairs)
        best = min(best, time.perf_counter() - t0)
    return len(pairs) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out/distill")
    parser.add_argument("--teacher-questions", type=int, default=800)
    parser.add_argument("--student-questions", type=int, default=800)
    parser.add_argument("--dev-questions", type=int, default=500)
    parser.add_argument("--speed-questions", type=int, default=300)
    args = parser.parse_args()
    cpu = cpu_banner()
    if not SQUAD_V1_TRAIN.exists():
        print(f"needs {SQUAD_V1_TRAIN}", file=sys.stderr)
        return 1
    out = Path(args.out)
    teacher = out / "teacher"
    walls = {}
    if not (teacher / "model.safetensors").exists():
        walls["teacher"] = spanqa_train(max_train_samples=args.teacher_questions, output_dir=str(teacher),
                                        overwrite_output_dir=True, **HPARAMS)["wall_s"]
    walls["distilled"] = distil(str(teacher), str(out / "student-distilled"), args.student_questions, 0.75)
    walls["baseline"] = distil(str(teacher), str(out / "student-baseline"), args.student_questions, 0.0)
    dev = load_examples(SQUAD_V1_DEV)
    dev = type(dev)(dev.examples[: args.dev_questions], dev.source, dev.format, dev.version)
    models = {"teacher": teacher, "distilled": out / "student-distilled", "baseline": out / "student-baseline"}
    scores = {name: score(str(path), dev) for name, path in models.items()}
    pairs = [(e.question, e.context) for e in dev.examples[: args.speed_questions]]
    qps = {name: speed(str(path), pairs) for name, path in models.items()}
    for name in models:
        print(f"{name:>10}: EM {scores[name]['exact']:.2f}  F1 {scores[name]['f1']:.2f}  {qps[name]:.1f} q/s"
              + (f"  (trained in {walls[name]:.0f} s)" if name in walls else ""))
    report({"benchmark": "distill_student", "teacher_questions": args.teacher_questions,
            "student_questions": args.student_questions, "dev_questions": len(dev),
            "f1": {k: v["f1"] for k, v in scores.items()}, "exact": {k: v["exact"] for k, v in scores.items()},
            "questions_per_second": qps, "train_seconds": walls,
            "distillation_gain_f1": scores["distilled"]["f1"] - scores["baseline"]["f1"],
            "speed_questions": len(pairs), "ratio": qps["distilled"] / qps["teacher"]}, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
