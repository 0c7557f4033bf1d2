"""Shared test fixtures: paths, and tiny tokenizers of the three families trained on fixture text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


V1 = str(FIXTURES / "squad-v1.1-dev-fixture.json")
V2 = str(FIXTURES / "squad-v2.0-dev-fixture.json")
SMALL = ["--max-seq-length", "128", "--doc-stride", "32", "--max-query-length", "32"]  # windows for tiny models


def train_args(model, out, *extra) -> list[str]:
    """`spanqa train` of `model` on the v1.1 fixture into `out`, small windows, no tracker."""
    return ["train", "--model", str(model), "--train-data", V1, "--output-dir", str(out), *SMALL,
            "--report-to", "none", *extra]


def losses(out) -> list[float]:
    """The training losses a run logged."""
    state = json.loads((Path(out) / "trainer_state.json").read_text())
    return [r["loss"] for r in state["log_history"] if "loss" in r]


def fixture_texts() -> list[str]:
    """Contexts and questions of the SQuAD fixtures: the training text for the tiny tokenizers."""
    texts = []
    for name in ("squad-v1.1-dev-fixture.json", "squad-v2.0-dev-fixture.json"):
        for article in json.loads((FIXTURES / name).read_text())["data"]:
            for para in article["paragraphs"]:
                texts.append(para["context"])
                texts.extend(qa["question"] for qa in para["qas"])
    return texts


def _wordpiece():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(fixture_texts(), trainers.WordPieceTrainer(vocab_size=1500, special_tokens=specials, show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok, dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def _byte_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(
        vocab_size=1500, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(fixture_texts(), trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=True, add_prefix_space=False
    )
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", cls_token="<s>",
                     sep_token="</s>", mask_token="<mask>")


def _unigram():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.UnigramTrainer(vocab_size=1500, special_tokens=specials, unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(fixture_texts(), trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok, dict(unk_token="<unk>", pad_token="<pad>", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


BUILDERS = {"wordpiece": _wordpiece, "bytebpe": _byte_bpe, "unigram": _unigram}


def make_tokenizer(family: str, model_input_names=None):
    """A transformers fast tokenizer of `family` trained on the fixtures."""
    from transformers import PreTrainedTokenizerFast

    tok, specials = BUILDERS[family]()
    names = model_input_names or ["input_ids", "token_type_ids", "attention_mask"]
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_input_names=names, **specials)


@pytest.fixture(autouse=True)
def no_bundle_or_offline_leaks(monkeypatch):
    """`--bundle` and `--offline` act through the process environment (so DDP workers inherit them): every
    test starts without them, and what a test's CLI call sets is undone after it."""
    for var in ("SPANQA_BUNDLE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "")  # records the variable's state, so teardown restores it whatever main() set
        monkeypatch.delenv(var)


@pytest.fixture(scope="session")
def wordpiece():
    return make_tokenizer("wordpiece")


@pytest.fixture(scope="session", params=sorted(BUILDERS))
def any_tokenizer(request):
    return make_tokenizer(request.param)


@pytest.fixture(scope="session")
def saved_wordpiece(tmp_path_factory, wordpiece):
    """The tiny WordPiece tokenizer saved as a model folder (what --model takes)."""
    path = tmp_path_factory.mktemp("tok")
    wordpiece.save_pretrained(path)
    return path


def needs_shared(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test when it is absent (tests must not need it)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def make_tiny_model(path, tokenizer, layers: int = 2, hidden: int = 32):
    """A random BERT-style QA model with `tokenizer`, saved to `path` (what --model takes)."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
    )
    BertForQuestionAnswering(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, wordpiece):
    """A 2-layer random BERT reader with the fixture WordPiece tokenizer."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"), wordpiece)


@pytest.fixture(scope="session")
def tiny_vectors(tmp_path_factory) -> Path:
    """A GloVe-format text file: 8-d vectors for 80% of the fixtures' words (the rest are out of vocabulary),
    with one accented spelling ("Café") that the word tokenizer must normalise."""
    import numpy as np

    from spanqa.models.words import split_words

    words = sorted({w for ws in split_words(fixture_texts()) for w in ws})
    rng = np.random.default_rng(0)
    kept = [w for w in words if rng.random() < 0.8] + ["Café"]
    path = tmp_path_factory.mktemp("vectors") / "tiny.8d.txt"
    lines = [f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=8)) for w in kept]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def recurrent_args(architecture: str, vectors, out, *extra) -> list[str]:
    """`spanqa train` of a tiny recurrent reader (`architecture`) on the v1.1 fixture into `out`."""
    return train_args(architecture, out, "--embeddings", str(vectors), "--hidden-size", "12", "--char-channels", "10",
                      "--char-embedding-size", "4", *extra)


@pytest.fixture(scope="session")
def tiny_reader(tmp_path_factory, tiny_model) -> Path:
    """A reader folder: the tiny model trained for a few steps on the v1.1 fixture (answers are poor, but real)."""
    from spanqa.cli import main

    out = tmp_path_factory.mktemp("reader") / "tiny-reader"
    assert main(train_args(tiny_model, out, "--max-steps", "6", "--max-train-samples", "40")) == 0
    return out
