"""A recurrent encoder-decoder with attention (Bahdanau et al., 2015; Luong et al., 2015).

Shapes: B batch, S source length, T target length, V vocabulary, H encoder hidden size per direction,
D decoder hidden size. Token id conventions (pad, bos, eos) are passed in; padding is masked everywhere:
packed sequences in the encoder, -inf attention scores on padded source positions, ignored in the loss.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from src.models.recurrence import scan_rnn

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def _rnn(cell: str, *args, **kwargs) -> nn.RNNBase:
    if cell not in CELLS:
        raise ValueError(f"model.cell={cell} should be one of {sorted(CELLS)}")
    return CELLS[cell](*args, **kwargs)


class Attention(nn.Module):
    """Scores a decoder state against the encoder outputs (the memory) and returns context and weights.

    additive (Bahdanau): v^T tanh(W q + U k); dot (Luong): q . k; general (Luong): q^T W k. Keys are the
    memory projected once per sentence (`keys()`), so a decoding step costs one matrix product.
    """

    def __init__(self, kind: str, query_dim: int, memory_dim: int, attn_dim: int | None = None):
        super().__init__()
        if kind not in ("additive", "dot", "general"):
            raise ValueError(f"model.attention={kind} should be additive, dot or general")
        self.kind = kind
        if kind == "additive":
            attn_dim = attn_dim or query_dim
            self.key_proj = nn.Linear(memory_dim, attn_dim, bias=False)
            self.query_proj = nn.Linear(query_dim, attn_dim, bias=True)
            self.v = nn.Linear(attn_dim, 1, bias=False)
        elif kind == "general":
            self.key_proj = nn.Linear(memory_dim, query_dim, bias=False)
        else:  # dot: memory and query must live in one space; project the memory when they differ
            self.key_proj = nn.Identity() if memory_dim == query_dim else nn.Linear(memory_dim, query_dim, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, D), keys (B, S, A), memory (B, S, M), mask (B, S) true at real tokens -> (B, M), (B, S)"""
        if self.kind == "additive":
            scores = self.v(torch.tanh(keys + self.query_proj(query)[:, None, :])).squeeze(-1)
        else:
            scores = torch.bmm(keys, query[:, :, None]).squeeze(-1)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights[:, None, :], memory).squeeze(1), weights


class Seq2Seq(nn.Module):
    """Embedding + bidirectional GRU/LSTM encoder; GRU/LSTM decoder with attention and input feeding.

    Each decoder step reads the previous target token and the previous attentional vector (input feeding),
    attends to the encoder outputs with its new top-layer state, and predicts from
    tanh(W [state; context]). With tie_embeddings the output layer shares the target embedding matrix
    (needs emb_dim == dec_hidden).
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2,
                 cell: str = "gru", emb_dim: int = 256, hidden: int = 256, layers: int = 1, dropout: float = 0.2,
                 attention: str = "general", tie_embeddings: bool = False, share_src_tgt_embeddings: bool = False):
        super().__init__()
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.cell, self.layers, self.hidden = cell, layers, hidden
        dec_hidden = 2 * hidden  # the decoder is as wide as the bidirectional encoder
        self.src_emb = nn.Embedding(src_vocab_size, emb_dim, padding_idx=pad_id)
        if share_src_tgt_embeddings:
            if src_vocab_size != tgt_vocab_size:
                raise ValueError("model.share_src_tgt_embeddings needs a joint vocabulary (data.shared_vocab=true)")
            self.tgt_emb = self.src_emb
        else:
            self.tgt_emb = nn.Embedding(tgt_vocab_size, emb_dim, padding_idx=pad_id)
        self.encoder = _rnn(cell, emb_dim, hidden, layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.bridge = nn.Linear(2 * hidden, dec_hidden)
        self.decoder = _rnn(cell, emb_dim + dec_hidden, dec_hidden, layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.attention = Attention(attention, dec_hidden, 2 * hidden)
        self.combine = nn.Linear(dec_hidden + 2 * hidden, dec_hidden, bias=False)
        self.dropout = nn.Dropout(dropout)
        if tie_embeddings:
            if emb_dim != dec_hidden:
                raise ValueError(f"model.tie_embeddings needs model.emb_dim == 2 * model.hidden ({dec_hidden}), "
                                 f"not {emb_dim}")
            self.out = nn.Linear(dec_hidden, tgt_vocab_size, bias=True)
            self.out.weight = self.tgt_emb.weight
        else:
            self.out = nn.Linear(dec_hidden, tgt_vocab_size)

    # -- encoder ---------------------------------------------------------------------------------------
    def encode(self, src: Tensor, src_len: Tensor, packed: bool = True):
        """src (B, S), src_len (B,) -> memory (B, S, 2H), mask (B, S), initial decoder state. packed=False gives the
        same without packed sequences (src.models.recurrence.scan_rnn), for torch.export and ONNX."""
        emb = self.dropout(self.src_emb(src))
        if packed:
            out, state = self.encoder(pack_padded_sequence(emb, src_len.cpu(), batch_first=True,
                                                           enforce_sorted=False))
            memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        else:
            memory, state = scan_rnn(self.encoder, emb, src_len)
        mask = src != self.pad_id

        def bridge(h: Tensor) -> Tensor:  # (2*layers, B, H) -> (layers, B, 2H) -> (layers, B, D)
            h = h.view(self.layers, 2, h.shape[1], self.hidden).transpose(1, 2).reshape(self.layers, h.shape[1], -1)
            return torch.tanh(self.bridge(h))

        state = (bridge(state[0]), bridge(state[1])) if self.cell == "lstm" else bridge(state)
        return memory, mask, state

    # -- one decoder step ------------------------------------------------------------------------------
    def _advance(self, emb: Tensor, feed: Tensor, state, keys: Tensor, memory: Tensor, mask: Tensor):
        """emb (B, E) of the previous token, feed (B, D) the previous attentional vector -> feed, state, weights"""
        out, state = self.decoder(torch.cat([emb, feed], dim=-1)[:, None, :], state)
        query = out[:, 0]
        context, weights = self.attention(query, keys, memory, mask)
        return torch.tanh(self.combine(torch.cat([query, context], dim=-1))), state, weights

    def step(self, token: Tensor, feed: Tensor, state, keys: Tensor, memory: Tensor, mask: Tensor):
        """token (B,), feed (B, D) the previous attentional vector -> logits (B, V), feed, state, weights (B, S)"""
        feed, state, weights = self._advance(self.dropout(self.tgt_emb(token)), feed, state, keys, memory, mask)
        return self.out(self.dropout(feed)), feed, state, weights

    def _start(self, src: Tensor, src_len: Tensor, packed: bool = True):
        memory, mask, state = self.encode(src, src_len, packed)
        feed = memory.new_zeros(src.shape[0], self.decoder.hidden_size)
        return memory, mask, state, feed, self.attention.keys(memory)

    # -- training --------------------------------------------------------------------------------------
    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0) -> Tensor:
        """Logits (B, T, V) for predicting tgt_in shifted by one. With teacher_forcing < 1 each step feeds, for
        each sentence with that probability, the reference token, else the model's own previous guess."""
        memory, mask, state, feed, keys = self._start(src, src_len)
        if teacher_forcing >= 1.0:  # embeddings and the output layer once for all steps
            emb, feeds = self.dropout(self.tgt_emb(tgt_in)), []
            for t in range(tgt_in.shape[1]):
                feed, state, _ = self._advance(emb[:, t], feed, state, keys, memory, mask)
                feeds.append(feed)
            return self.out(self.dropout(torch.stack(feeds, dim=1)))
        logits, token = [], tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            if t > 0:
                token = tgt_in[:, t]
                if teacher_forcing < 1.0:
                    own = logits[-1].argmax(-1)
                    use_ref = torch.rand(token.shape, device=token.device) < teacher_forcing
                    token = torch.where(use_ref | (token == self.pad_id), token, own)
            step_logits, feed, state, _ = self.step(token, feed, state, keys, memory, mask)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def score(self, src: Tensor, src_len: Tensor, tgt: Tensor) -> Tensor:
        """Log-probability (B,) of each target (BOS ... EOS, padded) under teacher forcing."""
        logp = torch.log_softmax(self.forward(src, src_len, tgt[:, :-1]).float(), dim=-1)
        gold = tgt[:, 1:]
        token_logp = logp.gather(-1, gold[:, :, None]).squeeze(-1)
        return (token_logp * (gold != self.pad_id)).sum(-1)

    # -- decoding --------------------------------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, src: Tensor, src_len: Tensor, max_len: int = 100):
        """-> tokens (B, L) ending in EOS then PAD, log-probabilities (B,), attention weights (B, L, S)."""
        tokens, scores, attn = self.beam_search(src, src_len, beam_size=1, max_len=max_len, length_penalty=0.0,
                                                return_attention=True)
        return tokens, scores, attn

    @torch.no_grad()
    def beam_search(self, src: Tensor, src_len: Tensor, beam_size: int = 5, max_len: int = 100,
                    length_penalty: float = 1.0, return_attention: bool = False):
        """Batched beam search. Returns the best hypothesis per sentence (B, L) (EOS-terminated, PAD after),
        its log-probability (B,) before any length penalty, and (with return_attention) its attention weights.

        Finished hypotheses stay in the beam with a frozen score (they can only be followed by PAD, at no cost),
        so the search ends when every beam of every sentence has finished or max_len is reached. The winner is
        chosen by score / ((5 + length) / 6) ** length_penalty (GNMT); length_penalty=0 is plain log-probability.
        beam_size=1 is greedy decoding.
        """
        B, K = src.shape[0], beam_size
        memory, mask, state, feed, keys = self._start(src, src_len)
        expand = lambda x: x.repeat_interleave(K, dim=0)  # noqa: E731 - (B, ...) -> (B*K, ...)
        memory, mask, keys, feed = expand(memory), expand(mask), expand(keys), expand(feed)
        state = tuple(s.repeat_interleave(K, dim=1) for s in state) if self.cell == "lstm" else \
            state.repeat_interleave(K, dim=1)
        token = src.new_full((B * K,), self.bos_id)
        scores = src.new_zeros(B, K, dtype=torch.float)
        scores[:, 1:] = float("-inf")  # all beams start identical: keep one
        finished = torch.zeros(B, K, dtype=torch.bool, device=src.device)
        lengths = torch.zeros(B, K, dtype=torch.long, device=src.device)
        history = src.new_zeros(B, K, 0)
        attn_history = memory.new_zeros(B, K, 0, src.shape[1]) if return_attention else None
        for _ in range(max_len):
            logits, feed, state, weights = self.step(token, feed, state, keys, memory, mask)
            logp = torch.log_softmax(logits.float(), dim=-1).view(B, K, -1)
            # a finished hypothesis continues with PAD only, at no cost
            done = finished[:, :, None]
            logp = torch.where(done, torch.full_like(logp, float("-inf")), logp)
            logp[:, :, self.pad_id] = torch.where(finished, 0.0, float("-inf"))
            V = logp.shape[-1]
            total = (scores[:, :, None] + logp).view(B, K * V)
            scores, flat = total.topk(K, dim=-1)
            beam, token = flat // V, flat % V  # (B, K)
            index = (beam + torch.arange(B, device=src.device)[:, None] * K).view(-1)
            feed = feed[index]
            state = tuple(s[:, index] for s in state) if self.cell == "lstm" else state[:, index]
            history = torch.cat([history.gather(1, beam[:, :, None].expand(-1, -1, history.shape[2])),
                                 token[:, :, None]], dim=2)
            if return_attention:  # each new token attended as its parent beam did
                parent = (torch.arange(B, device=src.device)[:, None], beam)
                attn_history = torch.cat([attn_history[parent], weights.view(B, K, 1, -1)[parent]], dim=2)
            was_finished = finished.gather(1, beam)
            lengths = lengths.gather(1, beam) + (~was_finished).long()
            finished = was_finished | (token == self.eos_id)
            token = token.view(-1)
            if finished.all():
                break
        penalty = ((5.0 + lengths.float()) / 6.0) ** length_penalty if length_penalty else torch.ones_like(scores)
        best = (scores / penalty).argmax(dim=-1)
        rows = torch.arange(B, device=src.device)
        out = (history[rows, best], scores[rows, best])
        return (*out, attn_history[rows, best]) if return_attention else out
