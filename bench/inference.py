"""Inference throughput: spanqa's Reader against every peer a user would pick instead, same trained reader.

500 SQuAD v1.1 dev questions (default model: the quickstart reader in runs/quickstart, else minilm-l6 with
a fresh head). Peers, each in its own environment with all its dependencies (bench/_envs.py, made on first
use), each through transformers 4.57's question-answering pipeline (removed in transformers 5.3) at batch
sizes 1, 8, 16 and 32, its best batch size counting:
  transformers 4.57 pipeline (torch fp32; also bf16 weights where the CPU has bf16 units),
  optimum's ORTModelForQuestionAnswering (ONNX Runtime, ORTOptimizer O2 fusions),
  optimum-intel's OVModelForQuestionAnswering (OpenVINO fp32; also bf16 where the CPU has bf16 units).
spanqa: `spanqa export --format all` (every backend, measured on the bundled dev sample, not on these
questions), then `Reader.load` with its defaults (`backend="auto"`): that is "default"; every variant is also
timed on its own. Prints questions/s per path, answer agreement (fp32 paths must equal fp32 torch on >= 99%
of questions), the F1 change of bf16/int8, model FLOP utilisation against matmul rates measured in this run.
`ratio` = spanqa default / the fastest peer. ~10 minutes on 2 AVX2 cores (plus ~3 minutes for the first-use
installs).
Usage: python bench/inference.py [--model DIR] [--questions 500] [--batch-sizes 1,8,16,32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import SQUAD_V1_DEV, cpu_banner, report
from _envs import clean_env, ensure, versions
from _flops import matmul_rates, nonembedding_params

from spanqa.data import load_examples
from spanqa.evaluation import evaluate
from spanqa.commands.export import backend_variants, export_reader, measure_backends
from spanqa.metrics import normalize_answer
from spanqa.reader import Reader

PEERS = [("transformers-4.57", "pipeline", "fp32"), ("transformers-4.57", "pipeline", "bf16"),
         ("optimum-onnxruntime", "optimum-onnxruntime", "fp32"),
         ("optimum-openvino", "optimum-openvino", "fp32"), ("optimum-openvino", "optimum-openvino", "bf16")]


def run_peer(env: str, kind: str, precision: str, model_dir: str, items: list[dict], sizes: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        qpath, opath = Path(tmp) / "q.json", Path(tmp) / "o.json"
        qpath.write_text(json.dumps(items))
        script = Path(__file__).parent / "_peers.py"
        subprocess.run([str(ensure(env)), str(script), kind, precision, model_dir, str(qpath), str(opath), sizes],
                       check=True, env=clean_env())
        out = json.loads(opath.read_text())
    if not out["transformers"].startswith("4.57."):
        raise RuntimeError(f"{env} ran transformers {out['transformers']}, not 4.57")
    return out


def run_reader(reader: Reader, pairs, repeats: int = 2):
    reader.answer_batch(pairs[:8])  # warm-up
    best, answers = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        answers = reader.answer_batch(pairs)
        best = min(best, time.perf_counter() - t0)
    return len(pairs) / best, [a[0].text for a in answers]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "runs/quickstart" if Path("runs/quickstart/model.safetensors").exists() else "minilm-l6"
    parser.add_argument("--model", default=default)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--batch-sizes", default="1,8,16,32")
    args = parser.parse_args()
    cpu = cpu_banner()
    if not SQUAD_V1_DEV.exists():
        print(f"needs {SQUAD_V1_DEV}", file=sys.stderr)
        return 1
    dataset = load_examples(SQUAD_V1_DEV)
    dataset = dataset.head(args.questions)
    pairs = [(e.question, e.context) for e in dataset.examples]
    items = [{"question": q, "context": c} for q, c in pairs]
    score = lambda answers: evaluate(dataset, {e.id: a for e, a in zip(dataset.examples, answers)})  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _model_folder(args.model, tmp)
        peers = {}
        for env, kind, precision in PEERS:
            if precision == "bf16" and not cpu["native_bf16"]:
                continue  # without bf16 units bf16 is slower than fp32: never a peer's best
            out = run_peer(env, kind, precision, model_dir, items, args.batch_sizes)
            best_bs = max(out["runs"], key=lambda b: out["runs"][b]["questions_per_second"])
            answers = [a["text"] for a in out["runs"][best_bs]["answers"]]
            peers[f"{kind} {precision}"] = {
                "env": env, "versions": versions(env), "best_batch_size": int(best_bs),
                "by_batch_size": {b: r["questions_per_second"] for b, r in out["runs"].items()},
                "questions_per_second": out["runs"][best_bs]["questions_per_second"], "f1": score(answers)["f1"],
                "answers": answers}
        pipeline_qps = peers["pipeline fp32"]["questions_per_second"]
        fastest = max(peers, key=lambda k: peers[k]["questions_per_second"])
        all_dir = f"{tmp}/all"
        export_reader(model_dir, "all", "none", all_dir)
        table = measure_backends(all_dir, str(_sample()), 300, progress=lambda line: print(f"  export: {line}"))
        default = Reader.load(all_dir)
        print(f"spanqa default: backend auto chose {default.backend_reason}", flush=True)
        readers = {"default": default}
        for backend, precision, path in backend_variants():
            readers[f"{backend} {precision}"] = Reader.load(all_dir, backend=backend, precision=precision)
        fp32 = readers["torch fp32"]
        windows = _windows_per_question(fp32, dataset)
        rows = {}
        for name, reader in readers.items():
            qps, answers = run_reader(reader, pairs)
            rows[name] = {"questions_per_second": qps, "ratio_vs_pipeline": qps / pipeline_qps,
                          "ratio_vs_fastest_peer": qps / peers[fastest]["questions_per_second"],
                          "f1": score(answers)["f1"], "backend": reader.backend, "precision": reader.precision,
                          "answers": answers}
        reference = rows["torch fp32"]
        for name, r in rows.items():
            r["same_answer_as_fp32_torch"] = _same(r["answers"], reference["answers"])
            r["f1_change_vs_fp32_torch"] = r["f1"] - reference["f1"]
            r.update(_agreement(dataset, r["answers"], peers["pipeline fp32"]["answers"], windows))
        mfu = _mfu(fp32, dataset, rows, cpu)
    _print(peers, fastest, rows)
    fp32_rows = [r for n, r in rows.items() if n.endswith("fp32")]
    for r in (*rows.values(), *peers.values()):
        r.pop("answers")
    report({"benchmark": "inference", "model": args.model, "questions": len(pairs),
            "peers": peers, "fastest_peer": fastest, "spanqa": rows, "backend_choice": default.backend_reason,
            "export_measurements": table.to_dict(), "mfu": mfu,
            "fp32_paths_min_same_answer": min(r["same_answer_as_fp32_torch"] for r in fp32_rows),
            "ratio_vs_pipeline": rows["default"]["questions_per_second"] / pipeline_qps,
            "ratio": rows["default"]["questions_per_second"] / peers[fastest]["questions_per_second"]}, cpu)
    return 0


def _sample() -> Path:
    from importlib import resources

    return Path(str(resources.files("spanqa") / "assets" / "squad-v1.1-dev-sample.json.gz"))


def _same(answers: list[str], reference: list[str]) -> float:
    return sum(a == b for a, b in zip(answers, reference)) / len(reference)


def _model_folder(model: str, tmp: str) -> str:
    """A folder every side loads: a reader folder as is; an alias saved with a fresh span head."""
    if Path(model, "config.json").exists():
        return model
    reader = Reader.load(model, device="cpu", precision="fp32", allow_untrained_head=True)  # speed only
    torch.manual_seed(0)
    reader.model.save_pretrained(f"{tmp}/model")
    reader.tokenizer.save_pretrained(f"{tmp}/model")
    return f"{tmp}/model"


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


def _print(peers: dict, fastest: str, rows: dict) -> None:
    for name, r in peers.items():
        by = ", ".join(f"batch {b}: {q:.1f}" for b, q in r["by_batch_size"].items())
        print(f"peer {name:>26}: {r['questions_per_second']:6.1f} q/s (best batch {r['best_batch_size']}; {by}) "
              f"F1 {r['f1']:.2f}{'  <- fastest peer' if name == fastest else ''}")
    for name, r in rows.items():
        print(f"spanqa {name:>24}: {r['questions_per_second']:6.1f} q/s  x{r['ratio_vs_fastest_peer']:.2f} fastest peer  "
              f"x{r['ratio_vs_pipeline']:.2f} pipeline  F1 {r['f1']:.2f} ({r['f1_change_vs_fp32_torch']:+.2f})  "
              f"same answer as fp32 torch {r['same_answer_as_fp32_torch']:.1%}, as the pipeline "
              f"{r['same_answer_as_pipeline']:.1%} (single-window {r['same_answer_single_window']:.1%})")


def _mfu(reader: Reader, dataset, rows, cpu: dict) -> dict:
    from spanqa.features import build_features

    feats = build_features(dataset.examples, reader.tokenizer, reader.data)
    cfg, n = reader.model.config, nonembedding_params(reader.model)
    flops = sum(2 * n * t + 4 * cfg.num_hidden_layers * t * t * cfg.hidden_size for t in feats.lengths.tolist())
    rates = matmul_rates(cpu["native_bf16"], int8=True)
    out = {"matmul_gflops": rates, "windows": len(feats)}
    for name, r in rows.items():
        gflops = flops * r["questions_per_second"] / len(dataset) / 1e9
        kind = r["precision"] if rates.get(r["precision"]) else "fp32"  # int8 paths: against the int8 matmul rate
        out[name] = {"useful_gflops": gflops, "mfu": gflops / rates[kind]}
        print(f"  {name:>10}: {gflops:.0f} useful GFLOP/s = {gflops / rates[kind]:.1%} of the {kind} matmul peak")
    return out


if __name__ == "__main__":
    sys.exit(main())
