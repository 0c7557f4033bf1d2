"""A brute-force reference decoder for the parity tests.

For each window it scores every (start, end) pair of the full L x L grid, keeps the valid ones by the
rules written out plainly, and sorts them all: no pruning, no sliding maximum, no top-k tricks.
"""

from __future__ import annotations

import numpy as np


def brute_nbest(start, end, batch, example_index, k, max_len):
    """{example: [(score, window, start_tok, end_tok), ...] best first}, ties by window, start, end."""
    offsets, owned = batch["offsets"], batch["is_max_context"]
    length = start.shape[1]
    i, j = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")  # [L, L]
    out: dict[int, list] = {}
    for w in range(start.shape[0]):
        has_text = offsets[w, :, 1] > offsets[w, :, 0]
        in_context = offsets[w, :, 0] >= 0
        valid = (
            (j >= i) & (j - i + 1 <= max_len)
            & owned[w][i] & has_text[i]
            & in_context[j] & has_text[j]
        )
        si, sj = i[valid], j[valid]
        scores = start[w, si].astype(np.float64) + end[w, sj].astype(np.float64)
        out.setdefault(int(example_index[w]), []).extend(
            zip(scores.tolist(), [w] * len(si), si.tolist(), sj.tolist())
        )
    return {ex: sorted(c, key=lambda t: (-t[0], t[1], t[2], t[3]))[:k] for ex, c in out.items()}
