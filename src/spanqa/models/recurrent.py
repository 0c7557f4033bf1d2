"""Recurrent readers: BiDAF (Seo et al. 2017) and the seed's LSTM baseline, as Hugging Face models.

Legend: B = batch, L = window tokens, Q = question words, C = context words, W = chars per word,
U = distinct words in a batch, E = word vector size, K = char CNN channels, D = hidden size.

They read the same windows as transformer readers (`[CLS] question context`, segment ids 0/0/1, built by
`features.py` with `words.word_tokenizer`) and return start/end logits over the window, so decoding,
metrics, training and `Reader` are shared. Inside, the window is split into a question and a context
tensor; context logits go back to their window positions, the question's positions get `NEG`, and
`[CLS]` gets a learned "no answer in this window" logit (what a window without the answer is trained
towards, and what SQuAD v2 readers compare spans against).

Padding changes no output: every BiLSTM runs its backward direction over each row reversed within its
own length (so padding only ever follows the real words), every softmax and max is masked, and the char
CNN runs once per distinct word.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForQuestionAnswering, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import QuestionAnsweringModelOutput

ARCHITECTURES = ("bidaf", "lstm-baseline")
NEG = -1e9  # the logit of a position that can never be an answer


class RecurrentReaderConfig(PretrainedConfig):
    """Sizes of a recurrent reader (saved in its `config.json`)."""

    model_type = "spanqa_recurrent"

    def __init__(self, architecture: str = "bidaf", vocab_size: int = 3, embedding_size: int = 50,
                 hidden_size: int = 100, char_vocab_size: int = 3, char_embedding_size: int = 8,
                 char_channels: int = 100, char_kernel_size: int = 5, max_word_length: int = 16,
                 highway_layers: int = 2, dropout: float = 0.2, freeze_embeddings: bool = True, **kwargs):
        self.architecture, self.vocab_size, self.embedding_size = architecture, vocab_size, embedding_size
        self.hidden_size, self.char_vocab_size, self.char_embedding_size = hidden_size, char_vocab_size, char_embedding_size
        self.char_channels, self.char_kernel_size, self.max_word_length = char_channels, char_kernel_size, max_word_length
        self.highway_layers, self.dropout, self.freeze_embeddings = highway_layers, dropout, freeze_embeddings
        # Two segments, question and context: what makes callers feed token_type_ids (`uses_segments`). Folders
        # saved before this line have no such key and get it here.
        kwargs.pop("type_vocab_size", None)
        self.type_vocab_size = 2
        super().__init__(**kwargs)


def reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[B, T] gather index that reverses each row within its length and leaves its padding in place.

    Worked example: lengths [3], width 5 -> [[2, 1, 0, 3, 4]].
    """
    t = torch.arange(width, device=lengths.device)[None, :]  # [1, T]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, T, H] reordered along T by index [B, T]."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[-1]))


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM whose outputs at real positions do not depend on padding.

    Each direction is its own `nn.LSTM` over a padded batch (no packing: padded runs use the fast fused
    kernel); the backward direction reads every row reversed within its length.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.fwd = nn.ModuleList(nn.LSTM(n, hidden_size, batch_first=True) for n in sizes)
        self.bwd = nn.ModuleList(nn.LSTM(n, hidden_size, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, in], lengths [B] -> [B, T, 2H] (forward states, then backward states)."""
        rev = reverse_index(lengths, x.shape[1])  # [B, T]
        for fwd, bwd in zip(self.fwd, self.bwd):
            x = self.dropout(x)
            ahead, _ = fwd(x)  # [B, T, H]
            back, _ = bwd(gather_rows(x, rev))
            x = torch.cat([ahead, gather_rows(back, rev)], dim=-1)  # the reversal is its own inverse
        return x


class CharCNN(nn.Module):
    """Char embeddings -> 1-D convolution -> ReLU -> max over the word: one K-vector per word."""

    def __init__(self, n_chars: int, dim: int, channels: int, kernel: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_chars, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, channels, kernel)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """chars [U, W] int -> [U, K]."""
        x = self.embed(chars.long()).transpose(1, 2)  # [U, dim, W]
        return F.relu(self.conv(x)).max(dim=-1).values


class Highway(nn.Module):
    """y = g * relu(W x) + (1 - g) * x with gate g = sigmoid(W_g x), per layer."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h, g = layer(x).chunk(2, dim=-1)
            g = torch.sigmoid(g)
            x = g * F.relu(h) + (1 - g) * x
        return x


class AttentionFlow(nn.Module):
    """BiDAF's attention flow: similarity S, context-to-query and query-to-context attention.

    S[t, j] = w_c . h_t + w_q . u_j + w_cq . (h_t * u_j)
    c2q: u~_t = sum_j softmax_j(S[t]) u_j;  q2c: h~ = sum_t softmax_t(max_j S[t]) h_t
    G_t = [h_t; u~_t; h_t * u~_t; h_t * h~]
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w_c = nn.Linear(dim, 1)
        self.w_q = nn.Linear(dim, 1, bias=False)
        self.w_cq = nn.Parameter(torch.empty(dim).uniform_(-dim ** -0.5, dim ** -0.5))

    def forward(self, h, u, c_mask, q_mask) -> torch.Tensor:
        """h [B, C, 2D], u [B, Q, 2D], c_mask [B, C], q_mask [B, Q] (True = a word) -> G [B, C, 8D]."""
        s = self.w_c(h) + self.w_q(u).transpose(1, 2) + torch.bmm(h * self.w_cq, u.transpose(1, 2))  # [B, C, Q]
        s = s.masked_fill(~q_mask[:, None, :], NEG)
        u_tilde = torch.bmm(torch.softmax(s, dim=-1), u)  # [B, C, 2D]
        b = torch.softmax(s.max(dim=-1).values.masked_fill(~c_mask, NEG), dim=-1)  # [B, C]
        h_tilde = torch.bmm(b[:, None, :], h)  # [B, 1, 2D]
        return torch.cat([h, u_tilde, h * u_tilde, h * h_tilde], dim=-1)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [B, T, H] max over the real positions of mask [B, T] -> [B, H]."""
    return x.masked_fill(~mask[:, :, None], NEG).max(dim=1).values


class Split:
    """A window `[CLS] question context` split into padded question and context word ids.

    Attributes:
        q_ids [B, Q], c_ids [B, C]: word ids (0 = [PAD] past each row's length).
        q_len, c_len [B]: words per row (at least 1, so an empty question still runs).
        q_mask [B, Q], c_mask [B, C]: True at real words.
        c_pos [B, C]: each context word's window position (L, one past the end, at padding).
    """

    def __init__(self, input_ids, token_type_ids, attention_mask) -> None:
        B, L = input_ids.shape
        if token_type_ids is None:  # without segments every word would read as question and no span could win
            raise ValueError("a recurrent reader needs token_type_ids: 0 on [CLS] and the question, 1 on the context")
        real = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
        seg = token_type_ids
        self.q_len = ((seg == 0) & real).sum(1) - 1  # [B], without [CLS]
        self.c_len = ((seg == 1) & real).sum(1)
        Q, C = max(int(self.q_len.max()), 1), max(int(self.c_len.max()), 1)
        self.q_mask = torch.arange(Q, device=input_ids.device)[None] < self.q_len[:, None]
        self.c_mask = torch.arange(C, device=input_ids.device)[None] < self.c_len[:, None]
        q_pos = (1 + torch.arange(Q, device=input_ids.device)).clamp(max=L - 1).expand(B, -1)
        c_pos = self.q_len[:, None] + 1 + torch.arange(C, device=input_ids.device)[None]  # [B, C]
        self.c_pos = torch.where(self.c_mask, c_pos, L)
        self.q_ids = input_ids.gather(1, q_pos).masked_fill(~self.q_mask, 0)
        self.c_ids = input_ids.gather(1, self.c_pos.clamp(max=L - 1)).masked_fill(~self.c_mask, 0)
        self.q_len, self.c_len = self.q_len.clamp(min=1), self.c_len.clamp(min=1)
        self.window = (B, L)

    def to_window(self, context_logits: torch.Tensor, null_logit: torch.Tensor) -> torch.Tensor:
        """[B, C] context logits and [B] null logits -> [B, L] window logits (NEG at question words)."""
        B, L = self.window
        out = context_logits.new_full((B, L + 1), NEG)
        out = out.scatter(1, self.c_pos, context_logits)[:, :L]
        return torch.cat([null_logit[:, None], out[:, 1:]], dim=1)


class WordEmbedder(nn.Module):
    """Word ids -> [word vector; char CNN features] (the char CNN only when `char_channels` > 0)."""

    def __init__(self, config: RecurrentReaderConfig) -> None:
        super().__init__()
        self.words = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=0)
        self.words.weight.requires_grad_(not config.freeze_embeddings)
        self.register_buffer("chars", torch.zeros(config.vocab_size, config.max_word_length, dtype=torch.int16))
        self.char_cnn = CharCNN(config.char_vocab_size, config.char_embedding_size, config.char_channels,
                                config.char_kernel_size) if config.char_channels else None
        self.dropout = nn.Dropout(config.dropout)

    @property
    def size(self) -> int:
        return self.words.embedding_dim + (self.char_cnn.conv.out_channels if self.char_cnn is not None else 0)

    def forward(self, *ids: torch.Tensor) -> list[torch.Tensor]:
        """Each ids [B, T] -> [B, T, E (+ K)]; the char CNN runs once over the distinct words of all of them."""
        vecs = [self.words(x) for x in ids]
        if self.char_cnn is None:
            return vecs
        flat = torch.cat([x.reshape(-1) for x in ids])
        distinct, inverse = torch.unique(flat, return_inverse=True)
        feats = self.dropout(self.char_cnn(self.chars[distinct]))[inverse]  # [sum B*T, K]
        out, at = [], 0
        for x, v in zip(ids, vecs):
            n = x.numel()
            out.append(torch.cat([v, feats[at : at + n].view(*x.shape, -1)], dim=-1))
            at += n
        return out


class BiDAF(nn.Module):
    """Char CNN + word vectors -> highway -> contextual BiLSTM -> attention flow -> 2-layer modeling BiLSTM
    -> start; end BiLSTM -> end."""

    def __init__(self, config: RecurrentReaderConfig) -> None:
        super().__init__()
        d, p = config.hidden_size, config.dropout
        self.embed = WordEmbedder(config)
        self.highway = Highway(self.embed.size, config.highway_layers)
        self.contextual = BiLSTM(self.embed.size, d, dropout=p)
        self.attention = AttentionFlow(2 * d)
        self.modeling = BiLSTM(8 * d, d, num_layers=2, dropout=p)
        self.end_lstm = BiLSTM(2 * d, d, dropout=p)
        self.start_out, self.end_out = nn.Linear(10 * d, 1), nn.Linear(10 * d, 1)
        self.start_null, self.end_null = nn.Linear(10 * d, 1), nn.Linear(10 * d, 1)
        self.dropout = nn.Dropout(p)

    def forward(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        q, c = (self.highway(x) for x in self.embed(split.q_ids, split.c_ids))  # [B, Q, E+K], [B, C, E+K]
        u = self.contextual(q, split.q_len)  # [B, Q, 2D]
        h = self.contextual(c, split.c_len)  # [B, C, 2D]
        g = self.attention(h, u, split.c_mask, split.q_mask)  # [B, C, 8D]
        m = self.modeling(g, split.c_len)  # [B, C, 2D]
        m2 = self.end_lstm(m, split.c_len)  # [B, C, 2D]
        gm, gm2 = self.dropout(torch.cat([g, m], -1)), self.dropout(torch.cat([g, m2], -1))  # [B, C, 10D]
        start, end = self.start_out(gm).squeeze(-1), self.end_out(gm2).squeeze(-1)  # [B, C]
        null_start = self.start_null(masked_max(gm, split.c_mask)).squeeze(-1)  # [B]
        null_end = self.end_null(masked_max(gm2, split.c_mask)).squeeze(-1)
        return split.to_window(start, null_start), split.to_window(end, null_end)


class LSTMBaseline(nn.Module):
    """The seed's baseline: projected word vectors -> a shared BiLSTM over question and context -> the
    max-pooled question times each context state -> output BiLSTM -> start/end."""

    def __init__(self, config: RecurrentReaderConfig) -> None:
        super().__init__()
        d, p = config.hidden_size, config.dropout
        self.embed = WordEmbedder(config)
        self.project = nn.Linear(self.embed.size, d)
        self.encoder = BiLSTM(d, d, dropout=p)
        self.output = BiLSTM(4 * d, d, dropout=p)
        self.start_out, self.end_out = nn.Linear(2 * d, 1), nn.Linear(2 * d, 1)
        self.start_null, self.end_null = nn.Linear(2 * d, 1), nn.Linear(2 * d, 1)

    def forward(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        q, c = (F.relu(self.project(x)) for x in self.embed(split.q_ids, split.c_ids))  # [B, Q, D], [B, C, D]
        u = masked_max(self.encoder(q, split.q_len), split.q_mask)  # [B, 2D]
        h = self.encoder(c, split.c_len)  # [B, C, 2D]
        o = self.output(torch.cat([h, h * u[:, None, :]], dim=-1), split.c_len)  # [B, C, 2D]
        pooled = masked_max(o, split.c_mask)  # [B, 2D]
        start, end = self.start_out(o).squeeze(-1), self.end_out(o).squeeze(-1)
        return (split.to_window(start, self.start_null(pooled).squeeze(-1)),
                split.to_window(end, self.end_null(pooled).squeeze(-1)))


class RecurrentReader(PreTrainedModel):
    """A recurrent reader behind the `AutoModelForQuestionAnswering` interface (save/load/forward)."""

    config_class = RecurrentReaderConfig
    base_model_prefix = "reader"
    main_input_name = "input_ids"

    def __init__(self, config: RecurrentReaderConfig) -> None:
        super().__init__(config)
        if config.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {config.architecture!r}: expected one of {', '.join(ARCHITECTURES)}")
        self.reader = BiDAF(config) if config.architecture == "bidaf" else LSTMBaseline(config)
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> RecurrentReader:
        """Loading makes every weight trainable; the word vectors stay frozen as configured."""
        loaded = super().from_pretrained(*args, **kwargs)  # (model, loading info) with output_loading_info
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.reader.embed.words.weight.requires_grad_(not model.config.freeze_embeddings)
        return loaded

    def _init_weights(self, module: nn.Module) -> None:
        """Keep torch's own initialisation (as the papers' code does); vectors come from `set_vocabulary`."""

    def set_vocabulary(self, vectors, chars) -> None:
        """Copy the word vectors [V, E] and the char table [V, W] (numpy) into the model."""
        embed = self.reader.embed
        with torch.no_grad():
            embed.words.weight.copy_(torch.as_tensor(vectors))
            embed.chars.copy_(torch.as_tensor(chars))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None,
                end_positions=None, **kwargs) -> QuestionAnsweringModelOutput:
        """input_ids, attention_mask, token_type_ids [B, L] -> start_logits, end_logits [B, L]."""
        start, end = self.reader(Split(input_ids, token_type_ids, attention_mask))
        return QuestionAnsweringModelOutput(start_logits=start, end_logits=end)


def register() -> None:
    """Make `AutoConfig` / `AutoModelForQuestionAnswering` load recurrent reader folders."""
    try:
        AutoConfig.register(RecurrentReaderConfig.model_type, RecurrentReaderConfig)
        AutoModelForQuestionAnswering.register(RecurrentReaderConfig, RecurrentReader)
    except ValueError:  # already registered in this process
        pass


register()
