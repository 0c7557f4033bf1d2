"""Prediction-layer distillation for readers: a loss plus a teacher, fed to the same training loop.

Legend: B = batch, L = padded window length, T = temperature, w = distillation_loss_weight.

    loss = w * T^2 * (KL(softmax(t_start/T) || softmax(s_start/T)) + KL(same for end)) / 2
           + (1 - w) * span_loss(s_start, s_end, gold)

The T^2 factor keeps the soft term's gradient on the scale of the hard term's as T changes (Hinton et
al. 2015). Padded positions are excluded from every softmax. Worked example: teacher logits [2, 0],
student [0, 0], T = 1: p = softmax(t) = [0.881, 0.119], q = [0.5, 0.5];
KL(p || q) = 0.881 ln(0.881/0.5) + 0.119 ln(0.119/0.5) = 0.499 - 0.171 = 0.3278.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spanqa.errors import SpanqaError
from spanqa.batching import sorted_batches
from spanqa.inference import run_batches
from spanqa.models.reader_model import mask_padding, model_inputs, span_loss

from spanqa.tasks.settings import DistillConfig  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
            attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B] T^2 * KL(softmax(teacher/T) || softmax(student/T)) over the unpadded positions.

    Args:
        student, teacher: [B, L] logits.
        attention_mask: [B, L], 0 at padding.
    """
    s = F.log_softmax(mask_padding(student, attention_mask) / temperature, dim=-1)
    t = F.log_softmax(mask_padding(teacher, attention_mask) / temperature, dim=-1)
    p = t.exp()
    terms = torch.where(p > 0, p * (t - s), torch.zeros_like(p))  # 0 * log 0 = 0 at padding
    return terms.sum(-1) * temperature**2


def distill_loss(
    start: torch.Tensor, end: torch.Tensor, t_start: torch.Tensor, t_end: torch.Tensor,
    start_positions: torch.Tensor, end_positions: torch.Tensor, attention_mask: torch.Tensor | None,
    temperature: float, weight: float,
) -> torch.Tensor:
    """[B] w * soft + (1 - w) * hard, each the mean of its start and end terms."""
    soft = (kd_loss(start, t_start, temperature, attention_mask) + kd_loss(end, t_end, temperature, attention_mask)) / 2
    if weight >= 1:
        return soft
    hard = span_loss(start, end, start_positions, end_positions, attention_mask)
    return weight * soft + (1 - weight) * hard


class TeacherLogits:
    """Teacher start/end logits of every training window, computed once and memory-mapped.

    Stored ragged like `Features` (flat [T] float16 arrays, same row_splits), so the cache costs
    4 bytes per token and a batch gathers its rows without padding the whole set.
    """

    def __init__(self, folder: Path) -> None:
        self.start = np.load(folder / "teacher_start.npy", mmap_mode="r")
        self.end = np.load(folder / "teacher_end.npy", mmap_mode="r")

    @classmethod
    def build(cls, teacher, features, folder: Path, input_names, pad_id: int, precision: str,
              batch_size: int = 64) -> "TeacherLogits":
        """Run the teacher over every window once (a tqdm bar counts the windows: on the full SQuAD train set
        this is one forward pass over ~88,500 windows, minutes on a CPU)."""
        from tqdm.auto import tqdm

        folder.mkdir(parents=True, exist_ok=True)
        total = int(features.row_splits[-1])
        start = np.lib.format.open_memmap(folder / ".teacher_start.npy", mode="w+", dtype=np.float16, shape=(total,))
        end = np.lib.format.open_memmap(folder / ".teacher_end.npy", mode="w+", dtype=np.float16, shape=(total,))
        device = next(teacher.parameters()).device
        forward = lambda m, batch: m(**model_inputs(batch, input_names, device))  # noqa: E731
        batches = sorted_batches(features.lengths, batch_size)
        with tqdm(total=len(features), desc="teacher logits", unit="window", dynamic_ncols=True) as bar:
            for batch, out in run_batches(teacher, features, batches, pad_id, precision, forward):
                _scatter(start, out.start_logits, features, batch["rows"])
                _scatter(end, out.end_logits, features, batch["rows"])
                bar.update(len(batch["rows"]))
        start.flush()
        end.flush()
        del start, end
        for name in ("teacher_start.npy", "teacher_end.npy"):
            (folder / f".{name}").replace(folder / name)
        return cls(folder)

    def gather(self, features, rows: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[b, width] teacher logits for `rows`, -inf at padding."""
        return _gather(self.start, features, rows, width), _gather(self.end, features, rows, width)


def _scatter(flat: np.ndarray, logits: torch.Tensor, features, rows: np.ndarray) -> None:
    values = logits.float().cpu().numpy()
    for j, r in enumerate(rows):
        lo, hi = features.row_splits[r], features.row_splits[r + 1]
        flat[lo:hi] = values[j, : hi - lo]


def _gather(flat: np.ndarray, features, rows: np.ndarray, width: int) -> torch.Tensor:
    out = np.full((len(rows), width), -np.inf, dtype=np.float32)
    for j, r in enumerate(rows):
        lo, hi = features.row_splits[r], features.row_splits[r + 1]
        out[j, : hi - lo] = flat[lo:hi]
    return torch.from_numpy(out)


def hidden_loss(student_states, teacher_states, layer_map: list[int], attention_mask: torch.Tensor) -> torch.Tensor:
    """[B] mean over mapped layers of the MSE between hidden states, over real tokens (TinyBERT's hidden loss).

    Args:
        student_states, teacher_states: per layer [B, L, H] (index 0 = the embeddings' output).
        layer_map: for student state i, the index of the teacher state it learns from.
    """
    mask = attention_mask[..., None].float()
    per_layer = []
    for i, j in enumerate(layer_map):
        diff = (student_states[i].float() - teacher_states[j].float()) ** 2 * mask
        per_layer.append(diff.sum((1, 2)) / (mask.sum((1, 2)) * diff.shape[-1]))
    return torch.stack(per_layer).mean(0)


def layer_map(student_layers: int, teacher_layers: int, kept: list[int] | None = None) -> list[int]:
    """Teacher hidden-state index for each student hidden state: the embeddings to the embeddings, then the
    teacher layers a cut student kept, or TinyBERT's uniform map (student layer m <- teacher layer m * N / M).
    Worked example: 3 of 6 layers kept as [0, 2, 5] -> [0, 1, 3, 6]; uniform 3 of 6 -> [0, 2, 4, 6]."""
    if kept is not None:
        return [0, *[k + 1 for k in kept]]
    return [0, *[round(m * teacher_layers / student_layers) for m in range(1, student_layers + 1)]]


class DistillObjective:
    """The loss the loop calls: student forward + teacher logits (cached or live) -> [b] loss.

    With `hidden_loss_weight` > 0 the teacher runs live and the student's hidden states also learn from the
    teacher's at `layers` (see `layer_map`).
    """

    def __init__(self, config: DistillConfig, input_names, features, cache: TeacherLogits | None = None,
                 teacher: torch.nn.Module | None = None, layers: list[int] | None = None) -> None:
        if cache is None and teacher is None:
            raise ValueError("DistillObjective needs cached teacher logits or a teacher model")
        if config.hidden_loss_weight > 0 and (teacher is None or layers is None):
            raise ValueError("hidden-state distillation needs the teacher model and a layer map")
        self.config, self.input_names, self.features = config, input_names, features
        self.cache, self.teacher, self.layers = cache, teacher, layers

    def __call__(self, model, batch) -> torch.Tensor:
        device = next(model.parameters()).device
        hidden = self.config.hidden_loss_weight > 0
        inputs = model_inputs(batch, self.input_names, device)
        out = model(**inputs, output_hidden_states=hidden)
        labels = model_inputs(batch, ["start_positions", "end_positions", "attention_mask"], device)
        t_start, t_end, t_states = self._teacher(batch, inputs, out.start_logits.shape[1], hidden)
        loss = distill_loss(
            out.start_logits, out.end_logits, t_start, t_end, labels["start_positions"], labels["end_positions"],
            labels["attention_mask"], self.config.temperature, self.config.distillation_loss_weight,
        )
        if hidden:
            loss = loss + self.config.hidden_loss_weight * hidden_loss(
                out.hidden_states, t_states, self.layers, labels["attention_mask"])
        return loss

    def _teacher(self, batch, inputs, width: int, hidden: bool):
        """(start, end, hidden states or None) of the teacher: from the cache, or a live forward."""
        if self.cache is not None and not hidden:
            t_start, t_end = self.cache.gather(self.features, batch["rows"], width)
            device = inputs["input_ids"].device
            return t_start.to(device), t_end.to(device), None
        with torch.no_grad():
            out = self.teacher(**inputs, output_hidden_states=hidden)
        return out.start_logits.float(), out.end_logits.float(), out.hidden_states if hidden else None


def layer_list(model) -> tuple[object, str, torch.nn.ModuleList]:
    """(parent module, attribute, ModuleList) holding the encoder's transformer layers."""
    base = getattr(model, model.base_model_prefix, model)
    for parent_name, attr in (("encoder", "layer"), ("transformer", "layer")):
        parent = getattr(base, parent_name, None)
        layers = getattr(parent, attr, None) if parent is not None else None
        if isinstance(layers, torch.nn.ModuleList):
            return parent, attr, layers
    raise SpanqaError(f"--student-layers: cannot find the transformer layers of a {type(model).__name__}.")


def evenly_spaced(n: int, keep: int) -> list[int]:
    """`keep` evenly spaced indices of n layers, first and last included. Worked example: 6, 3 -> [0, 2, 5]."""
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, keep)})


def shrink_layers(model, keep: int) -> list[int]:
    """Keep `keep` evenly spaced layers (first and last included), in place; returns their indices.

    TinyRoBERTa keeps 6 of RoBERTa's 12 this way. Worked example: 6 layers, keep 3 -> [0, 2, 5].
    """
    parent, attr, layers = layer_list(model)
    n = len(layers)
    if not 1 <= keep <= n:
        raise SpanqaError(f"--student-layers {keep}: the teacher has {n} layers; expected 1..{n}.")
    chosen = evenly_spaced(n, keep)
    setattr(parent, attr, torch.nn.ModuleList([layers[i] for i in chosen]))
    for key in ("num_hidden_layers", "n_layers"):
        if hasattr(model.config, key):
            setattr(model.config, key, len(chosen))
    return chosen


def check_same_tokenizer(teacher_tok, student_tok) -> None:
    """Teacher and student must cut text into the same windows: same vocabulary and special tokens.

    Raises:
        SpanqaError: the tokenizers differ (windows would not align token for token).
    """
    same = teacher_tok.get_vocab() == student_tok.get_vocab() and (
        teacher_tok.cls_token_id, teacher_tok.sep_token_id, teacher_tok.pad_token_id
    ) == (student_tok.cls_token_id, student_tok.sep_token_id, student_tok.pad_token_id)
    if not same:
        raise SpanqaError(
            "teacher and student tokenizers differ, so their windows do not align token for token; "
            "distil between models of the same tokenizer family (e.g. --student-layers N from the teacher)."
        )
