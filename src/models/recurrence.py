"""A recurrent layer (nn.LSTM or nn.GRU, any depth, one or two directions) run over padded sequences without packing,
as one `scan` per layer and direction over its own weights: what `torch.export` keeps as a loop of any length (it
unrolls nn.LSTM/nn.GRU over the example's length, and cannot trace packed sequences), and what its ONNX exporter
writes as a Scan of any length.

It gives what the module gives over `pack_padded_sequence(x, lengths)` padded back with zeros, and the same final
state (each text's state at its last token; the backward direction reads each text reversed within its own length),
in eval mode (no dropout between layers). Used by the export graphs only: training keeps cuDNN's and oneDNN's
packed kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch._higher_order_ops.scan import scan


def mask_of(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) True at the positions inside each sequence."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def _lstm_step(w_hh: torch.Tensor, b_hh: torch.Tensor | None):
    def step(carry, xs):
        h, c = carry
        gates, keep = xs  # (B, 4H) the input's share, (B, 1) true inside the sequence
        i, f, g, o = (gates + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return ((torch.where(keep, h_new, h), torch.where(keep, c_new, c)),
                torch.where(keep, h_new, torch.zeros_like(h_new)))
    return step


def _gru_step(w_hh: torch.Tensor, b_hh: torch.Tensor | None):
    def step(h, xs):
        gates, keep = xs  # (B, 3H), (B, 1)
        r_x, z_x, n_x = gates.chunk(3, dim=-1)
        r_h, z_h, n_h = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
        h_new = (1 - z) * torch.tanh(n_x + r * n_h) + z * h
        return torch.where(keep, h_new, h), torch.where(keep, h_new, torch.zeros_like(h_new))
    return step


def scan_rnn(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor):
    """x (B, T, input) batch-first, lengths (B,) >= 1 -> outputs (B, T, directions x H), zero after each length,
    and the final state as the module returns it: h (layers x directions, B, H), and for an LSTM (h, c)."""
    if not isinstance(rnn, (nn.LSTM, nn.GRU)) or not rnn.batch_first or getattr(rnn, "proj_size", 0):
        raise ValueError(f"scan_rnn takes a batch-first nn.LSTM or nn.GRU without projections, not {rnn}")
    lstm = isinstance(rnn, nn.LSTM)
    steps = x.shape[1]
    mask = mask_of(lengths, steps)
    t = torch.arange(steps, device=x.device)[None, :]
    order = torch.where(mask, lengths[:, None] - 1 - t, t)[:, :, None]  # reverses the first `length` steps of a row

    def flip(h: torch.Tensor) -> torch.Tensor:
        return h.gather(1, order.expand_as(h))

    keep = mask.transpose(0, 1)[:, :, None]  # (T, B, 1)
    finals: list[list[torch.Tensor]] = [[], []]
    h = x
    for layer in range(rnn.num_layers):
        outs = []
        for direction in range(2 if rnn.bidirectional else 1):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh = getattr(rnn, f"weight_ih{suffix}"), getattr(rnn, f"weight_hh{suffix}")
            b_ih, b_hh = (getattr(rnn, f"bias_ih{suffix}"), getattr(rnn, f"bias_hh{suffix}")) if rnn.bias else (None,
                                                                                                             None)
            gates = F.linear(flip(h) if direction else h, w_ih, b_ih).transpose(0, 1)  # (T, B, G), all steps at once
            zero = x.new_zeros(x.shape[0], rnn.hidden_size)
            if lstm:
                (last_h, last_c), out = scan(_lstm_step(w_hh, b_hh), (zero, zero.clone()), (gates, keep))
                finals[1].append(last_c)
            else:
                last_h, out = scan(_gru_step(w_hh, b_hh), zero, (gates, keep))
            finals[0].append(last_h)
            out = out.transpose(0, 1)
            outs.append(flip(out) if direction else out)
        h = torch.cat(outs, dim=-1)
    state_h = torch.stack(finals[0])
    return h, ((state_h, torch.stack(finals[1])) if lstm else state_h)
