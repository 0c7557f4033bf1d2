"""Answers across many passages: ranked together, attributed, de-duplicated, abstaining like windows do."""

import math
from types import SimpleNamespace

import pytest
import torch

from spanqa.artifacts import ReaderInfo
from spanqa.errors import SpanqaError
from spanqa.reader import Reader, ReaderConfig

FILLER = ["The river runs past the old mill and the town hall.", "Students studied German in the school.",
          "The company built a tower in the city.", "He returned to the town after the war."]


class Spotter(torch.nn.Module):
    """A stand-in reader model: start and end logits are `weights[token]` (0 elsewhere), CLS gets `null`."""

    def __init__(self, weights: dict[int, float], null: float = -5.0) -> None:
        super().__init__()
        self.weights, self.null = weights, null
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the reader a device and a dtype

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        logits = torch.zeros(input_ids.shape)
        for token, w in self.weights.items():
            logits = torch.where(input_ids == token, torch.tensor(w), logits)
        logits[:, 0] = self.null
        return SimpleNamespace(start_logits=logits, end_logits=logits.clone())


def single_token_words(tokenizer, n: int) -> list[tuple[str, int]]:
    """`n` words the tokenizer keeps whole (one token each), with their ids."""
    out = []
    for word in ("tesla", "school", "tower", "river", "company", "german", "war", "city"):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            out.append((word, ids[0]))
    if len(out) < n:
        pytest.skip("the fixture tokenizer splits the probe words")
    return out[:n]


def spotter_reader(tokenizer, weights, null=-5.0, allow_null=False) -> Reader:
    info = ReaderInfo(version_2_with_negative=allow_null)
    return Reader.from_model(Spotter(weights, null), tokenizer, info, ReaderConfig(precision="fp32"))


def test_the_answer_in_passage_3_of_5_is_found_and_attributed(wordpiece):
    (strong, strong_id), (weak, weak_id) = single_token_words(wordpiece, 2)
    passages = [FILLER[0], FILLER[1], f"Far away, {strong} stands.", FILLER[3], f"Here {weak} lies."]
    passages = [p.replace(strong, "x").replace(weak, "y") if i not in (2, 4) else p for i, p in enumerate(passages)]
    reader = spotter_reader(wordpiece, {strong_id: 8.0, weak_id: 5.0})
    answers = reader.answer("Where?", passages, top_k=2)
    assert [(a.text.lower(), a.passage) for a in answers] == [(strong, 2), (weak, 4)]
    a = answers[0]
    assert passages[2][a.start:a.end] == a.text and a.score == pytest.approx(16.0)
    assert answers[1].score == pytest.approx(10.0)  # raw scores: comparable across passages
    assert a.probability > answers[1].probability > 0 and a.no_answer_probability == 0.0


def test_a_retrievers_order_weighs_in_by_rank_weight_times_log_rank(wordpiece):
    (strong, strong_id), (weak, weak_id) = single_token_words(wordpiece, 2)
    passages = [f"Here {weak} lies.", FILLER[1], f"Far away, {strong} stands."]  # span scores 10.0 and 16.0
    reader = spotter_reader(wordpiece, {strong_id: 8.0, weak_id: 5.0})
    plain = reader.answer_batch([("Where?", passages)], top_k=2)[0]
    assert [a.passage for a in plain] == [2, 0]  # by the reader's scores alone
    # 16 - 5 ln 3 = 10.51 still beats 10.0; 16 - 6 ln 3 = 9.41 does not
    assert reader.answer_batch([("Where?", passages)], top_k=2, rank_weight=5.0)[0][0].passage == 2
    weighed = reader.answer_batch([("Where?", passages)], top_k=2, rank_weight=6.0)[0]
    assert [a.passage for a in weighed] == [0, 2]
    assert weighed[0].score == pytest.approx(10.0)  # the score stays the reader's; only the ranking moves
    # probabilities follow the weighed ranking: e^10 against e^(16 - 6 ln 3) = e^9.41, less what other spans take
    assert weighed[0].probability / weighed[1].probability == pytest.approx(math.exp(10.0 - 16.0 + 6 * math.log(3)))


def test_overlapping_spans_of_one_passage_are_merged_unless_asked_not_to(wordpiece):
    (word, word_id), = single_token_words(wordpiece, 1)
    passages = [FILLER[0], f"The {word} near the {word} gate."]
    reader = spotter_reader(wordpiece, {word_id: 8.0})
    merged = reader.answer("Which?", passages, top_k=5)
    kept = reader.answer("Which?", passages, top_k=5, overlap_threshold=None)
    assert all(a.passage == 1 for a in merged[:2]) and merged[0].score == pytest.approx(16.0)
    for i, a in enumerate(merged):
        for b in merged[i + 1:]:
            assert a.passage != b.passage or min(a.end, b.end) <= max(a.start, b.start)  # no two overlap
    assert len({(a.passage, a.start, a.end) for a in kept}) == len(kept) > len(merged) - 1
    assert any(a.text.lower().startswith(word) and a.text.lower().endswith(word) and a.end - a.start > len(word)
               for a in kept)  # "word near the word" is a candidate only without merging


def test_a_v2_reader_abstains_over_passages_like_over_windows(wordpiece):
    (word, word_id), = single_token_words(wordpiece, 1)
    passages = [FILLER[0], f"Only {word} here.", FILLER[2]]
    confident = spotter_reader(wordpiece, {word_id: 8.0}, null=1.0, allow_null=True)
    got = confident.answer("Which?", passages, top_k=2)
    assert got[0].passage == 1 and got[0].no_answer_probability < 0.01
    unsure = spotter_reader(wordpiece, {word_id: 1.0}, null=6.0, allow_null=True)
    got = unsure.answer("Which?", passages, top_k=2)
    assert got[0].is_no_answer and got[0].passage == -1 and got[0].score == pytest.approx(12.0)
    assert got[1].passage == 1 and got[0].no_answer_probability > 0.99


def test_single_contexts_and_passage_lists_mix_in_one_batch(wordpiece):
    (word, word_id), = single_token_words(wordpiece, 1)
    reader = spotter_reader(wordpiece, {word_id: 8.0})
    out = reader.answer_batch([("Which?", f"One {word}."), ("Which?", [FILLER[1], f"Two {word}."])])
    assert out[0][0].text.lower() == word and out[0][0].passage == 0
    assert out[1][0].text.lower() == word and out[1][0].passage == 1
    with pytest.raises(SpanqaError, match="non-empty list of strings"):
        reader.answer("Which?", [])
