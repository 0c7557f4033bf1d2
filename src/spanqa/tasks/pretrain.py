"""`spanqa pretrain`: masked-language-model pretraining (+ next-sentence prediction) on the shared loop.

Legend: N = sequences, B = batch, L = padded length, M = masked tokens in a batch, V = vocabulary.

Sequences are built once per run from the tokenized corpus (`spanqa.data.text`, cached as Arrow):
- with NSP (BERT): sentence pairs cut from one document, with the second segment taken from a random
  other document half of the time (label 1), as in BERT's create_pretraining_data: a target length of
  max_seq_length minus the special tokens (a random shorter one with probability short_seq_prob),
  segment A = the first 1..n-1 sentences of a chunk, the longer segment trimmed at a random end.
- without NSP (RoBERTa's full sentences): documents concatenated with a separator token and packed into
  full-length sequences, so no position is spent on padding.
Masks are drawn per batch (`spanqa.tasks.masking`), never stored. The vocabulary projection runs only on
the masked positions ([M, V] logits instead of [B, L, V]), which BERT's own pretraining code also does.

The per-sequence loss handed to the loop is scaled so that a batch's sum equals the mean cross-entropy
over its masked tokens (as `BertForPreTraining` computes it) plus the mean NSP loss.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from spanqa.artifacts import EncoderInfo, numeric
from spanqa.batching import PAD_ID, Ragged, sorted_batches
from spanqa.data.text import TokenizedCorpus, tokenize_corpus
from spanqa.errors import SpanqaError
from spanqa.inference import run_batches
from spanqa.models.hub import load_model, load_tokenizer
from spanqa.tasks.masking import IGNORE, mask_tokens
from spanqa.tokenization import PairTemplate, plain_backend
from spanqa.train import outputs
from spanqa.tasks.settings import PretrainConfig, PretrainSettings
from spanqa.train.engine import Run, Task, save_model_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sequences(Ragged):
    """Pretraining sequences, ragged: flat per-token arrays cut by `row_splits` [N + 1].

    `pad` gives input_ids, token_type_ids, attention_mask, special_tokens_mask (True at padding), word_start,
    next_sentence_label (IGNORE without NSP).
    """

    TOKEN_FIELDS = {
        "ids": ("input_ids", PAD_ID, np.int64),
        "types": ("token_type_ids", 0, np.int64),
        "special": ("special_tokens_mask", True, None),
        "word_start": ("word_start", False, None),
    }
    ROW_FIELDS = {"nsp_label": "next_sentence_label"}

    ids: np.ndarray
    types: np.ndarray
    special: np.ndarray
    word_start: np.ndarray
    row_splits: np.ndarray
    nsp_label: np.ndarray  # [N]


class _Builder:
    """Collects sequences as (prefix, parts..., suffix) pieces and flattens them once."""

    def __init__(self) -> None:
        self.pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.lengths: list[int] = []
        self.labels: list[int] = []

    def add(self, segments: list[tuple[np.ndarray, np.ndarray, int, bool]], label: int) -> None:
        """segments: (ids, word_start, token type, is_special) in order."""
        total = 0
        for ids, starts, type_id, special in segments:
            self.pieces.append((ids, starts, np.full(len(ids), type_id, np.int8), np.full(len(ids), special)))
            total += len(ids)
        self.lengths.append(total)
        self.labels.append(label)

    def build(self) -> Sequences:
        if not self.lengths:
            raise SpanqaError("the corpus gave no training sequences (is it empty, or are its sentences empty?).")
        cat = lambda i, dtype: np.concatenate([p[i] for p in self.pieces]).astype(dtype)  # noqa: E731
        row_splits = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        return Sequences(cat(0, np.int32), cat(2, np.int8), cat(3, bool), cat(1, bool), row_splits,
                         np.asarray(self.labels, dtype=np.int64))


def _special(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, bool]:
    return ids, np.ones(len(ids), bool), 0, True


def single_template(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(prefix, suffix) special tokens around one sequence, read off the tokenizer ([CLS] x [SEP] for BERT)."""
    enc = plain_backend(tokenizer).encode("a", add_special_tokens=True)
    inside = [i for i, s in enumerate(enc.sequence_ids) if s == 0]
    ids = np.asarray(enc.ids, dtype=np.int32)
    return ids[: inside[0]], ids[inside[-1] + 1 :]


def packed_sequences(corpus: TokenizedCorpus, max_len: int, tokenizer) -> Sequences:
    """Documents joined by the separator token and cut into full sequences of `max_len` tokens."""
    prefix, suffix = single_template(tokenizer)
    room = max_len - len(prefix) - len(suffix)
    if room < 1:
        raise SpanqaError(f"--max-seq-length {max_len} leaves no room next to {len(prefix) + len(suffix)} special tokens.")
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    doc_ends = np.flatnonzero(np.diff(np.concatenate([corpus.sentence_doc, [-1]]))) + 1  # sentence index after each doc
    token_ends = corpus.sentence_offsets[doc_ends]
    is_sep = np.zeros(len(corpus.ids) + len(token_ends), bool)
    is_sep[token_ends + np.arange(len(token_ends))] = True
    stream = np.insert(corpus.ids, token_ends, sep if sep is not None else 0)
    starts = np.insert(corpus.word_start, token_ends, True)
    if sep is None:  # no separator token: documents simply follow each other
        stream, starts, is_sep = stream[~is_sep], starts[~is_sep], is_sep[~is_sep]
    out = _Builder()
    for lo in range(0, len(stream), room):
        hi = min(lo + room, len(stream))
        out.add([_special(prefix), (stream[lo:hi], starts[lo:hi], 0, False), _special(suffix)], IGNORE)
    seq = out.build()
    # document separators inside a chunk are special tokens (never masked)
    special = seq.special.copy()
    body = np.flatnonzero(~seq.special)
    special[body] = is_sep
    return dataclasses.replace(seq, special=special)


def nsp_sequences(corpus: TokenizedCorpus, max_len: int, tokenizer, short_seq_prob: float, seed: int) -> Sequences:
    """BERT's sentence-pair instances with next-sentence labels (1 = B is from a random document)."""
    template = PairTemplate.from_tokenizer(tokenizer)
    max_tokens = max_len - template.num_special
    if max_tokens < 2:
        raise SpanqaError(f"--max-seq-length {max_len} leaves no room for two segments next to the special tokens.")
    rng = np.random.default_rng(seed)
    docs = corpus.document_sentences()
    span = lambda sents: (np.concatenate([_tokens(corpus, s) for s in sents]),  # noqa: E731
                          np.concatenate([_starts(corpus, s) for s in sents]))
    out = _Builder()
    t = template.types
    for d, sents in enumerate(docs):
        target = max_tokens if rng.random() >= short_seq_prob else int(rng.integers(2, max_tokens + 1))
        chunk: list[int] = []
        length, i = 0, 0
        while i < len(sents):
            chunk.append(int(sents[i]))
            length += int(corpus.sentence_offsets[sents[i] + 1] - corpus.sentence_offsets[sents[i]])
            if i == len(sents) - 1 or length >= target:
                a_end = 1 if len(chunk) < 2 else int(rng.integers(1, len(chunk)))
                a_ids, a_starts = span(chunk[:a_end])
                random_next = len(docs) > 1 and (len(chunk) == 1 or rng.random() < 0.5)
                if random_next:
                    other = int(rng.integers(len(docs) - 1))
                    other += other >= d
                    pick = docs[other]
                    first = int(rng.integers(len(pick)))
                    b_sents, b_len = [], 0
                    for s in pick[first:]:
                        b_sents.append(int(s))
                        b_len += int(corpus.sentence_offsets[s + 1] - corpus.sentence_offsets[s])
                        if b_len >= target - len(a_ids):
                            break
                    b_ids, b_starts = span(b_sents)
                    i -= len(chunk) - a_end  # the unused sentences start the next chunk
                else:
                    b_ids, b_starts = span(chunk[a_end:]) if a_end < len(chunk) else (a_ids[:0], a_starts[:0])
                (a_ids, a_starts), (b_ids, b_starts) = _truncate_pair((a_ids, a_starts), (b_ids, b_starts), max_tokens, rng)
                if len(a_ids) and len(b_ids):
                    out.add([(template.prefix, np.ones(len(template.prefix), bool), t[0], True),
                             (a_ids, a_starts, t[1], False),
                             (template.middle, np.ones(len(template.middle), bool), t[2], True),
                             (b_ids, b_starts, t[3], False),
                             (template.suffix, np.ones(len(template.suffix), bool), t[4], True)], int(random_next))
                chunk, length = [], 0
            i += 1
    return out.build()


def _tokens(corpus: TokenizedCorpus, s: int) -> np.ndarray:
    return corpus.ids[corpus.sentence_offsets[s] : corpus.sentence_offsets[s + 1]]


def _starts(corpus: TokenizedCorpus, s: int) -> np.ndarray:
    return corpus.word_start[corpus.sentence_offsets[s] : corpus.sentence_offsets[s + 1]]


def _truncate_pair(a, b, max_tokens: int, rng):
    """Trim the longer segment, one token at a time from a random end, until the pair fits (as BERT)."""
    (a_ids, a_st), (b_ids, b_st) = a, b
    a_lo, a_hi, b_lo, b_hi = 0, len(a_ids), 0, len(b_ids)
    while (a_hi - a_lo) + (b_hi - b_lo) > max_tokens:
        if a_hi - a_lo > b_hi - b_lo:
            if rng.random() < 0.5:
                a_lo += 1
            else:
                a_hi -= 1
        elif rng.random() < 0.5:
            b_lo += 1
        else:
            b_hi -= 1
    return (a_ids[a_lo:a_hi], a_st[a_lo:a_hi]), (b_ids[b_lo:b_hi], b_st[b_lo:b_hi])


class SparseMLM(torch.nn.Module):
    """A `*ForPreTraining` / `*ForMaskedLM` model whose forward scores only the masked positions.

    forward(input_ids, attention_mask, token_type_ids, labels) -> (mlm logits [M, V], mlm labels [M],
    NSP logits [B, 2] or None). Saving, loading and the config go to the wrapped model, so checkpoints are
    plain Hugging Face folders.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.parts = _head_parts(model)

    @property
    def config(self):
        return self.inner.config

    def set_attn_implementation(self, name: str) -> None:
        self.inner.set_attn_implementation(name)

    def save_pretrained(self, *args, **kwargs):
        return self.inner.save_pretrained(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        return self.inner.load_state_dict(state, strict=strict, assign=assign)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        chosen = labels != IGNORE
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and getattr(self.inner.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        if self.parts is None:  # an architecture without a known head layout: full logits, then select
            out = self.inner(**kwargs)
            logits = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
            nsp = getattr(out, "seq_relationship_logits", None)
            return logits[chosen], labels[chosen], nsp
        encoder, mlm_head, nsp_head = self.parts
        out = encoder(**kwargs)
        logits = mlm_head(out[0][chosen])
        nsp = nsp_head(out[1]) if nsp_head is not None and len(out) > 1 and out[1] is not None else None
        return logits, labels[chosen], nsp


def _head_parts(model):
    """(encoder, MLM head, NSP head or None) for BERT- and RoBERTa-style layouts; None otherwise."""
    cls = getattr(model, "cls", None)
    encoder = getattr(model, model.base_model_prefix, None)
    if encoder is None:
        return None
    if cls is not None and hasattr(cls, "predictions"):
        return encoder, cls.predictions, getattr(cls, "seq_relationship", None)
    if hasattr(model, "lm_head"):
        return encoder, model.lm_head, None
    return None


class PretrainLoss:
    """Masks a batch (global RNG), runs the model, returns the [B] per-sequence loss (see module doc)."""

    def __init__(self, tokenizer, config: PretrainConfig, generator: torch.Generator | None = None) -> None:
        if tokenizer.mask_token_id is None:
            raise SpanqaError("the tokenizer has no mask token; masked-language-model pretraining needs one.")
        self.mask_id, self.vocab_size = tokenizer.mask_token_id, len(tokenizer)
        self.config, self.generator = config, generator
        self.last: dict[str, float] = {}

    def masked(self, batch: dict) -> dict[str, torch.Tensor]:
        ids = torch.as_tensor(batch["input_ids"])
        maskable = torch.as_tensor(batch["attention_mask"]).bool() & ~torch.as_tensor(batch["special_tokens_mask"])
        inputs, labels = mask_tokens(ids, maskable, torch.as_tensor(batch["word_start"]), self.mask_id,
                                     self.vocab_size, self.config.mlm_probability, self.config.whole_word_masking,
                                     self.generator)
        return {"input_ids": inputs, "labels": labels, "attention_mask": torch.as_tensor(batch["attention_mask"]),
                "token_type_ids": torch.as_tensor(batch["token_type_ids"]),
                "next_sentence_label": torch.as_tensor(batch["next_sentence_label"])}

    def __call__(self, model, batch: dict) -> torch.Tensor:
        device = next(model.parameters()).device
        t = {k: v.to(device, non_blocking=True) for k, v in self.masked(batch).items()}
        logits, labels, nsp = model(t["input_ids"], t["attention_mask"], t["token_type_ids"], t["labels"])
        b = t["input_ids"].shape[0]
        token_ce = F.cross_entropy(logits.float(), labels, reduction="none")  # [M]
        row = torch.nonzero(t["labels"] != IGNORE)[:, 0]
        per_seq = torch.zeros(b, device=device).index_add(0, row, token_ce) * (b / max(len(labels), 1))
        nsp_ce = None
        if nsp is not None and self.config.next_sentence_prediction:
            nsp_ce = F.cross_entropy(nsp.float(), t["next_sentence_label"], reduction="none", ignore_index=IGNORE)
            per_seq = per_seq + nsp_ce
        if not model.training:  # evaluation keeps the sums (a device sync; training does not pay for it)
            self.last = {"mlm_loss_sum": float(token_ce.sum()), "masked": len(labels),
                         "mlm_correct": int((logits.argmax(-1) == labels).sum())}
            if nsp_ce is not None:
                self.last.update(nsp_loss_sum=float(nsp_ce.sum()), sequences=b,
                                 nsp_correct=int((nsp.argmax(-1) == t["next_sentence_label"]).sum()))
        return per_seq


class PretrainEvaluator:
    """Held-out masked-LM loss, accuracy and perplexity (and NSP accuracy), with fixed masks across evals."""

    main_metric = "loss"

    def __init__(self, data: Sequences, tokenizer, config: PretrainConfig, batch_size: int, precision: str, seed: int):
        self.data, self.tokenizer, self.config = data, tokenizer, config
        self.batch_size, self.precision, self.seed = batch_size, precision, seed

    def __call__(self, model) -> dict:
        t0 = time.perf_counter()
        loss = PretrainLoss(self.tokenizer, self.config, torch.Generator().manual_seed(self.seed))
        totals = dict.fromkeys(("mlm_loss_sum", "masked", "mlm_correct", "nsp_loss_sum", "nsp_correct", "sequences"), 0.0)
        batches = sorted_batches(self.data.lengths, self.batch_size)
        for _batch, _loss in run_batches(model, self.data, batches, self.tokenizer.pad_token_id or 0, self.precision, loss):
            for k, v in loss.last.items():
                totals[k] += v
        mlm = totals["mlm_loss_sum"] / max(totals["masked"], 1)
        out = {"eval_mlm_loss": mlm, "eval_perplexity": math.exp(min(mlm, 50)),
               "eval_mlm_accuracy": totals["mlm_correct"] / max(totals["masked"], 1)}
        total = mlm
        if totals["sequences"]:
            nsp = totals["nsp_loss_sum"] / totals["sequences"]
            out.update(eval_nsp_loss=nsp, eval_nsp_accuracy=totals["nsp_correct"] / totals["sequences"])
            total += nsp
        runtime = time.perf_counter() - t0
        out.update(eval_loss=total, eval_samples=len(self.data), eval_runtime=runtime,
                   eval_samples_per_second=len(self.data) / runtime)
        return out


def load_pretraining_model(name: str, init: str, nsp: bool, overrides: dict, vocab_size: int) -> torch.nn.Module:
    """A `*ForPreTraining` (with NSP) or `*ForMaskedLM` model: new weights from `name`'s config, or its weights.

    Raises:
        SpanqaError: the model or config cannot be found, or the architecture has no such head.
    """
    random_init = init == "random"

    def room_for_vocabulary(config) -> None:  # new weights: every token of the tokenizer needs a row
        if random_init and config.vocab_size < vocab_size:
            config.vocab_size = vocab_size

    return load_model("AutoModelForPreTraining" if nsp else "AutoModelForMaskedLM", name,
                      "a pretraining (MLM + NSP) model" if nsp else "a masked-LM model", overrides, random_init,
                      adjust=room_for_vocabulary,
                      hint="Pass a local model folder, the alias minilm-l6, or a hub name with network access; "
                           "--next-sentence-prediction false for architectures without an NSP head.")


def build(settings: PretrainSettings, run: Run, command: str = "") -> Task:
    """The pretraining task: a tokenized corpus -> sequences -> masked-LM (+ NSP) loss."""
    rs, cfg = settings.run, settings.pretrain
    if not rs.train_data:
        raise SpanqaError("--train-data is required: text files (one sentence per line, blank lines between "
                          "documents), a saved dataset folder or a hub dataset with a 'text' column.")
    tokenizer = load_tokenizer(cfg.tokenizer or rs.model)
    model = SparseMLM(load_pretraining_model(rs.model, cfg.init_weights, cfg.next_sentence_prediction,
                                             rs.overrides(), len(tokenizer)))
    if cfg.next_sentence_prediction and model.parts is not None and model.parts[2] is None:
        raise SpanqaError(f"{rs.model}: this architecture has no next-sentence head; use --next-sentence-prediction false.")
    with run.acc.main_process_first():  # one process tokenizes and fills the cache; the others read it
        train_data = _sequences(rs.train_data, rs.train_split, tokenizer, settings, rs.max_train_samples)
    evaluator = None
    if rs.eval_data and run.main:
        eval_data = _sequences(rs.eval_data, rs.eval_split, tokenizer, settings, rs.max_eval_samples)
        evaluator = PretrainEvaluator(eval_data, tokenizer, cfg, settings.optim.per_device_eval_batch_size,
                                      run.precision, settings.optim.seed)
    s = settings.to_dict()
    info = lambda last_eval: EncoderInfo(base=rs.model, init_weights=cfg.init_weights,  # noqa: E731
                                         max_seq_length=settings.data.max_seq_length, eval=numeric(last_eval))
    return Task(
        model, tokenizer, train_data, PretrainLoss(tokenizer, cfg), evaluator, len(train_data),
        save=lambda folder, m, last_eval: save_model_folder(folder, m, tokenizer, info(last_eval)),
        card=lambda name, hparams, train_m, eval_m: pretrain_card(name, s, hparams, train_m, eval_m, command),
        command=settings.COMMAND,
    )


def _sequences(spec: str, split: str, tokenizer, settings: PretrainSettings, limit: int) -> Sequences:
    cfg = settings.pretrain
    sources = [s.strip() for s in spec.split(",") if s.strip()]
    corpus = tokenize_corpus(sources, tokenizer, cfg.cache_folder(), split)
    max_len = settings.data.max_seq_length
    if cfg.next_sentence_prediction:
        seq = nsp_sequences(corpus, max_len, tokenizer, cfg.short_seq_prob, settings.optim.seed)
    else:
        seq = packed_sequences(corpus, max_len, tokenizer)
    if limit and limit < len(seq):
        seq = seq.take(limit)
    log.info("%s: %d sequences of up to %d tokens (%d tokens)", spec, len(seq), max_len, int(seq.lengths.sum()))
    return seq


def pretrain_card(name: str, settings: dict, hparams: dict, train_metrics: dict, eval_metrics: dict, command: str) -> str:
    """README.md of a pretrained encoder."""
    objective = "masked language modelling and next-sentence prediction" if settings["next_sentence_prediction"] \
        else "masked language modelling (packed sequences)"
    start = "from random weights with the configuration of" if settings["init_weights"] == "random" else "from the weights of"
    headline = (f" Held-out masked-LM loss {eval_metrics['eval_mlm_loss']:.4f} (perplexity {eval_metrics['eval_perplexity']:.2f}, "
                f"accuracy {eval_metrics['eval_mlm_accuracy']:.4f})." if "eval_mlm_loss" in eval_metrics else "")
    data, base = outputs.shown_source(settings["train_data"]), outputs.shown_source(settings["model"])
    summary = (f"This encoder was pretrained by spanqa {start} `{base}` on `{data}` with "
               f"{objective}, sequences of {settings['max_seq_length']} tokens, "
               f"{settings['mlm_probability']:.0%} of tokens masked{' (whole words)' if settings['whole_word_masking'] else ''}.{headline}")
    about = ("An encoder to fine-tune, not a finished model: `spanqa train --model PATH` makes a reader of it, "
             "`spanqa classify --model PATH` a classifier; a second pretraining phase continues it with "
             "`spanqa pretrain --model PATH --init-weights pretrained`.")
    return outputs.card(name, summary, about, settings, hparams, train_metrics, eval_metrics, command, "documents")
