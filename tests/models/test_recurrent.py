"""BiDAF and the LSTM baseline: the attention flow against a loop, masks, the window split, save/load."""

from __future__ import annotations

import pytest
import torch

from spanqa.models.recurrent import (ARCHITECTURES, NEG, AttentionFlow, BiLSTM, RecurrentReader,
                                     RecurrentReaderConfig, Split, reverse_index)


def tiny_reader(architecture: str, seed: int = 0) -> RecurrentReader:
    torch.manual_seed(seed)
    config = RecurrentReaderConfig(architecture=architecture, vocab_size=40, embedding_size=6, hidden_size=5,
                                   char_vocab_size=12, char_embedding_size=3, char_channels=4, char_kernel_size=3,
                                   max_word_length=6, dropout=0.0)
    model = RecurrentReader(config)
    model.set_vocabulary(torch.randn(40, 6).numpy(), torch.randint(0, 12, (40, 6)).short().numpy())
    return model.eval()


def window(question: list[int], context: list[int], pad_to: int = 0) -> dict:
    """One `[CLS] question context` window (CLS id 2), right-padded to `pad_to`."""
    ids = [2, *question, *context]
    types = [0] * (1 + len(question)) + [1] * len(context)
    pad = max(pad_to - len(ids), 0)
    return {"input_ids": ids + [0] * pad, "token_type_ids": types + [0] * pad, "attention_mask": [1] * len(ids) + [0] * pad}


def batch(*windows: dict) -> dict:
    width = max(len(w["input_ids"]) for w in windows)
    padded = [window_pad(w, width) for w in windows]
    return {k: torch.tensor([w[k] for w in padded]) for k in padded[0]}


def window_pad(w: dict, width: int) -> dict:
    pad = width - len(w["input_ids"])
    return {k: v + [0] * pad for k, v in w.items()}


def test_reverse_index_worked_example():
    assert reverse_index(torch.tensor([3]), 5).tolist() == [[2, 1, 0, 3, 4]]


def test_attention_flow_equals_the_paper_written_as_loops():
    torch.manual_seed(1)
    flow = AttentionFlow(4)
    h, u = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    c_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    q_mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    with torch.no_grad():
        g = flow(h, u, c_mask, q_mask)
    w_c, b_c, w_q, w_cq = (t.detach() for t in (flow.w_c.weight[0], flow.w_c.bias[0], flow.w_q.weight[0], flow.w_cq))
    for b in range(2):
        T, J = int(c_mask[b].sum()), int(q_mask[b].sum())
        s = torch.tensor([[float(w_c @ h[b, t] + b_c + w_q @ u[b, j] + w_cq @ (h[b, t] * u[b, j])) for j in range(J)]
                          for t in range(T)])  # [T, J]
        a = torch.softmax(s, dim=1)
        weights = torch.softmax(s.max(dim=1).values, dim=0)
        h_tilde = sum(weights[t] * h[b, t] for t in range(T))
        for t in range(T):
            u_tilde = sum(a[t, j] * u[b, j] for j in range(J))
            expected = torch.cat([h[b, t], u_tilde, h[b, t] * u_tilde, h[b, t] * h_tilde])
            torch.testing.assert_close(g[b, t], expected, atol=1e-5, rtol=1e-5)


def test_bilstm_outputs_do_not_depend_on_padding():
    torch.manual_seed(2)
    lstm = BiLSTM(3, 4, num_layers=2).eval()
    x = torch.randn(1, 4, 3)
    alone = lstm(x, torch.tensor([4]))
    padded = lstm(torch.cat([x, torch.randn(1, 3, 3)], dim=1), torch.tensor([4]))
    torch.testing.assert_close(padded[:, :4], alone, atol=1e-6, rtol=1e-6)
    backward_first = alone[0, 0, 4:]  # the backward direction at word 0 has read all 4 words
    assert not torch.allclose(backward_first, lstm(x[:, :1], torch.tensor([1]))[0, 0, 4:])


def test_split_finds_question_and_context_and_puts_logits_back():
    b = batch(window([5, 6], [7, 8, 9]), window([5], [7]))
    split = Split(b["input_ids"], b["token_type_ids"], b["attention_mask"])
    assert split.q_ids.tolist() == [[5, 6], [5, 0]] and split.c_ids.tolist() == [[7, 8, 9], [7, 0, 0]]
    assert split.q_len.tolist() == [2, 1] and split.c_len.tolist() == [3, 1]
    logits = split.to_window(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), torch.tensor([-1.0, -2.0]))
    assert logits.tolist() == [[-1, NEG, NEG, 1, 2, 3], [-2, NEG, 4, NEG, NEG, NEG]]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_window_answers_the_same_alone_or_batched_with_longer_ones(architecture):
    model = tiny_reader(architecture)
    short, long = window([5, 6], [7, 8, 9, 10]), window([11, 12, 13, 14], [15, 16, 17, 18, 19, 20, 21])
    with torch.no_grad():
        alone = model(**batch(short))
        together = model(**batch(long, short))
    n = len(short["input_ids"])
    for key in ("start_logits", "end_logits"):
        torch.testing.assert_close(together[key][1, :n], alone[key][0], atol=1e-5, rtol=1e-5)
        assert (together[key][1, n:] == NEG).all()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saved_readers_load_with_frozen_vectors_and_the_same_outputs(tmp_path, architecture):
    from spanqa.models.reader_model import load_qa_model

    model = tiny_reader(architecture)
    model.save_pretrained(tmp_path)
    loaded = load_qa_model(str(tmp_path)).eval()
    assert type(loaded) is RecurrentReader and not loaded.reader.embed.words.weight.requires_grad
    b = batch(window([5, 6], [7, 8, 9]))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**b).start_logits, model(**b).start_logits)
    torch.testing.assert_close(loaded.reader.embed.chars, model.reader.embed.chars)
