"""What a dataset looks like to a reader: sizes, lengths in tokens, windows, answer coverage."""

from __future__ import annotations

import numpy as np

from spanqa.config import DataConfig
from spanqa.data import QADataset
from spanqa.features import build_features
from spanqa.tokenization import plain_backend

PERCENTILES = (50, 90, 99, 100)


def dataset_stats(dataset: QADataset, tokenizer, config: DataConfig) -> dict:
    """Counts, length percentiles, windows per question and answer coverage at `config`.

    Answer coverage is the share of answerable questions whose first gold span lies wholly inside at
    least one window: the ceiling on what training labels can teach.
    """
    examples = dataset.examples
    answerable = np.array([not e.is_impossible and bool(e.answers) for e in examples])
    features = build_features(examples, tokenizer, config)
    windows = np.bincount(features.example_index, minlength=len(examples))
    labelled = features.start_positions != features.cls_index
    covered = np.zeros(len(examples), dtype=bool)
    covered[features.example_index[labelled]] = True
    contexts = list(dict.fromkeys(e.context for e in examples))
    ctx_tokens = [len(enc.ids) for enc in plain_backend(tokenizer).encode_batch(contexts, add_special_tokens=False)]
    answer_words = [len(e.answers[0].text.split()) for e in examples if e.answers]
    return {
        "source": dataset.source,
        "format": dataset.format,
        "articles": len({e.title for e in examples}),
        "paragraphs": len(contexts),
        "questions": len(examples),
        "unanswerable": int((~answerable).sum()),
        "answer_words": _percentiles(answer_words),
        "context_tokens": _percentiles(ctx_tokens),
        "windows": int(len(features)),
        "windows_per_question": {"mean": float(windows.mean()), "max": int(windows.max())},
        "answer_coverage": float(covered[answerable].mean()) if answerable.any() else None,
        "settings": {
            "max_seq_length": config.max_seq_length,
            "doc_stride": config.doc_stride,
            "max_query_length": config.max_query_length,
        },
    }


def _percentiles(values: list[int]) -> dict:
    if not values:
        return {}
    arr = np.asarray(values)
    out = {f"p{p}": float(np.percentile(arr, p)) for p in PERCENTILES}
    out["mean"] = float(arr.mean())
    return out
