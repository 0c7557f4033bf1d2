"""Reference side of bench/inference.py: a peer answers the questions, at each batch size given.

Runs in the peer's own environment (bench/_envs.py), never in spanqa's. Every peer answers through
transformers 4.57's question-answering pipeline (the last release that has it), with its own model class:
  pipeline             the torch model (fp32, or bf16 weights)
  optimum-onnxruntime  optimum's ORTModelForQuestionAnswering, exported, then optimised by ORTOptimizer at
                       level O2 (ONNX Runtime's transformer fusions, exact fp32 numerics)
  optimum-openvino     optimum-intel's OVModelForQuestionAnswering, exported, compiled fp32 or bf16
Usage: python _peers.py KIND PRECISION MODEL_DIR QUESTIONS.json OUT.json BATCH_SIZES
"""

import json
import sys
import tempfile
import time

SETTINGS = dict(max_seq_len=384, doc_stride=128, max_answer_len=30, max_question_len=64)


def load_model(kind: str, precision: str, model_dir: str, tmp: str):
    if kind == "pipeline":
        import torch
        from transformers import AutoModelForQuestionAnswering

        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        return AutoModelForQuestionAnswering.from_pretrained(model_dir, dtype=dtype).eval()
    if kind == "optimum-onnxruntime":
        from optimum.onnxruntime import ORTModelForQuestionAnswering, ORTOptimizer
        from optimum.onnxruntime.configuration import AutoOptimizationConfig

        exported = ORTModelForQuestionAnswering.from_pretrained(model_dir, export=True)
        ORTOptimizer.from_pretrained(exported).optimize(save_dir=f"{tmp}/ort",
                                                        optimization_config=AutoOptimizationConfig.O2())
        return ORTModelForQuestionAnswering.from_pretrained(f"{tmp}/ort")
    if kind == "optimum-openvino":
        from optimum.intel import OVModelForQuestionAnswering

        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        return OVModelForQuestionAnswering.from_pretrained(model_dir, export=True,
                                                          ov_config={"INFERENCE_PRECISION_HINT": hint})
    raise SystemExit(f"unknown peer {kind}")


def load_tokenizer(model_dir: str):
    """The folder's tokenizer; a tokenizer.json saved by transformers 5 under a class 4.57 does not know
    (TokenizersBackend) is read as the plain fast tokenizer it is."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except ValueError:
        config = json.load(open(f"{model_dir}/tokenizer_config.json"))
        specials = {k: config[k] for k in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token") if k in config}
        return PreTrainedTokenizerFast(tokenizer_file=f"{model_dir}/tokenizer.json", **specials)


def main() -> None:
    kind, precision, model_dir, questions_path, out_path, sizes = sys.argv[1:7]
    import torch
    import transformers
    from transformers import pipeline

    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(kind, precision, model_dir, tmp)
        qa = pipeline("question-answering", model=model, tokenizer=load_tokenizer(model_dir), device="cpu")
        items = json.load(open(questions_path))
        qa(items[:4], batch_size=4, **SETTINGS)  # warm-up
        runs = {}
        for bs in [int(s) for s in sizes.split(",")]:
            t0 = time.perf_counter()
            with torch.inference_mode():
                outs = qa(items, batch_size=bs, **SETTINGS)
            seconds = time.perf_counter() - t0
            runs[bs] = {"questions_per_second": len(items) / seconds,
                        "answers": [{"text": o["answer"], "start": o["start"], "end": o["end"]} for o in outs]}
            print(f"  {kind} {precision} batch {bs}: {len(items) / seconds:.1f} q/s", file=sys.stderr, flush=True)
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "runs": runs}, open(out_path, "w"))


if __name__ == "__main__":
    main()
