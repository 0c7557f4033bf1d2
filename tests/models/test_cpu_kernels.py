"""The CPU training kernels keep dropout's statistics and attention's values."""

import torch

from spanqa.models.cpu_kernels import FastDropout, attention, keep_mask, use_fast_cpu_training


def test_keep_mask_rate_and_seed_reproducibility():
    torch.manual_seed(0)
    a = keep_mask(torch.Size([400, 1000]), 0.1, torch.device("cpu"))
    torch.manual_seed(0)
    b = keep_mask(torch.Size([400, 1000]), 0.1, torch.device("cpu"))
    assert torch.equal(a, b)
    assert abs(a.float().mean().item() - 0.9) < 0.002
    lanes = a.view(-1, 4).float().mean(0)  # every 16-bit lane of a word is unbiased, the top one included
    assert (lanes - 0.9).abs().max() < 0.004


def test_fast_dropout_is_unbiased_and_identity_in_eval():
    x = torch.ones(200, 1000)
    layer = FastDropout(0.25)
    assert abs(layer(x).mean().item() - 1.0) < 0.01
    assert torch.allclose(layer(x).unique(), torch.tensor([0.0, 1 / 0.75]))
    assert torch.equal(layer.eval()(x), x)


class _Module(torch.nn.Module):
    is_causal = False


def test_attention_without_dropout_equals_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    mask = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    module = _Module().train()
    torch.manual_seed(1)
    out, _ = attention(module, q, k, v, mask, dropout=0.0)
    assert torch.allclose(out, want, atol=1e-5)
    out_drop, _ = attention(module, q, k, v, mask, dropout=0.5)
    assert not torch.allclose(out_drop, want, atol=1e-3)  # dropout acts in training


def test_model_swap_keeps_eval_outputs(tiny_model):
    from spanqa.models.reader_model import load_qa_model

    plain, fast = load_qa_model(str(tiny_model)).eval(), load_qa_model(str(tiny_model))
    assert "attention" in " ".join(use_fast_cpu_training(fast))
    fast.eval()
    ids = torch.randint(5, 100, (2, 12))
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0
    a, b = plain(input_ids=ids, attention_mask=mask), fast(input_ids=ids, attention_mask=mask)
    assert torch.equal(a.start_logits, b.start_logits)


def test_the_log_claims_faster_attention_only_where_the_family_took_it():
    from transformers import BertConfig, BertForQuestionAnswering, DebertaV2Config, DebertaV2ForQuestionAnswering

    from spanqa.models.cpu_kernels import use_fast_cpu_training

    small = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    bert = use_fast_cpu_training(BertForQuestionAnswering(BertConfig(**small)))
    assert bert == ["7 Dropout -> FastDropout (a quarter of the random draws)",
                    "2 BertSelfAttention: attention function -> spanqa_cpu (SDPA, dropout with those masks)"]
    deberta = use_fast_cpu_training(DebertaV2ForQuestionAnswering(DebertaV2Config(**small)))
    assert len(deberta) == 1 and "attention" not in deberta[0]  # its attention is not pluggable: not claimed
