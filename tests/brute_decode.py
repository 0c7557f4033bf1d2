"""A brute-force reference decoder for the parity tests: loops over every valid (start, end) pair."""

from __future__ import annotations

import numpy as np


def brute_nbest(start, end, batch, example_index, k, max_len):
    """{example: [(score, window, start_tok, end_tok), ...] best first}, same tie order as decode."""
    offsets, owned = batch["offsets"], batch["is_max_context"]
    out: dict[int, list] = {}
    for w in range(start.shape[0]):
        cands = out.setdefault(int(example_index[w]), [])
        ok = offsets[w, :, 1] > offsets[w, :, 0]
        for i in np.flatnonzero(owned[w] & ok):
            for j in range(i, min(i + max_len, start.shape[1])):
                if ok[j] and offsets[w, j, 0] >= 0:
                    cands.append((float(start[w, i]) + float(end[w, j]), w, int(i), int(j)))
    return {ex: sorted(c, key=lambda t: (-t[0], t[1], t[2], t[3]))[:k] for ex, c in out.items()}
