"""BiDAF training throughput: `spanqa train --model bidaf` against a plain PyTorch BiDAF written the way
seed 004's notebook writes it.

The reference: a data collator that tokenizes each batch on the fly and pads it to its longest question and
context (random batches, no length grouping), `nn.LSTM(bidirectional=True)` over the padded tensors (no
packing), the char CNN over every token, Adam. spanqa: its own engine on length-grouped windows, BiLSTMs
that reverse each row within its length, the char CNN once per distinct word of a batch. Same architecture
(GloVe 6B 50d + char CNN, d=100, 2 highway layers, 2-layer modeling LSTM), same hyperparameters (batch 60,
Adam 1e-3, dropout 0.2, fp32), same questions and vocabulary; before timing, the reference gets spanqa's
initial weights and both must give the same start/end logits on the same questions. The reference runs
twice: as the notebook runs it, and with spanqa's allocator setting (`spanqa.memory`: freed memory kept in
the process); the faster counts. `ratio` = spanqa questions/s / the faster reference's. ~9 minutes on 2 AVX2
cores.
Usage: python bench/recurrent.py [--questions 9000] [--spanqa-steps 100] [--reference-steps 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from _common import SQUAD_V1_TRAIN, cpu_banner, report
from torch import nn

from spanqa.data import load_examples
from spanqa.memory import keep_freed_memory
from spanqa.features import answer_token_span
from spanqa.tasks.reader_task import ReaderSettings, train
from spanqa.tasks.recurrent_readers import RecurrentConfig, new_reader

BATCH, LR, MAX_CONTEXT, MAX_QUESTION = 60, 1e-3, 400, 64


class SeedBiDAF(nn.Module):
    """BiDAF as the notebook writes it: padded batches, bidirectional nn.LSTMs, the char CNN on every token."""

    def __init__(self, vectors: torch.Tensor, n_chars: int, d: int = 100, char_dim: int = 8, channels: int = 100,
                 kernel: int = 5, highway: int = 2, p: float = 0.2) -> None:
        super().__init__()
        e = vectors.shape[1] + channels
        self.words = nn.Embedding.from_pretrained(vectors, freeze=True, padding_idx=0)
        self.char_embed = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.char_conv = nn.Conv1d(char_dim, channels, kernel)
        self.highway = nn.ModuleList(nn.Linear(e, 2 * e) for _ in range(highway))
        self.contextual = nn.LSTM(e, d, batch_first=True, bidirectional=True)
        self.w_c, self.w_q = nn.Linear(2 * d, 1), nn.Linear(2 * d, 1, bias=False)
        self.w_cq = nn.Parameter(torch.zeros(2 * d))
        self.modeling = nn.LSTM(8 * d, d, num_layers=2, batch_first=True, bidirectional=True, dropout=p)
        self.end_lstm = nn.LSTM(2 * d, d, batch_first=True, bidirectional=True)
        self.start_out, self.end_out = nn.Linear(10 * d, 1), nn.Linear(10 * d, 1)
        self.dropout = nn.Dropout(p)

    def embed(self, ids, chars):
        B, T, W = chars.shape
        c = self.char_embed(chars.view(B * T, W)).transpose(1, 2)
        c = self.dropout(F.relu(self.char_conv(c)).max(dim=-1).values.view(B, T, -1))
        x = torch.cat([self.words(ids), c], dim=-1)
        for layer in self.highway:
            h, g = layer(x).chunk(2, dim=-1)
            g = torch.sigmoid(g)
            x = g * F.relu(h) + (1 - g) * x
        return x

    def forward(self, q_ids, q_chars, c_ids, c_chars):
        q_mask, c_mask = q_ids != 0, c_ids != 0
        u, _ = self.contextual(self.dropout(self.embed(q_ids, q_chars)))
        h, _ = self.contextual(self.dropout(self.embed(c_ids, c_chars)))
        s = self.w_c(h) + self.w_q(u).transpose(1, 2) + torch.bmm(h * self.w_cq, u.transpose(1, 2))
        s = s.masked_fill(~q_mask[:, None, :], -1e9)
        u_tilde = torch.bmm(torch.softmax(s, dim=-1), u)
        b = torch.softmax(s.max(dim=-1).values.masked_fill(~c_mask, -1e9), dim=-1)
        h_tilde = torch.bmm(b[:, None, :], h)
        g = torch.cat([h, u_tilde, h * u_tilde, h * h_tilde], dim=-1)
        m, _ = self.modeling(self.dropout(g))
        m2, _ = self.end_lstm(self.dropout(m))
        start = self.start_out(self.dropout(torch.cat([g, m], -1))).squeeze(-1).masked_fill(~c_mask, -1e9)
        end = self.end_out(self.dropout(torch.cat([g, m2], -1))).squeeze(-1).masked_fill(~c_mask, -1e9)
        return start, end


def copy_weights(ours: nn.Module, ref: SeedBiDAF) -> None:
    """spanqa's BiDAF weights into the reference (per-direction LSTMs -> bidirectional nn.LSTMs)."""
    src = {k.removeprefix("reader."): v for k, v in ours.state_dict().items()}
    dst = ref.state_dict()
    direct = {"char_embed.weight": "embed.char_cnn.embed.weight", "char_conv.weight": "embed.char_cnn.conv.weight",
              "char_conv.bias": "embed.char_cnn.conv.bias", "words.weight": "embed.words.weight",
              "w_c.weight": "attention.w_c.weight", "w_c.bias": "attention.w_c.bias",
              "w_q.weight": "attention.w_q.weight", "w_cq": "attention.w_cq"}
    for key in dst:
        if key in direct:
            dst[key] = src[direct[key]]
        elif key.startswith(("contextual.", "modeling.", "end_lstm.")):
            module, param = key.split(".")
            kind, _, layer = param.rpartition("_l")
            reverse = layer.endswith("_reverse")
            dst[key] = src[f"{module}.{'bwd' if reverse else 'fwd'}.{layer.removesuffix('_reverse')}.{kind}_l0"]
        else:
            dst[key] = src[key.replace("highway.", "highway.layers.")]
    ref.load_state_dict(dst)


class SeedCollator:
    """Tokenize a batch on the fly, pad to its longest question and context, label the answer tokens."""

    def __init__(self, tokenizer, chars: torch.Tensor) -> None:
        self.backend, self.chars = tokenizer.backend_tokenizer, chars

    def __call__(self, examples):
        qs = self.backend.encode_batch([e.question for e in examples], add_special_tokens=False)
        cs = self.backend.encode_batch([e.context for e in examples], add_special_tokens=False)
        q_ids = _pad([q.ids[:MAX_QUESTION] for q in qs])
        c_ids = _pad([c.ids[:MAX_CONTEXT] for c in cs])
        spans = [answer_token_span(np.asarray(c.offsets[:MAX_CONTEXT]).reshape(-1, 2), e.answers[0].start,
                                   e.answers[0].end) for c, e in zip(cs, examples)]
        starts, ends = torch.tensor([s for s, _ in spans]), torch.tensor([e for _, e in spans])
        return q_ids, self.chars[q_ids].long(), c_ids, self.chars[c_ids].long(), starts, ends


def labelled(examples, collate: SeedCollator) -> list:
    """The questions whose answer the reference can label (the notebook drops the others before training)."""
    cs = collate.backend.encode_batch([e.context for e in examples], add_special_tokens=False)
    return [e for e, c in zip(examples, cs)
            if e.answers and answer_token_span(np.asarray(c.offsets[:MAX_CONTEXT]).reshape(-1, 2),
                                               e.answers[0].start, e.answers[0].end)[0] >= 0]


def _pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def check_same_outputs(ours, ref, tokenizer, collate, examples) -> float:
    """Largest |start/end logit difference| over context words: spanqa batched, the reference row by row
    (a row alone has no padding, so the notebook's unpacked LSTMs read it as intended)."""
    from spanqa.config import DataConfig
    from spanqa.features import build_features

    features = build_features(examples, tokenizer, DataConfig(max_seq_length=MAX_CONTEXT + MAX_QUESTION + 1))
    batch = features.pad(np.arange(len(examples)), 0)
    with torch.no_grad():
        out = ours.eval()(**{k: torch.as_tensor(batch[k]) for k in ("input_ids", "token_type_ids", "attention_mask")})
        worst = 0.0
        for i, ex in enumerate(examples):
            q_ids, q_chars, c_ids, c_chars, _, _ = collate([ex])
            start, end = ref.eval()(q_ids, q_chars, c_ids, c_chars)
            at = 1 + q_ids.shape[1]
            for mine, theirs in ((out.start_logits, start), (out.end_logits, end)):
                worst = max(worst, float((mine[i, at : at + c_ids.shape[1]] - theirs[0]).abs().max()))
    return worst


def time_reference(ref, collate, examples, steps: int, seed: int) -> dict:
    ref.train()
    optimizer = torch.optim.Adam([p for p in ref.parameters() if p.requires_grad], lr=LR)
    order = np.random.default_rng(seed).permutation(len(examples))
    t0, seen = time.perf_counter(), 0
    for step in range(steps):
        rows = order[step * BATCH : (step + 1) * BATCH]
        q_ids, q_chars, c_ids, c_chars, starts, ends = collate([examples[i] for i in rows])
        start, end = ref(q_ids, q_chars, c_ids, c_chars)
        loss = (F.cross_entropy(start, starts) + F.cross_entropy(end, ends)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(rows)
    seconds = time.perf_counter() - t0
    return {"questions_per_second": seen / seconds, "seconds": seconds, "questions": seen, "loss": float(loss.detach())}


def time_spanqa(data: str, n_questions: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        results = train(ReaderSettings.resolve({}, {
            "model": "bidaf", "train_data": data, "max_train_samples": n_questions, "output_dir": out,
            "max_steps": steps, "per_device_train_batch_size": BATCH, "optimizer": "adam", "learning_rate": LR,
            "weight_decay": 0.0, "warmup_ratio": 0.0, "lr_scheduler_type": "constant", "max_grad_norm": 5.0,
            "ema_decay": 0.999, "max_seq_length": MAX_CONTEXT + MAX_QUESTION + 1, "save_steps": 0,
            "report_to": "none", "logging_steps": 20}))
    per_window = results["train_samples_per_second"]
    return {"questions_per_second": per_window * results["train_examples"] / results["train_samples"],
            "windows_per_second": per_window, "seconds": results["train_runtime"], "loss": results["train_loss"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=9000)
    parser.add_argument("--spanqa-steps", type=int, default=100)
    parser.add_argument("--reference-steps", type=int, default=40)
    args = parser.parse_args()
    cpu = cpu_banner()
    data = str(SQUAD_V1_TRAIN) if SQUAD_V1_TRAIN.exists() else "src/spanqa/assets/squad-v1.1-train-sample.json.gz"
    examples = load_examples(data, split="train").examples[: args.questions]
    print(f"{len(examples)} questions from {data}", flush=True)
    torch.manual_seed(0)
    ours, tokenizer = new_reader("bidaf", RecurrentConfig(), examples)
    embed = ours.reader.embed
    ref = SeedBiDAF(embed.words.weight.detach().clone(), embed.char_cnn.embed.num_embeddings)
    copy_weights(ours, ref)
    collate = SeedCollator(tokenizer, embed.chars)
    examples = labelled(examples, collate)
    diff = check_same_outputs(ours, ref, tokenizer, collate, examples[:8])
    print(f"initial start/end logits, spanqa (batched) vs reference (row by row): max |diff| {diff:.2e}", flush=True)
    if diff > 1e-4:
        raise SystemExit("the two BiDAFs differ at initialisation: not the same architecture")
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    plain = time_reference(ref, collate, examples, args.reference_steps, seed=0)
    print(f"reference: {plain['questions_per_second']:.1f} questions/s over {plain['questions']} questions", flush=True)
    keep_freed_memory()  # spanqa's allocator setting (its engine applies it), given to the reference too
    ref.load_state_dict(state)
    tuned = time_reference(ref, collate, examples, args.reference_steps, seed=0)
    print(f"reference with the kept heap: {tuned['questions_per_second']:.1f} questions/s", flush=True)
    reference = max(plain, tuned, key=lambda r: r["questions_per_second"])
    spanqa = time_spanqa(data, args.questions, args.spanqa_steps)
    print(f"spanqa:    {spanqa['questions_per_second']:.1f} questions/s ({spanqa['windows_per_second']:.1f} windows/s)",
          flush=True)
    report({"spanqa_questions_per_second": round(spanqa["questions_per_second"], 2),
            "reference_questions_per_second": round(reference["questions_per_second"], 2),
            "reference_plain_malloc_questions_per_second": round(plain["questions_per_second"], 2),
            "reference_kept_heap_questions_per_second": round(tuned["questions_per_second"], 2),
            "ratio": round(spanqa["questions_per_second"] / reference["questions_per_second"], 3),
            "initial_logit_max_diff": diff, "batch": BATCH, "questions": len(examples),
            "spanqa_steps": args.spanqa_steps, "reference_steps": args.reference_steps}, cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
