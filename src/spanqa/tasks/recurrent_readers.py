"""New recurrent readers (`spanqa train --model bidaf | lstm-baseline`): their settings and how one is made
from word vectors and the training texts. Training, evaluation and saving are the reader task's own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from spanqa.config import setting
from spanqa.data import Example
from spanqa.errors import SpanqaError

log = logging.getLogger(__name__)
RECURRENT_MODELS = ("bidaf", "lstm-baseline")


@dataclass(frozen=True)
class RecurrentConfig:
    """Recurrent readers (--model bidaf or lstm-baseline): word vectors and sizes."""

    embeddings: str = setting("glove-6b-50d", "word vectors: the offline alias glove-6b-50d, a GloVe/word2vec text file "
                                         "(.gz too), a word2vec .bin or a gensim KeyedVectors file")
    freeze_embeddings: bool = setting(True, "keep the word vectors fixed (the char CNN still learns)")
    hidden_size: int = setting(100, "LSTM hidden size per direction (BiDAF's d)")
    char_embedding_size: int = setting(8, "char embedding size (0 with char_channels 0: no char CNN)")
    char_channels: int = setting(100, "char CNN filters, the size of each word's char features (0 = no char CNN)")
    char_kernel_size: int = setting(5, "char CNN filter width")
    max_word_length: int = setting(16, "chars per word the char CNN reads")
    highway_layers: int = setting(2, "highway layers over the word + char embeddings (BiDAF)")
    dropout: float = setting(0.2, "dropout before every LSTM layer and the output layers")

    def __post_init__(self) -> None:
        for name in ("hidden_size", "max_word_length"):
            if getattr(self, name) < 1:
                raise SpanqaError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1.")
        if self.char_channels and (self.char_embedding_size < 1 or self.char_kernel_size > self.max_word_length):
            raise SpanqaError(f"--char-kernel-size {self.char_kernel_size} / --char-embedding-size "
                              f"{self.char_embedding_size}: a char CNN needs an embedding size of at least 1 and a "
                              f"kernel no wider than --max-word-length {self.max_word_length}.")
        if not 0 <= self.dropout < 1:
            raise SpanqaError(f"--dropout {self.dropout}: expected a value in [0, 1).")


def is_recurrent(model: str) -> bool:
    return model in RECURRENT_MODELS


def new_reader(architecture: str, config: RecurrentConfig, examples: list[Example]):
    """(model, tokenizer) of a new recurrent reader whose vocabulary covers the vectors and `examples`' words.

    Raises:
        SpanqaError: the vectors cannot be read.
    """
    from spanqa.models.recurrent import RecurrentReader, RecurrentReaderConfig
    from spanqa.models.words import build_vocabulary, load_vectors, word_tokenizer

    vectors = load_vectors(config.embeddings)
    texts = list(dict.fromkeys(e.context for e in examples)) + [e.question for e in examples]
    vocab = build_vocabulary(vectors, texts, config.max_word_length)
    model_config = RecurrentReaderConfig(
        architecture=architecture, vocab_size=len(vocab.vectors), embedding_size=vectors.dim,
        hidden_size=config.hidden_size, char_vocab_size=3 + len(vocab.char_list),
        char_embedding_size=config.char_embedding_size, char_channels=config.char_channels,
        char_kernel_size=config.char_kernel_size, max_word_length=config.max_word_length,
        highway_layers=config.highway_layers, dropout=config.dropout, freeze_embeddings=config.freeze_embeddings,
        embeddings=vectors.source,
    )
    model = RecurrentReader(model_config)
    model.set_vocabulary(vocab.vectors, vocab.chars)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("%s: %d words (%d-d vectors from %s), %d chars, %s trainable parameters", architecture,
             len(vocab.vectors), vectors.dim, vectors.source, len(vocab.char_list), f"{trainable:,}")
    return model, word_tokenizer(vocab.words)
