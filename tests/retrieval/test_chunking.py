"""Passages: whole paragraphs packed to a token budget, overlap by whole paragraphs, long paragraphs windowed."""

from hypothesis import given, settings
from hypothesis import strategies as st

from spanqa.retrieval.chunking import paragraphs, split_document


def test_the_worked_example(wordpiece):
    # paragraphs of 6, 3, 5 and 2 tokens (one word = one token here), budget 10, overlap 4
    words = lambda n, w: " ".join([w] * n)  # noqa: E731
    text = "\n\n".join([words(6, "a"), words(3, "b"), words(5, "c"), words(2, "d")])
    spans = split_document(text, wordpiece, max_tokens=10, overlap_tokens=4)
    got = [text[s:e] for s, e in zip(spans.starts, spans.ends)]
    assert got == [words(6, "a") + "\n\n" + words(3, "b"),
                   words(3, "b") + "\n\n" + words(5, "c") + "\n\n" + words(2, "d")]


def test_a_long_paragraph_becomes_overlapping_windows_that_cover_it(wordpiece):
    text = " ".join(f"word{i}" for i in range(100))
    spans = split_document(text, wordpiece, max_tokens=30, overlap_tokens=8)
    assert spans.starts[0] == 0 and spans.ends[-1] == len(text)
    assert all(s2 < e1 for e1, s2 in zip(spans.ends, spans.starts[1:]))  # consecutive windows overlap
    lengths = [len(wordpiece(text[s:e], add_special_tokens=False)["input_ids"])
               for s, e in zip(spans.starts, spans.ends)]
    assert max(lengths) <= 30


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["the", "tower", "paris", "eiffel", "1889", "built", "x,y"]),
                         min_size=1, max_size=40), min_size=1, max_size=8), st.integers(8, 40))
def test_passages_are_spans_within_budget_that_cover_every_character_of_every_paragraph(wordpiece, paras, budget):
    text = "\n\n".join(" ".join(p) for p in paras)
    spans = split_document(text, wordpiece, max_tokens=budget, overlap_tokens=4)
    for s, e in zip(spans.starts, spans.ends):
        assert text[s:e] == text[s:e].strip() and len(wordpiece(text[s:e], add_special_tokens=False)
                                                          ["input_ids"]) <= budget
    covered = set()
    for s, e in zip(spans.starts, spans.ends):
        covered.update(range(s, e))
    assert all(i in covered for s, e in paragraphs(text) for i in range(s, e) if not text[i].isspace())


def test_blank_text_has_no_passages(wordpiece):
    assert len(split_document("  \n\n ", wordpiece, 10, 2).starts) == 0
