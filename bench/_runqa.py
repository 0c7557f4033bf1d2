"""transformers' run_qa.py pipeline, written out for the benchmarks' reference side.

Windows padded to max_seq_length with the tokenizer's own overflow, labels from char offsets, and a
`Trainer` set up the way run_qa sets it up. Used only as the thing spanqa is measured against.
"""

from __future__ import annotations

from spanqa.config import DataConfig


def reference_features(examples, tokenizer, config: DataConfig):
    """run_qa-style windows with `datasets.map`, padded to max_seq_length; returns the mapped dataset."""
    import datasets

    ds = datasets.Dataset.from_dict({
        "id": [e.id for e in examples],
        "question": [e.question.strip() for e in examples],
        "context": [e.context for e in examples],
        "answer_start": [e.answers[0].start if e.answers else -1 for e in examples],
        "answer_text": [e.answers[0].text if e.answers else "" for e in examples],
    })

    def prepare(batch):
        enc = tokenizer(
            batch["question"], batch["context"], truncation="only_second", max_length=config.max_seq_length,
            stride=config.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
            padding="max_length",
        )
        starts, ends, example_ids = [], [], []
        for i, offsets in enumerate(enc["offset_mapping"]):
            sample = enc["overflow_to_sample_mapping"][i]
            seq = enc.sequence_ids(i)
            ctx_lo = seq.index(1)
            ctx_hi = len(seq) - 1 - seq[::-1].index(1)
            a0 = batch["answer_start"][sample]
            a1 = a0 + len(batch["answer_text"][sample])
            if a0 < 0 or not (offsets[ctx_lo][0] <= a0 and offsets[ctx_hi][1] >= a1):
                starts.append(0)
                ends.append(0)
            else:
                s = ctx_lo
                while s <= ctx_hi and offsets[s][0] <= a0:
                    s += 1
                e = ctx_hi
                while e >= ctx_lo and offsets[e][1] >= a1:
                    e -= 1
                starts.append(s - 1)
                ends.append(e + 1)
            example_ids.append(batch["id"][sample])
            enc["offset_mapping"][i] = [o if seq[k] == 1 else None for k, o in enumerate(offsets)]
        enc["start_positions"], enc["end_positions"], enc["example_id"] = starts, ends, example_ids
        return enc

    return ds.map(prepare, batched=True, remove_columns=ds.column_names, load_from_cache_file=False,
                  keep_in_memory=True)




def runqa_trainer(model_path: str, train_dataset, output_dir: str, batch_size: int, bf16: bool, seed: int = 42,
                  learning_rate: float = 3e-5, epochs: float = 1.0, warmup_ratio: float = 0.0,
                  weight_decay: float = 0.0):
    """A `Trainer` as run_qa.py builds it: padded windows, default collator, AdamW, linear schedule."""
    from transformers import AutoModelForQuestionAnswering, Trainer, TrainingArguments, default_data_collator

    from spanqa.models.hub import quiet_transformers

    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        num_train_epochs=epochs, bf16=bf16, seed=seed, save_strategy="no", report_to="none",
        logging_steps=50, disable_tqdm=True, use_cpu=True, dataloader_num_workers=0,
        warmup_steps=warmup_ratio, weight_decay=weight_decay,  # transformers 5: a float < 1 is a ratio
    )
    with quiet_transformers():
        model = AutoModelForQuestionAnswering.from_pretrained(model_path)
    return Trainer(model=model, args=args, train_dataset=train_dataset, data_collator=default_data_collator)


def train_columns(dataset):
    """Only what the model trains on (run_qa drops the rest before training)."""
    keep = {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}
    return dataset.remove_columns([c for c in dataset.column_names if c not in keep])
