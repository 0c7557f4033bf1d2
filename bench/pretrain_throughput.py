"""Pretraining throughput: `spanqa pretrain` against transformers' Trainer set up as run_mlm.py sets it up.

Both train the same randomly initialised encoder (default: the BERT-base shape, 12 x 768, on the
uncased WordPiece vocabulary of minilm-l6) with masked-LM only on the same packed 128-token sequences
(SQuAD v1.1 dev contexts, documents joined and cut into full blocks, as run_mlm's group_texts does), batch
32, AdamW, each side in what is fastest on this CPU: bf16 where it has native bf16 units, else fp32.
The Trainer gets `BertForMaskedLM` with `DataCollatorForLanguageModeling(mlm_probability=0.15)` and
bf16=True there (fp32 elsewhere). spanqa uses its defaults (precision auto, vocabulary projection on the
masked tokens only, its CPU dropout kernels).
Throughput is tokens/s over the steps after --warmup steps (median step time). `ratio` = spanqa / Trainer.
MFU counts useful FLOPs only: 6 x non-embedding parameters per token, attention, and the vocabulary
projection for the masked 15% of tokens, against the matmul rate measured in the same run for the
precision both sides ran. Takes ~6 minutes on 2 AVX2 cores at the default size.
Usage: python bench/pretrain_throughput.py [--arch bert-base|minilm] [--steps 5] [--warmup 1] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import SQUAD_V1_DEV, best_precision, cpu_banner, report
from _flops import matmul_rates

from spanqa.data import load_examples
from spanqa.data.text import split_sentences, tokenize_corpus
from spanqa.models.hub import load_tokenizer
from spanqa.tasks.pretrain import packed_sequences

ARCHS = {
    "bert-base": "num_hidden_layers=12,hidden_size=768,num_attention_heads=12,intermediate_size=3072",
    "minilm": "",
}


def corpus_file(tmp: str) -> str:
    contexts = list(dict.fromkeys(e.context for e in load_examples(SQUAD_V1_DEV).examples))
    path = Path(tmp) / "corpus.txt"
    path.write_text("\n\n".join("\n".join(split_sentences(c)) for c in contexts) + "\n")
    return str(path)


def run_spanqa(corpus: str, overrides: str, steps: int, batch: int, out: str, cache: str) -> list[float]:
    from spanqa.tasks.pretrain import PretrainSettings, build
    from spanqa.train.engine import run_task

    settings = PretrainSettings.resolve({}, {
        "model": "minilm-l6", "init_weights": "random", "config_overrides": overrides, "train_data": corpus,
        "next_sentence_prediction": False, "max_seq_length": 128, "per_device_train_batch_size": batch,
        "max_steps": steps, "learning_rate": 1e-4, "warmup_ratio": 0.0, "logging_steps": 1, "save_steps": 0,
        "report_to": "none", "output_dir": out, "cache_dir": cache, "group_by_length": False,
    })
    run_task(settings, build)
    state = json.loads((Path(out) / "trainer_state.json").read_text())
    rates = [r["train_samples_per_second"] for r in state["log_history"] if "train_samples_per_second" in r]
    return [batch / r for r in rates]  # seconds per step


def run_trainer(sequences, overrides: str, steps: int, batch: int, out: str, bf16: bool) -> list[float]:
    from transformers import (AutoConfig, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer,
                              TrainerCallback, TrainingArguments)

    from spanqa.models.hub import resolve_model_path
    from spanqa.train.run_config import RunConfig

    tokenizer = load_tokenizer("minilm-l6")
    config = AutoConfig.from_pretrained(resolve_model_path("minilm-l6"),
                                        **RunConfig(config_overrides=overrides).overrides())
    model = BertForMaskedLM(config)
    rows = [{"input_ids": sequences.ids[sequences.row_splits[i] : sequences.row_splits[i + 1]].tolist()}
            for i in range(len(sequences))]
    rows = [r for r in rows if len(r["input_ids"]) == 128]
    marks: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-4,
                             bf16=bf16, use_cpu=True, report_to=[], save_strategy="no", logging_steps=1000,
                             dataloader_drop_last=True, seed=42, disable_tqdm=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[Timer()])
    trainer.train()
    return [b - a for a, b in zip(marks, marks[1:])]


def useful_flops_per_token(overrides: str) -> float:
    from transformers import AutoConfig

    from spanqa.models.hub import resolve_model_path
    from spanqa.train.run_config import RunConfig

    c = AutoConfig.from_pretrained(resolve_model_path("minilm-l6"), **RunConfig(config_overrides=overrides).overrides())
    per_layer = 4 * c.hidden_size**2 + 2 * c.hidden_size * c.intermediate_size
    dense = 6 * c.num_hidden_layers * per_layer
    attention = 3 * 4 * c.num_hidden_layers * 128 * c.hidden_size
    head = 0.15 * 6 * (c.hidden_size**2 + c.hidden_size * c.vocab_size)  # transform + projection, masked tokens
    return dense + attention + head


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="bert-base")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    cpu = cpu_banner()
    precision = best_precision(cpu)
    if not SQUAD_V1_DEV.exists():
        print(f"needs {SQUAD_V1_DEV}", file=sys.stderr)
        return 1
    overrides = ARCHS[args.arch]
    total = args.steps + args.warmup
    with tempfile.TemporaryDirectory() as tmp:
        corpus = corpus_file(tmp)
        sequences = packed_sequences(tokenize_corpus([corpus], load_tokenizer("minilm-l6"), f"{tmp}/cache"), 128,
                                     load_tokenizer("minilm-l6"))
        ours = run_spanqa(corpus, overrides, total, args.batch_size, f"{tmp}/spanqa", f"{tmp}/cache")[args.warmup :]
        ref = run_trainer(sequences, overrides, total, args.batch_size, f"{tmp}/trainer",
                          bf16=precision == "bf16")[args.warmup - 1 :]
    tokens, reference = args.batch_size * 128, f"trainer_{precision}"
    tps = {"spanqa": tokens / statistics.median(ours), reference: tokens / statistics.median(ref)}
    rates = matmul_rates(cpu["native_bf16"])
    peak = rates[precision]
    per_token = useful_flops_per_token(overrides)
    mfu = {k: v * per_token / 1e9 / peak for k, v in tps.items()}
    for name in tps:
        print(f"{name:>13}: {tps[name]:8.0f} tokens/s  {tps[name] * per_token / 1e9:6.0f} useful GFLOP/s = "
              f"{mfu[name]:.1%} of the {precision} matmul peak ({peak:.0f} GFLOP/s)")
    report({"benchmark": "pretrain_throughput", "arch": args.arch, "batch_size": args.batch_size, "seq_len": 128,
            "precision": precision, "timed_steps": args.steps, "tokens_per_second": tps,
            "step_seconds": {"spanqa": ours, reference: ref}, "useful_flops_per_token": per_token,
            "matmul_gflops": rates, "mfu": mfu, "ratio": tps["spanqa"] / tps[reference]}, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
