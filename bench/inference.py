"""Inference throughput: `Reader.answer_batch` against transformers' question-answering pipeline.

500 SQuAD v1.1 dev questions, the same model for both (default: the quickstart reader in
runs/quickstart, else minilm-l6 with a fresh head). The pipeline was removed in transformers 5, so the
reference runs transformers 4.57 in a subprocess, from its own virtual environment (bench/.ref/, made on
first use: transformers 4.57 with every dependency, torch shared with this environment), at batch sizes 1, 8,
16 and 32; its best is the reference. spanqa runs fp32, its default (bf16 where the CPU has bf16 units, else
fp32: then the two rows are one run), torch int8 and ONNX Runtime int8. `ratio` = spanqa's default path /
the pipeline's best. Also prints model FLOP utilisation.
Takes ~3 minutes on 2 AVX2 cores (plus ~30 s for the first-use install).
Usage: python bench/inference.py [--model DIR] [--questions 500] [--pipeline-batch-sizes 1,8,16,32]
"""

from __future__ import annotations

import argparse
import json
import os
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import SQUAD_V1_DEV, cpu_banner, report
from _flops import matmul_rates, nonembedding_params

from spanqa.data import load_examples
from spanqa.evaluation import evaluate
from spanqa.metrics import normalize_answer
from spanqa.reader import Reader

REF_VERSION = "4.57"
REF_ENV = Path(__file__).parent / ".ref" / f"venv-transformers-{REF_VERSION}"
REF_PYTHON = REF_ENV / "bin" / "python"
REF_MARKER = REF_ENV / "installed.json"


def ensure_reference() -> Path:
    """The interpreter of a virtual environment holding transformers 4.57 with all its dependencies.

    Made once under bench/.ref (gitignored) and reused. `--system-site-packages` lets it reuse the
    project's torch (no second, CUDA-sized download); pip installs transformers 4.57 and whatever of its
    dependencies the shared packages do not satisfy (tokenizers 0.22, huggingface-hub < 1, ...) into the
    environment itself, so the project's own packages are untouched. The marker is written only after the
    environment has imported transformers 4.57, so an interrupted install is redone.
    """
    if REF_MARKER.exists() and REF_PYTHON.exists():
        return REF_PYTHON
    print(f"creating {REF_ENV} with transformers=={REF_VERSION}.* (reference only)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", "--system-site-packages", str(REF_ENV)], check=True)
    if sys.prefix != sys.base_prefix:
        _see_this_venv()
    # --no-warn-conflicts: pip would report shared packages the reference never imports (e.g. datasets
    # wanting huggingface-hub >= 1) as broken by the environment's own huggingface-hub 0.x.
    subprocess.run([str(REF_PYTHON), "-m", "pip", "install", "-q", "--no-warn-conflicts",
                    f"transformers=={REF_VERSION}.*"], check=True, env=_isolated_env())
    probe = "import transformers, torch, json; print(json.dumps([transformers.__version__, torch.__version__]))"
    versions = json.loads(subprocess.run([str(REF_PYTHON), "-c", probe], check=True, capture_output=True, text=True,
                                         env=_isolated_env()).stdout)
    if not versions[0].startswith(REF_VERSION + "."):
        raise RuntimeError(f"{REF_ENV} imports transformers {versions[0]}, not {REF_VERSION}")
    REF_MARKER.write_text(json.dumps({"transformers": versions[0], "torch": versions[1]}))
    return REF_PYTHON


def _see_this_venv() -> None:
    """Run from a venv, `--system-site-packages` reaches the base interpreter's packages, not this venv's (where
    torch may be): a .pth file adds them, after the reference environment's own."""
    purelib = subprocess.run([str(REF_PYTHON), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "_outer_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")


def _isolated_env() -> dict:
    """This process's environment without what would put other packages ahead of the reference's own."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def run_pipeline(model_dir: str, items: list[dict], sizes: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        qpath, opath = Path(tmp) / "q.json", Path(tmp) / "o.json"
        qpath.write_text(json.dumps(items))
        script = Path(__file__).parent / "_pipeline_ref.py"
        subprocess.run([str(ensure_reference()), str(script), model_dir, str(qpath), str(opath), sizes], check=True,
                       env=_isolated_env())
        ref = json.loads(opath.read_text())
    if not ref["transformers"].startswith(REF_VERSION + "."):
        raise RuntimeError(f"the reference ran transformers {ref['transformers']}, not {REF_VERSION}")
    return ref


def run_reader(reader: Reader, pairs, repeats: int = 2):
    reader.answer_batch(pairs[:8])  # warm-up
    best, answers = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        answers = reader.answer_batch(pairs)
        best = min(best, time.perf_counter() - t0)
    return len(pairs) / best, [a[0] for a in answers]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "runs/quickstart" if Path("runs/quickstart/model.safetensors").exists() else "minilm-l6"
    parser.add_argument("--model", default=default)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--pipeline-batch-sizes", default="1,8,16,32")
    args = parser.parse_args()
    cpu = cpu_banner()
    if not SQUAD_V1_DEV.exists():
        print(f"needs {SQUAD_V1_DEV}", file=sys.stderr)
        return 1
    dataset = load_examples(SQUAD_V1_DEV)
    dataset = type(dataset)(dataset.examples[: args.questions], dataset.source, dataset.format, dataset.version)
    pairs = [(e.question, e.context) for e in dataset.examples]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _model_folder(args.model, tmp)
        ref = run_pipeline(model_dir, [{"question": q, "context": c} for q, c in pairs], args.pipeline_batch_sizes)
        best_bs = max(ref["runs"], key=lambda b: ref["runs"][b]["questions_per_second"])
        ref_qps = ref["runs"][best_bs]["questions_per_second"]
        ref_answers = [a["text"] for a in ref["runs"][best_bs]["answers"]]
        variants = _spanqa_variants(model_dir, tmp)
        windows = _windows_per_question(variants["fp32"], dataset)
        rows, timed = {}, {}
        for name, reader in variants.items():
            if id(reader) in timed:  # `default` resolved to fp32: the same reader, timed once
                rows[name] = rows[timed[id(reader)]]
                continue
            timed[id(reader)] = name
            qps, answers = run_reader(reader, pairs)
            scores = evaluate(dataset, {e.id: a.text for e, a in zip(dataset.examples, answers)})
            rows[name] = {"questions_per_second": qps, "ratio_vs_pipeline": qps / ref_qps, "exact": scores["exact"],
                          "f1": scores["f1"], "precision": reader.precision,
                          **_agreement(dataset, [a.text for a in answers], ref_answers, windows)}
    ref_scores = evaluate(dataset, {e.id: a for e, a in zip(dataset.examples, ref_answers)})
    _print(ref, best_bs, ref_qps, ref_scores, rows)
    mfu = _mfu(variants["fp32"], dataset, rows, cpu)
    shares = {"fp32": _op_shares(variants["fp32"], pairs[:100])}
    one_run = variants["default"] is variants["fp32"]
    shares["default"] = shares["fp32"] if one_run else _op_shares(variants["default"], pairs[:100])
    default = rows["default"]
    report({"benchmark": "inference", "model": args.model, "questions": len(pairs),
            "pipeline": {"transformers": ref["transformers"], "best_batch_size": int(best_bs),
                         "by_batch_size": {b: r["questions_per_second"] for b, r in ref["runs"].items()},
                         "questions_per_second": ref_qps, "f1": ref_scores["f1"]},
            "spanqa": rows, "mfu": mfu, "time_shares": shares, "f1_change_default_vs_fp32": default["f1"] - rows["fp32"]["f1"],
            "ratio": default["questions_per_second"] / ref_qps}, cpu)
    return 0


def _model_folder(model: str, tmp: str) -> str:
    """A folder both sides load: a reader folder as is; an alias saved with a fresh span head."""
    if Path(model, "config.json").exists():
        return model
    reader = Reader.load(model, device="cpu", precision="fp32")
    torch.manual_seed(0)
    reader.model.save_pretrained(f"{tmp}/model")
    reader.tokenizer.save_pretrained(f"{tmp}/model")
    return f"{tmp}/model"


def _spanqa_variants(model_dir: str, tmp: str) -> dict:
    from spanqa.export import export_reader

    out = {"fp32": Reader.load(model_dir, device="cpu", precision="fp32"),
           "default": Reader.load(model_dir, device="cpu"),
           "torch_int8": Reader.load(model_dir, device="cpu", precision="int8")}
    if out["default"].precision == "fp32":
        out["default"] = out["fp32"]
    try:
        export_reader(model_dir, "onnx", "int8", f"{tmp}/onnx-int8")
        out["onnx_int8"] = Reader.load(f"{tmp}/onnx-int8", device="cpu")
    except Exception as exc:  # report, do not hide: ONNX export depends on the installed exporters
        print(f"onnx int8 skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    return out


def _windows_per_question(reader: Reader, dataset) -> list[int]:
    from spanqa.features import build_features

    feats = build_features(dataset.examples, reader.tokenizer, reader.data)
    counts = [0] * len(dataset)
    for i in feats.example_index.tolist():
        counts[i] += 1
    return counts


def _agreement(dataset, answers: list[str], ref_answers: list[str], windows: list[int]) -> dict:
    """How often spanqa and the pipeline give the same answer, split by one window / several windows.

    The pipeline ranks a long context's windows by per-window softmax probabilities and ignores which
    window gives a token its most context; spanqa compares raw start+end logits and scores a token only in
    its max-context window (as run_qa and the BERT reference code do). So the two may differ on multi-window
    questions by design; for the differing ones, F1 against gold says which choice was better.
    """
    from spanqa.metrics import f1_v1

    same = [normalize_answer(a) == normalize_answer(r) for a, r in zip(answers, ref_answers)]
    single = [s for s, w in zip(same, windows) if w == 1]
    differing = [i for i, s in enumerate(same) if not s]
    f1 = lambda text, e: max(f1_v1(text, a.text) for a in e.answers)  # noqa: E731
    ex = dataset.examples
    return {"same_answer_as_pipeline": sum(same) / len(same),
            "same_answer_single_window": sum(single) / max(len(single), 1),
            "single_window_questions": len(single),
            "differing": len(differing),
            "differing_multi_window": sum(windows[i] > 1 for i in differing),
            "differing_f1_spanqa": sum(f1(answers[i], ex[i]) for i in differing) / max(len(differing), 1) * 100,
            "differing_f1_pipeline": sum(f1(ref_answers[i], ex[i]) for i in differing) / max(len(differing), 1) * 100}


def _print(ref, best_bs, ref_qps, ref_scores, rows) -> None:
    by = ", ".join(f"batch {b}: {r['questions_per_second']:.1f}" for b, r in ref["runs"].items())
    print(f"pipeline (transformers {ref['transformers']}): {by} q/s; best {ref_qps:.1f} q/s (batch {best_bs}), "
          f"F1 {ref_scores['f1']:.2f}")
    for name, r in rows.items():
        print(f"spanqa {name:>10} ({r['precision']}): {r['questions_per_second']:6.1f} q/s  x{r['ratio_vs_pipeline']:.2f}  "
              f"F1 {r['f1']:.2f}  same answer as pipeline {r['same_answer_as_pipeline']:.2%} "
              f"(single-window questions {r['same_answer_single_window']:.2%}; {r['differing']} differ, "
              f"{r['differing_multi_window']} of them multi-window; F1 on those: spanqa {r['differing_f1_spanqa']:.1f}, "
              f"pipeline {r['differing_f1_pipeline']:.1f})")


def _op_shares(reader: Reader, pairs) -> dict:
    """Where a forward pass spends its time: dense layers, attention, everything else (torch profiler)."""
    with torch.profiler.profile() as prof:
        reader.answer_batch(pairs)
    groups = {"linear": ("addmm", "mm", "linear"), "attention": ("scaled_dot_product", "flash_attention", "bmm")}
    times = {"linear": 0.0, "attention": 0.0, "other": 0.0}
    for event in prof.key_averages():
        kind = next((g for g, keys in groups.items() if any(k in event.key for k in keys)), "other")
        times[kind] += event.self_cpu_time_total
    total = sum(times.values()) or 1.0
    shares = {k: v / total for k, v in times.items()}
    print(f"  {reader.precision} time: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    return shares


def _mfu(reader: Reader, dataset, rows, cpu: dict) -> dict:
    from spanqa.features import build_features

    feats = build_features(dataset.examples, reader.tokenizer, reader.data)
    cfg, n = reader.model.config, nonembedding_params(reader.model)
    flops = sum(2 * n * t + 4 * cfg.num_hidden_layers * t * t * cfg.hidden_size for t in feats.lengths.tolist())
    rates = matmul_rates(cpu["native_bf16"])
    out = {"matmul_gflops": rates, "windows": len(feats)}
    for name, r in rows.items():
        gflops = flops * r["questions_per_second"] / len(dataset) / 1e9
        kind = "bf16" if r["precision"] == "bf16" else "fp32"
        out[name] = {"useful_gflops": gflops, "mfu": gflops / rates[kind]}
        print(f"  {name:>10}: {gflops:.0f} useful GFLOP/s = {gflops / rates[kind]:.1%} of the {kind} matmul peak")
    return out


if __name__ == "__main__":
    sys.exit(main())
