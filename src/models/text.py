"""Text classifiers over padded token ids: a recurrent one (BiLSTM/BiGRU, packed sequences, max/mean/attention
pooling) and Kim's (2014) convolutional one. Both take (ids (B, T), lengths (B,)[, ngrams (B, T, K)]) and
return logits (B, C). With ngram_buckets > 0, a token's embedding is its word vector plus the mean of its
hashed character n-grams' vectors (fastText's subword information; src.data.text.base.CharNgrams makes the ids).

Padding never changes a prediction: the recurrent net packs its input, so padded steps are never run, and
every pooling masks them; the CNN's padding token embeds to zeros, exactly the zeros its wide convolution
pads with, and windows that start beyond the text are masked before max-pooling.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from src.models.recurrence import mask_of, scan_rnn

POOLINGS = ("max", "mean", "attention", "max_mean")


class WordDropout(nn.Module):
    """In training, replaces each token by `unk_id` with probability p (padding is left alone), so that the
    model learns what to do with words it has never seen, as at test time."""

    def __init__(self, p: float, unk_id: int, pad_id: int):
        super().__init__()
        self.p, self.unk_id, self.pad_id = p, unk_id, pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return ids
        drop = (torch.rand(ids.shape, device=ids.device) < self.p) & (ids != self.pad_id)
        return ids.masked_fill(drop, self.unk_id)


class TokenEmbedding(nn.Module):
    """Word vectors, plus (ngram_buckets > 0) the mean of each token's character n-gram vectors. Padding
    (id 0 in both) embeds to zeros. Word dropout replaces the word id only: an unknown word keeps its n-grams,
    as at test time."""

    def __init__(self, vocab_size: int, embed_dim: int, pad_id: int, unk_id: int, ngram_buckets: int = 0,
                 word_dropout: float = 0.0):
        super().__init__()
        self.word_dropout = WordDropout(word_dropout, unk_id, pad_id)
        self.words = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.ngrams = (nn.EmbeddingBag(ngram_buckets + 1, embed_dim, mode="mean", padding_idx=0)
                       if ngram_buckets > 0 else None)

    def forward(self, ids: torch.Tensor, ngrams: torch.Tensor | None = None) -> torch.Tensor:
        x = self.words(self.word_dropout(ids))
        if self.ngrams is not None:
            if ngrams is None:
                raise ValueError("this model adds character n-grams to its embeddings: give ngrams (B, T, K)")
            b, t, k = ngrams.shape
            if torch.compiler.is_exporting():  # the bag's mean over non-padding ids in plain ops (an exported
                # EmbeddingBag becomes ONNX's Loop over every token: 10x slower than the checkpoint on a batch)
                grams = nn.functional.embedding(ngrams, self.ngrams.weight)
                keep = (ngrams != 0).unsqueeze(-1).to(grams.dtype)
                x = x + (grams * keep).sum(2) / keep.sum(2).clamp(min=1)
            else:
                x = x + self.ngrams(ngrams.reshape(b * t, k)).view(b, t, -1)
        return x


class RNNClassifier(nn.Module):
    """Embedding -> (bidirectional) LSTM or GRU over the packed sequence -> pooling over time -> dropout ->
    linear. pooling: max, mean, attention (a learnt query scores each step; masked softmax) or max_mean
    (both, concatenated)."""

    #: the layer of class scores, one row per class (the classification task's output_layer)
    output_layer = "out"

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 300, hidden: int = 256,
                 layers: int = 1, cell: str = "lstm", bidirectional: bool = True, pooling: str = "max",
                 dropout: float = 0.5, embed_dropout: float = 0.3, word_dropout: float = 0.0,
                 pad_id: int = 0, unk_id: int = 3, ngram_buckets: int = 0):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"model.cell={cell!r}: choose lstm or gru")
        if pooling not in POOLINGS:
            raise ValueError(f"model.pooling={pooling!r}: choose one of {', '.join(POOLINGS)}")
        for key, value in (("embed_dim", embed_dim), ("hidden", hidden), ("layers", layers)):
            if value < 1:
                raise ValueError(f"model.{key}={value} should be a positive integer")
        self.pooling = pooling
        self.embed = TokenEmbedding(vocab_size, embed_dim, pad_id, unk_id, ngram_buckets, word_dropout)
        self.embed_dropout = nn.Dropout(embed_dropout)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(embed_dim, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                       dropout=dropout if layers > 1 else 0.0)
        width = hidden * (2 if bidirectional else 1)
        self.attention = nn.Linear(width, 1) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(width * (2 if pooling == "max_mean" else 1), num_classes)
        self.last_attention: torch.Tensor | None = None  # (B, T) weights of the last forward, for plots

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, ngrams: torch.Tensor | None = None,
                packed: bool = True) -> torch.Tensor:
        """packed=False gives the same result without packed sequences (src.models.recurrence.scan_rnn): what
        torch.export and ONNX can trace with inputs of any length."""
        x = self.embed_dropout(self.embed(ids, ngrams))
        if packed:
            seqs = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            h, _ = self.rnn(seqs)
            h, _ = pad_packed_sequence(h, batch_first=True, total_length=ids.shape[1])  # padded steps are 0
        else:
            h, _ = scan_rnn(self.rnn, x, lengths.clamp(min=1))
        mask = mask_of(lengths, h.shape[1])
        if self.pooling == "attention":
            scores = self.attention(h).squeeze(-1).masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=1)
            self.last_attention = weights.detach()
            pooled = torch.bmm(weights.unsqueeze(1), h).squeeze(1)
        else:
            mean = h.sum(1) / lengths.clamp(min=1).unsqueeze(1).to(h.dtype)
            top = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
            pooled = {"max": top, "mean": mean, "max_mean": torch.cat([top, mean], dim=1)}[self.pooling]
        return self.out(self.dropout(pooled))


class TextCNN(nn.Module):
    """Kim (2014): embedding -> parallel 1-D convolutions of several widths -> ReLU -> max over time ->
    dropout -> linear. The convolutions are "wide" (padded by width - 1 on both sides), so a text shorter
    than a filter is still read."""

    #: the layer of class scores, one row per class (the classification task's output_layer)
    output_layer = "out"

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 300, kernel_sizes=(3, 4, 5),
                 channels: int = 100, dropout: float = 0.5, embed_dropout: float = 0.0, word_dropout: float = 0.0,
                 pad_id: int = 0, unk_id: int = 3, ngram_buckets: int = 0):
        super().__init__()
        kernel_sizes = [int(k) for k in kernel_sizes]
        if not kernel_sizes or min(kernel_sizes) < 1:
            raise ValueError(f"model.kernel_sizes={kernel_sizes} should be a list of positive widths, e.g. [3,4,5]")
        if channels < 1:
            raise ValueError(f"model.channels={channels} should be a positive integer")
        self.embed = TokenEmbedding(vocab_size, embed_dim, pad_id, unk_id, ngram_buckets, word_dropout)
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, k, padding=k - 1) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(channels * len(kernel_sizes), num_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, ngrams: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed_dropout(self.embed(ids, ngrams)).transpose(1, 2)  # (B, E, T)
        pooled = []
        for conv in self.convs:
            k = conv.kernel_size[0]
            y = torch.relu(conv(x))  # (B, C, T + k - 1); output j reads tokens j-k+1 .. j
            keep = mask_of(lengths.clamp(min=1) + k - 1, y.shape[2])  # windows that touch the text
            pooled.append(y.masked_fill(~keep.unsqueeze(1), float("-inf")).amax(2))
        return self.out(self.dropout(torch.cat(pooled, dim=1)))
