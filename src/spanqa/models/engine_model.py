"""What spanqa's inference needs of a model run by another engine (ONNX Runtime, OpenVINO): called with the
usual tensors, it returns start/end logits like a transformers QA model, always in eval mode, on the CPU."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch


class EngineQAModel:
    """Subclasses set `input_names` (their graph's inputs) and implement `logits(feed) -> (start, end)`."""

    training = False
    device = torch.device("cpu")
    input_names: list[str] = []

    def logits(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, **inputs) -> SimpleNamespace:
        feed = {k: v.cpu().numpy().astype(np.int64) for k, v in inputs.items() if k in self.input_names}
        start, end = self.logits(feed)
        return SimpleNamespace(start_logits=torch.from_numpy(start), end_logits=torch.from_numpy(end))

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self
