"""Which engine runs a reader: torch, ONNX Runtime or OpenVINO, at which precision, and why.

Windowing and decoding are shared; a backend only maps input ids to start/end logits. `spanqa export
--format all` writes every backend into one reader folder and measures each against fp32 torch on the
same dev questions (`BackendTable`). `backend="auto"` then takes the fastest one measured on this CPU whose
answers stay within the accuracy guard below, and logs the choice with its figures.

The guard (F1 change against fp32 torch, in points): int8 within 1.0, bf16 within 0.3, fp32 within 0.1
(an fp32 engine that moves F1 more than rounding can is a broken export, not a faster one).
Worked example: onnxruntime int8 at 410 q/s with F1 -1.4, openvino fp32 at 260 q/s with F1 +0.0, torch fp32 at
150 q/s -> int8 fails the guard, auto picks openvino fp32.
"""

from __future__ import annotations

from spanqa.artifacts import BackendMeasurement, BackendTable
from spanqa.config import BACKEND_CHOICES  # noqa: F401 - re-exported
from spanqa.errors import SpanqaError
from spanqa.precision import cpu_signature

F1_GUARD = {"fp32": 0.1, "bf16": 0.3, "int8": 1.0}


def within_guard(row: BackendMeasurement) -> bool:
    return abs(row.f1_change) <= F1_GUARD.get(row.precision, 0.0)


def choose(table: BackendTable, backend: str = "auto", precision: str = "auto",
           cpu: str | None = None) -> tuple[BackendMeasurement, str]:
    """(the measured backend to run, why), among `table`'s rows.

    Args:
        backend: "auto", or a backend to restrict the choice to.
        precision: "auto", or a precision to restrict the choice to (then the guard is not applied: asked for).
        cpu: the machine's signature (default: this one's).
    Raises:
        SpanqaError: no row matches the restriction.
    """
    cpu = cpu or cpu_signature()
    rows = [r for r in table.measured if backend in ("auto", r.backend) and precision in ("auto", r.precision)]
    if not rows:
        have = ", ".join(r.name for r in table.measured) or "none"
        raise SpanqaError(f"no {backend} {precision} variant in this reader folder (it has: {have}); "
                          "write one with: spanqa export --model FOLDER --format all --output NEW")
    # speed depends on the CPU's units (bf16, VNNI, AMX) far more than on its clock, so a table measured on
    # another kind of CPU is only used when this CPU has none of its own
    here = [r for r in rows if r.cpu == cpu]
    pool, where = (here, "measured on this CPU") if here else (rows, f"measured on {rows[0].cpu}, not this CPU "
                                                                      f"({cpu}); re-run spanqa export here to measure it")
    if precision == "auto":
        refused = [r for r in pool if not within_guard(r)]
        # when nothing passes the guard, fall back to the first row measured (export writes torch fp32 first,
        # the reference the F1 changes are measured against), rather than to the fastest inaccurate one
        pool = [r for r in pool if within_guard(r)] or pool[:1]
    else:
        refused = []
    best = max(pool, key=lambda r: r.questions_per_second)
    others = ", ".join(f"{r.name} {r.questions_per_second:.1f}" for r in pool if r is not best)
    why = (f"{best.name}: fastest {where}, {best.questions_per_second:.1f} questions/s, F1 change "
           f"{best.f1_change:+.2f} on {table.questions} questions" + (f" (others: {others})" if others else ""))
    if refused:
        why += "; not chosen, outside the accuracy guard: " + ", ".join(
            f"{r.name} F1 {r.f1_change:+.2f} (guard {F1_GUARD.get(r.precision, 0.0)})" for r in refused)
    return best, why
