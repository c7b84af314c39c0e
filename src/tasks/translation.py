"""Translation: a recurrent encoder-decoder trained by teacher forcing, scored by sacreBLEU, chrF and exact match."""
from __future__ import annotations

import math
import time

import sacrebleu
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from src.tasks.base import Exportable, HasExamples, HasSamples, Task, gather_objects
from src.tokens import decode


class Translation(Task, HasSamples, HasExamples, Exportable):
    """data_info: src/tgt tokenizers (JSON), vocabulary sizes, pad/bos/eos ids.

    Logged: train/loss; {val,test}/{loss,ppl,bleu,chrf,exact}. BLEU and chrF are sacreBLEU's corpus scores
    (13a tokenisation, cased) of the detokenised hypotheses against the original reference lines, 0-100.
    Validation decodes with val_beam_size (greedy by default, fast), test with beam_size.
    """

    def __init__(self, *args, label_smoothing: float = 0.1, teacher_forcing: float = 1.0, beam_size: int = 5,
                 val_beam_size: int = 1, length_penalty: float = 1.0, max_decode_len: int = 200,
                 num_samples: int = 5, num_attention_plots: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_smoothing, self.teacher_forcing = label_smoothing, teacher_forcing
        self.beam_size, self.val_beam_size, self.length_penalty = beam_size, val_beam_size, length_penalty
        self.max_decode_len = max_decode_len
        self.num_samples, self.num_attention_plots = num_samples, num_attention_plots
        self.src_tok = Tokenizer.from_str(self.data_info["src_tokenizer"])
        self.tgt_tok = Tokenizer.from_str(self.data_info["tgt_tokenizer"])
        self.pad_id, self.eos_id = self.data_info["pad_id"], self.data_info["eos_id"]
        self._outputs: list = []
        self._nll = [0.0, 0]
        self.samples: list[dict] = []  # a few (source, reference, hypothesis) of the last validation
        self.attention_examples: list[dict] = []  # for the attention plot at test time
        self._train_time: list | None = None  # [start, end] of the training part of an epoch

    def model_kwargs(self):
        d = self.data_info
        return {"src_vocab_size": d["src_vocab_size"], "tgt_vocab_size": d["tgt_vocab_size"], "pad_id": d["pad_id"],
                "bos_id": d["bos_id"], "eos_id": d["eos_id"]}

    # -- training --------------------------------------------------------------------------------------
    def _logits(self, batch, teacher_forcing: float = 1.0):
        return self.net(batch["src"], batch["src_len"], batch["tgt"][:, :-1], teacher_forcing)

    def training_step(self, batch, batch_idx):
        logits = self._logits(batch, self.teacher_forcing)
        gold = batch["tgt"][:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), gold.reshape(-1),
                               ignore_index=self.pad_id, label_smoothing=self.label_smoothing)
        if self.logging_step():
            self.log("train/loss", loss, prog_bar=True, batch_size=gold.shape[0])
        self._tgt_tokens += (gold != self.pad_id).sum()
        return loss

    # -- throughput: target tokens per second of training (validation excluded), one sync per epoch ------
    def _sync_time(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def on_train_epoch_start(self):
        self._tgt_tokens = torch.zeros((), dtype=torch.long, device=self.device)
        self._train_time = [self._sync_time(), None]

    def on_validation_start(self):
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking and self._train_time:
            self._train_time[1] = self._train_time[1] or self._sync_time()

    def on_train_epoch_end(self):
        start, end = self._train_time
        seconds = (end or self._sync_time()) - start
        # summed over ranks: the throughput of the whole job
        self.log("train/tgt_tokens_per_s", int(self._tgt_tokens) / max(seconds, 1e-9), reduce_fx="sum", sync_dist=True)

    # -- evaluation ------------------------------------------------------------------------------------
    def decode(self, src, src_len, beam_size: int):
        max_len = min(self.max_decode_len, int(src_len.max()) * 2 + 10)
        tokens, scores = self.net.beam_search(src, src_len, beam_size=beam_size, max_len=max_len,
                                              length_penalty=self.length_penalty if beam_size > 1 else 0.0)
        return [decode(self.tgt_tok, t) for t in tokens.tolist()], scores

    def _eval_step(self, batch, beam_size: int):
        gold = batch["tgt"][:, 1:]
        logits = self._logits(batch)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), gold.reshape(-1),
                              ignore_index=self.pad_id, reduction="sum")
        self._nll[0] += float(nll)
        self._nll[1] += int((gold != self.pad_id).sum())
        hyps, _ = self.decode(batch["src"], batch["src_len"], beam_size)
        self._outputs += list(zip(batch["src_text"], batch["ref"], hyps))

    def _epoch_end(self, split: str) -> list:
        outputs = gather_objects(self._outputs)
        nll, ntok = (sum(x) for x in zip(*gather_objects([tuple(self._nll)])))
        self._outputs, self._nll = [], [0.0, 0]
        if not outputs:
            return outputs
        _, refs, hyps = zip(*outputs)
        loss = nll / max(1, ntok)
        self.log_dict({f"{split}/loss": loss, f"{split}/ppl": math.exp(min(loss, 50.0)),
                       f"{split}/bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
                       f"{split}/chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
                       f"{split}/exact": sum(h == r for h, r in zip(hyps, refs)) / len(refs)},
                      prog_bar=split == "val")
        return outputs

    def on_validation_epoch_start(self):
        self._outputs, self._nll = [], [0.0, 0]

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, self.val_beam_size)

    def on_validation_epoch_end(self):
        outputs = self._epoch_end("val")
        self.samples = [{"source": s, "reference": r, "hypothesis": h} for s, r, h in outputs[:self.num_samples]]

    def on_test_epoch_start(self):
        self._outputs, self._nll = [], [0.0, 0]
        self.attention_examples = []

    def validation_samples(self) -> list[dict]:
        """A few (source, reference, hypothesis) of the last validation (SamplesTable)."""
        return self.samples

    def test_examples(self) -> list[dict]:
        """Attention weights of a few greedy test translations, with their tokens (AttentionPlot)."""
        return self.attention_examples

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, self.beam_size)
        if len(self.attention_examples) < self.num_attention_plots:
            self._keep_attention(batch)

    def on_test_epoch_end(self):
        self._epoch_end("test")

    def _keep_attention(self, batch):
        n = self.num_attention_plots - len(self.attention_examples)
        src, src_len = batch["src"][:n], batch["src_len"][:n]
        tokens, _, attn = self.net.greedy(src, src_len, max_len=min(self.max_decode_len, int(src_len.max()) * 2 + 10))
        for i in range(src.shape[0]):
            hyp = tokens[i].tolist()
            hyp = hyp[:hyp.index(self.eos_id) + 1] if self.eos_id in hyp else hyp
            s = src[i, :int(src_len[i])].tolist()
            self.attention_examples.append({
                "source": [self.src_tok.id_to_token(t) for t in s],
                "hypothesis": [self.tgt_tok.id_to_token(t) for t in hyp],
                "weights": attn[i, :len(hyp), :len(s)].float().cpu().numpy()})

    # -- export ----------------------------------------------------------------------------------------
    def export_graphs(self, batch):
        """What the field exports of an attention RNN: the encoder (a batch of sources, once) and one decoder step
        (run once per output token by a decoding loop: translate.py, src/onnx_translate.py)."""
        net = self.net
        encoder = Encoder(net).eval()
        with torch.no_grad():
            memory, mask, *state, feed, keys = encoder(batch["src"], batch["src_len"])
        states = ["h", "c"] if net.cell == "lstm" else ["h"]
        step_inputs = {"token": batch["src"][:, 0], "feed": feed, **dict(zip(states, state)), "keys": keys,
                       "memory": memory, "mask": mask}
        b, s = {0: "batch"}, {0: "batch", 1: "source"}
        return {"encoder": (encoder, {"src": batch["src"], "src_len": batch["src_len"]}, {"src": s, "src_len": b},
                            ["memory", "mask", *states, "feed", "keys"]),
                "decoder": ((LSTMDecoderStep if net.cell == "lstm" else DecoderStep)(net), step_inputs,
                            {"token": b, "feed": b, **{n: {1: "batch"} for n in states}, "keys": s, "memory": s,
                             "mask": s},
                            ["log_probs", "next_feed", *(f"next_{n}" for n in states), "weights"])}

    def export_settings(self) -> dict:
        d = self.data_info
        return {"decoding": {"beam_size": self.beam_size, "length_penalty": self.length_penalty,
                             "max_decode_len": self.max_decode_len, "cell": self.net.cell, "pad_id": d["pad_id"],
                             "bos_id": d["bos_id"], "eos_id": d["eos_id"], "special_tokens": 4,
                             "max_len": "min(max_decode_len, 2 x the longest source + 10)",
                             "script": "translate.py"}}

    # -- inference -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_batch(self, batch: dict, top_k: int = 1, details: bool = False) -> list[dict]:
        """The translation (beam_size as at test) and its log-probability; with details, also "attention": the
        source and output tokens and, for each output token, its attention weights over the source tokens."""
        self.eval()
        if not details:
            hyps, scores = self.decode(batch["src"], batch["src_len"], self.beam_size)
            return [{"translation": h, "log_prob": round(float(s), 4)} for h, s in zip(hyps, scores)]
        src, src_len = batch["src"], batch["src_len"]
        tokens, scores, attn = self.net.beam_search(
            src, src_len, beam_size=self.beam_size, max_len=min(self.max_decode_len, int(src_len.max()) * 2 + 10),
            length_penalty=self.length_penalty if self.beam_size > 1 else 0.0, return_attention=True)
        out = []
        for i, (hyp, score) in enumerate(zip(tokens.tolist(), scores.tolist())):
            hyp = hyp[:hyp.index(self.eos_id) + 1] if self.eos_id in hyp else hyp
            source = src[i, :int(src_len[i])].tolist()
            out.append({"translation": decode(self.tgt_tok, hyp), "log_prob": round(float(score), 4),
                        "attention": attention_table([self.src_tok.id_to_token(t) for t in source],
                                                     [self.tgt_tok.id_to_token(t) for t in hyp],
                                                     attn[i, :len(hyp), :len(source)].float().cpu().tolist())})
        return out


def attention_table(source: list[str], target: list[str], weights: list[list[float]]) -> dict:
    """What serve.py's page draws as a heat-map: a row of weights over the source tokens for each output token."""
    return {"source": source, "target": target, "weights": [[round(w, 4) for w in row] for row in weights]}


class Encoder(torch.nn.Module):
    """The exported encoder: sources -> memory, mask, the decoder's first state, the first feed, attention keys."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, src: torch.Tensor, src_len: torch.Tensor):
        memory, mask, state, feed, keys = self.net._start(src, src_len, packed=False)
        states = state if isinstance(state, tuple) else (state,)
        return memory, mask, *states, feed, keys


class DecoderStep(torch.nn.Module):
    """The exported decoder step: previous token, feed and state -> log-probabilities of the next token, the new
    feed and state, and the attention weights."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, token, feed, h, keys, memory, mask):
        logits, feed, h, weights = self.net.step(token, feed, h, keys, memory, mask)
        return torch.log_softmax(logits.float(), dim=-1), feed, h, weights


class LSTMDecoderStep(DecoderStep):
    """The decoder step of an LSTM decoder: its state is two tensors, h and c."""

    def forward(self, token, feed, h, c, keys, memory, mask):
        logits, feed, (h, c), weights = self.net.step(token, feed, (h, c), keys, memory, mask)
        return torch.log_softmax(logits.float(), dim=-1), feed, h, c, weights
