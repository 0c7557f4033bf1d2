"""Dynamic masking for masked-language-model pretraining (BERT's 15%, 80/10/10), token or whole word.

Legend: B = batch, L = padded length.

Per sequence, k = max(1, round(probability * n)) of its n maskable tokens are chosen (BERT's exact count,
not a Bernoulli draw per token). With whole-word masking the choice is made over words: each word gets a
random key, tokens are ranked by their word's key, and a word is chosen when all of its tokens rank
below k, so no word is ever half masked and at most k tokens are. Token-level masking is the same with
every token its own word. Of the chosen tokens 80% become [MASK], 10% a random token, 10% stay as they
are; all of them are predicted. Worked example: 20 maskable tokens, p = 0.15 -> k = 3 tokens chosen.

The draws come from `generator` (default: torch's global RNG, which checkpoints save, so a resumed run
masks exactly as the uninterrupted one would). Masks are drawn anew for every batch: "dynamic" masking.
"""

from __future__ import annotations

import torch

IGNORE = -100


def mask_tokens(
    input_ids: torch.Tensor, maskable: torch.Tensor, word_start: torch.Tensor, mask_id: int, vocab_size: int,
    probability: float = 0.15, whole_word: bool = False, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked inputs [B, L], labels [B, L] with IGNORE where nothing is predicted).

    Args:
        input_ids: [B, L] int64 token ids.
        maskable: [B, L] bool, False at special tokens and padding.
        word_start: [B, L] bool, True where a token begins a word (used with `whole_word`).
    """
    batch, length = input_ids.shape
    maskable = maskable.bool()
    starts = word_start.bool() if whole_word else torch.ones_like(maskable)
    previous = torch.nn.functional.pad(maskable, (1, 0))[:, :-1]
    starts = maskable & (starts | ~previous)  # a maskable run always begins a word
    word = torch.cumsum(starts.long(), dim=1) * maskable  # 1.. per word, 0 elsewhere
    n = maskable.sum(1)
    k = torch.where(n > 0, torch.clamp((n.double() * probability).round().long(), min=1), torch.zeros_like(n))
    key = torch.rand(batch, length + 1, generator=generator)
    token_key = torch.where(maskable, key.gather(1, word), torch.full_like(key[:, :length], 2.0))
    order = torch.argsort(token_key, dim=1, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(length).expand(batch, length).contiguous())
    word_last = torch.zeros(batch, length + 1, dtype=torch.long).scatter_reduce(
        1, word, torch.where(maskable, rank, torch.zeros_like(rank)), reduce="amax"
    )
    chosen = maskable & (word_last.gather(1, word) < k[:, None])
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    roll = torch.rand(batch, length, generator=generator)
    inputs = torch.where(chosen & (roll < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    random_ids = torch.randint(vocab_size, (batch, length), generator=generator, dtype=input_ids.dtype)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, inputs)
    return inputs, labels
