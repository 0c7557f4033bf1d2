"""Every encoder family, as the hub ships it: a tiny random model from its config, a tokenizer of its family
trained on the fixtures and saved under the family's tokenizer class. spanqa's inputs and logits equal a
hand-written transformers forward with the family's documented inputs (segment ids included), in fp32 and in
bf16 (forced: tiny models run it on any CPU); train -> save -> `Reader.load` -> predict round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from conftest import fixture_texts, train_args
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from spanqa.cli import main
from spanqa.data import Example
from spanqa.features import build_features
from spanqa.inference import model_device
from spanqa.models.reader_model import model_inputs
from spanqa.precision import autocast
from spanqa.reader import Reader
from spanqa.tokenization import input_names_for

QUESTION = "Who designed the tower?"
CONTEXT = "The Eiffel Tower was designed by the engineering company of Gustave Eiffel and built in 1889."
BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
ROBERTA_SPECIALS = {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}
XLNET_SPECIALS = {"pad": "<pad>", "unk": "<unk>", "sep": "<sep>", "cls": "<cls>", "mask": "<mask>"}
BERT_PAIR = ("{cls} $A {sep}", "{cls} $A {sep} $B:1 {sep}:1")
ROBERTA_PAIR = ("{cls} $A {sep}", "{cls} $A {sep} {sep} $B {sep}")
XLNET_PAIR = ("$A {sep} {cls}:2", "$A {sep} $B:1 {sep}:1 {cls}:2")
WINDOWS = dict(max_seq_length=128, doc_stride=32, max_query_length=32)  # within BigBird's block-sparse minimum
SMALL_MODEL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=512)

# family: (tokenizer model, specials, template, tokenizer class, config class, config fields, uses segment ids)
FAMILIES = {
    "bert": ("wordpiece", BERT_SPECIALS, BERT_PAIR, "BertTokenizer", "BertConfig", {}, True),
    "distilbert": ("wordpiece", BERT_SPECIALS, BERT_PAIR, "DistilBertTokenizer", "DistilBertConfig",
                   dict(dim=32, hidden_dim=64, n_layers=2, n_heads=2), False),
    "electra": ("wordpiece", BERT_SPECIALS, BERT_PAIR, "ElectraTokenizer", "ElectraConfig", dict(embedding_size=16),
                True),
    "roberta": ("bytebpe", ROBERTA_SPECIALS, ROBERTA_PAIR, "RobertaTokenizer", "RobertaConfig",
                dict(type_vocab_size=1), False),
    "longformer": ("bytebpe", ROBERTA_SPECIALS, ROBERTA_PAIR, "LongformerTokenizer", "LongformerConfig",
                   dict(type_vocab_size=1, attention_window=[8, 8]), False),
    "modernbert": ("bytebpe", BERT_SPECIALS, BERT_PAIR, "PreTrainedTokenizerFast", "ModernBertConfig", {}, False),
    "xlm-roberta": ("unigram", ROBERTA_SPECIALS, ROBERTA_PAIR, "XLMRobertaTokenizer", "XLMRobertaConfig",
                    dict(type_vocab_size=1), False),
    "camembert": ("unigram", ROBERTA_SPECIALS, ROBERTA_PAIR, "CamembertTokenizer", "CamembertConfig",
                  dict(type_vocab_size=1), False),
    "albert": ("unigram", BERT_SPECIALS, BERT_PAIR, "AlbertTokenizer", "AlbertConfig", dict(embedding_size=16), True),
    "deberta-v2": ("unigram", BERT_SPECIALS, BERT_PAIR, "DebertaV2Tokenizer", "DebertaV2Config",
                   dict(type_vocab_size=0, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"],
                        max_relative_positions=-1), False),
    "xlnet": ("unigram", XLNET_SPECIALS, XLNET_PAIR, "XLNetTokenizer", "XLNetConfig",
              dict(d_model=32, n_layer=2, n_head=2, d_inner=64), True),
    "big_bird": ("unigram", BERT_SPECIALS, BERT_PAIR, "BigBirdTokenizer", "BigBirdConfig",
                 dict(block_size=16, num_random_blocks=2), True),
}


def _train_tokenizer(kind: str, specials: dict, pair: tuple[str, str]) -> Tokenizer:
    names = list(dict.fromkeys(specials.values()))
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=specials["unk"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=1200, special_tokens=names, show_progress=False)
    elif kind == "bytebpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=names, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=1200, special_tokens=names, unk_token=specials["unk"],
                                          show_progress=False)
    tok.train_from_iterator(fixture_texts(), trainer)
    single, both = (t.format(cls=specials["cls"], sep=specials["sep"]) for t in pair)
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=both, special_tokens=[(specials[k], tok.token_to_id(specials[k])) for k in ("cls", "sep")])
    return tok


def save_family(family: str, folder) -> None:
    """A tiny random QA model of `family` saved as the hub ships it, tokenizer class included."""
    kind, specials, pair, tokenizer_class, config_class, fields, _ = FAMILIES[family]
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(kind, specials, pair), padding_side="left" if family == "xlnet" else "right",
        **{f"{k}_token": v for k, v in specials.items()})
    fast.save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"
    saved = json.loads(config_file.read_text())
    saved["tokenizer_class"] = tokenizer_class  # what a hub folder names; model_input_names left to the class
    saved.pop("model_input_names", None)
    config_file.write_text(json.dumps(saved))
    small = {k: v for k, v in SMALL_MODEL.items() if family not in ("distilbert", "xlnet")}
    config = getattr(transformers, config_class)(
        vocab_size=len(fast), pad_token_id=fast.pad_token_id, **small, **fields,
        **({"cls_token_id": fast.cls_token_id, "sep_token_id": fast.sep_token_id, "bos_token_id": fast.cls_token_id,
            "eos_token_id": fast.sep_token_id} if family == "modernbert" else {}))
    torch.manual_seed(0)
    model = transformers.AutoModelForQuestionAnswering.from_config(config)
    with torch.no_grad():  # segment embeddings that matter, where the family has them
        types = getattr(getattr(model.base_model, "embeddings", None), "token_type_embeddings", None)
        if types is not None and types.weight.shape[0] > 1:
            types.weight[1:] = types.weight[0] + torch.randn_like(types.weight[1:])
    model.save_pretrained(folder)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_folder(request, tmp_path_factory):
    """(family, folder) of `save_family`'s model."""
    folder = tmp_path_factory.mktemp(request.param)
    save_family(request.param, folder)
    return request.param, folder


def _hand_written_logits(folder, family: str, precision: str = "fp32") -> tuple[dict, np.ndarray]:
    """The family's documented inputs from its own tokenizer, through a freshly loaded transformers model."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    # run_qa's convention, which spanqa keeps: a tokenizer that pads on the left (XLNet) takes the context first
    pair = (QUESTION, CONTEXT) if tokenizer.padding_side == "right" else (CONTEXT, QUESTION)
    enc = tokenizer(*pair, return_tensors="pt", return_token_type_ids=True)
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if FAMILIES[family][6]:
        inputs["token_type_ids"] = enc["token_type_ids"]
    with torch.no_grad():
        out = model(**inputs)
    return inputs, torch.stack([out.start_logits, out.end_logits]).float().numpy()


def _spanqa_logits(reader: Reader) -> tuple[dict, np.ndarray]:
    """The tensors spanqa builds for the pair (its windowing, its choice of inputs) through the Reader's model."""
    features = build_features([Example("0", QUESTION, CONTEXT)], reader.tokenizer, reader.data)
    assert len(features.example_index) == 1
    batch = features.pad(np.array([0]), reader.tokenizer.pad_token_id or 0)
    inputs = model_inputs(batch, input_names_for(reader.tokenizer, reader.model), model_device(reader.model))
    with torch.no_grad(), autocast(reader.autocast_precision, model_device(reader.model)):  # as the Reader runs it
        out = reader.model(**inputs)
    logits = torch.stack([out.start_logits, out.end_logits]).float().cpu().numpy()
    return {k: v.cpu() for k, v in inputs.items()}, logits


def test_spanqa_feeds_each_family_its_documented_inputs_and_gets_its_logits(family_folder):
    family, folder = family_folder
    want_inputs, want = _hand_written_logits(folder, family)
    reader = Reader.load(str(folder), precision="fp32", backend="torch", **WINDOWS)
    got_inputs, got = _spanqa_logits(reader)
    assert sorted(got_inputs) == sorted(want_inputs)
    for name, tensor in want_inputs.items():
        assert got_inputs[name].tolist() == tensor.tolist(), name
    if family == "xlnet":  # <cls> is segment 2, at the end
        assert got_inputs["token_type_ids"][0, -1] == 2 and got_inputs["token_type_ids"][0, -2] == 1
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_bf16_logits_stay_close_to_fp32_for_each_family(family_folder):
    family, folder = family_folder
    _, want = _hand_written_logits(folder, family)
    reader = Reader.load(str(folder), precision="bf16", backend="torch", **WINDOWS)  # forced: tiny models
    _, got = _spanqa_logits(reader)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert np.abs(got - want).max() < 0.1 * max(1.0, np.abs(want).max())


@pytest.mark.slow
def test_each_family_trains_saves_loads_and_predicts(family_folder, tmp_path):
    family, folder = family_folder
    out = tmp_path / "run"
    assert main(train_args(folder, out, "--max-steps", "2", "--per-device-train-batch-size", "4",
                           "--max-train-samples", "8", "--save-steps", "0", "--precision", "fp32")) == 0
    reader = Reader.load(str(out), precision="fp32")
    (answer,) = reader.answer(QUESTION, CONTEXT)
    assert answer.text == CONTEXT[answer.start:answer.end] and answer.text
    assert input_names_for(reader.tokenizer, reader.model) == input_names_for(
        Reader.load(str(folder), precision="fp32").tokenizer, reader.model)


def test_bigbird_runs_the_attention_its_windows_allow_and_keeps_it(tmp_path):
    """Block-sparse minimum here: (5 + 2 x 2) x 16 = 144 tokens. 128-token windows: full attention, set at load
    and saved; 256-token windows: block-sparse, short batches padded to 160 instead of switching for good."""
    save_family("big_bird", tmp_path)
    full = Reader.load(str(tmp_path), precision="fp32", backend="torch", **WINDOWS)
    assert full.model.config.attention_type == full.model.base_model.attention_type == "original_full"
    sparse = Reader.load(str(tmp_path), precision="fp32", backend="torch", max_seq_length=256)
    inputs, got = _spanqa_logits(sparse)  # a 30-token window
    assert sparse.model.base_model.attention_type == "block_sparse" and got.shape[-1] == inputs["input_ids"].shape[1]
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    padded = {k: torch.nn.functional.pad(v, (0, 160 - v.shape[1]), value=0) for k, v in inputs.items()}
    with torch.no_grad():
        out = model(**padded)
    assert model.base_model.attention_type == "block_sparse"
    want = torch.stack([out.start_logits, out.end_logits])[..., : got.shape[-1]].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("window, attention", [(128, "original_full"), (256, "block_sparse")])
def test_bigbird_trains_and_predicts_in_bf16(tmp_path, window, attention):
    """transformers' block-sparse attention fails under bf16 autocast; spanqa runs those layers in fp32."""
    save_family("big_bird", tmp_path / "model")
    out = tmp_path / "run"
    assert main(train_args(tmp_path / "model", out, "--max-seq-length", str(window), "--max-steps", "2",
                           "--per-device-train-batch-size", "4", "--max-train-samples", "8", "--save-steps", "0",
                           "--precision", "bf16")) == 0
    assert json.loads((out / "config.json").read_text())["attention_type"] == attention
    reader = Reader.load(str(out), precision="bf16", backend="torch")
    (answer,) = reader.answer(QUESTION, CONTEXT)
    assert answer.text and reader.model.base_model.attention_type == attention
