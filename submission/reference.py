"""compbench's own cross-entropy of a model under the challenge's scoring rule: the reference a
Golden-Plate export is judged against.

The challenge gives every position its previous <= ``window`` bytes and nothing else. Here the
integer engine (the probabilities compbench codes with, without the match model) sees exactly that:
each position is its own stream, started from BOS and an empty state, fed the last ``window`` bytes
before it. Positions with a full window are run ``batch`` at a time (all rows the same length, so
one ``step`` advances them all); the first ``window`` positions are one stream read from the start,
whose step ``i`` has seen exactly the ``i`` bytes before position ``i``.
"""

from __future__ import annotations

import numpy as np


def windowed_bits(engine, data: bytes, window: int = 512, batch: int = 256, progress=None) -> float:
    """``-sum log2 p(data[i] | data[max(0, i - window) : i])`` under ``engine`` (bits)."""
    import torch

    from compbench.models import intops

    arr = np.frombuffer(bytes(data), dtype=np.uint8)
    n, bits = len(arr), 0.0

    def charge(logits: torch.Tensor, truth: np.ndarray) -> float:
        p = intops.probabilities(logits).numpy()
        return -float(np.log2(p[np.arange(len(truth)), truth]).sum())

    with torch.inference_mode():
        head = min(n, window + 1)  # positions 0..window: one stream from the start
        state, inputs = engine.start(1), torch.tensor([intops.BOS])
        for i in range(head):
            bits += charge(engine.step(state, inputs), arr[i : i + 1])
            inputs = torch.tensor([int(arr[i])])
        for start in range(head, n, batch):
            rows = np.arange(start, min(n, start + batch))
            state = engine.start(len(rows))
            logits = engine.step(state, torch.full((len(rows),), intops.BOS, dtype=torch.int64))
            for k in range(window, 0, -1):  # feed data[i - k] for every row i
                logits = engine.step(state, torch.from_numpy(arr[rows - k].astype(np.int64)))
            bits += charge(logits, arr[rows])
            if progress is not None:
                progress(int(rows[-1]) + 1)
    return bits
