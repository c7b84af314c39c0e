"""Translate with an exported translator (python export.py ckpt_path=<translation checkpoint>), using only numpy,
onnxruntime and tokenizers (a format=torch_export folder: torch instead of onnxruntime), no gradlab. export.py copies
this file into the export folder as translate.py:

    python translate.py "twenty-three thousand, four hundred and five"      # from inside the folder
    python translate.py --beam 1 "one" "two"                                 # greedy

It runs encoder.onnx once per batch and decoder.onnx once per output token, with the beam search gradlab's
predict.py uses (src/models/seq2seq.py Seq2Seq.beam_search): finished hypotheses stay in the beam at no cost, and
the winner is chosen by log-probability / ((5 + length) / 6) ** length_penalty.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


class Program:
    """A torch.export program (.pt2, torch.export.load) answering as an ONNX Runtime session does: numpy in and out."""

    def __init__(self, path: Path, outputs: list[str]):
        import torch

        self.torch, self.module, self.outputs = torch, torch.export.load(str(path)).module(), outputs

    def get_outputs(self):
        return [type("Output", (), {"name": n}) for n in self.outputs]

    def run(self, _, feeds: dict) -> list[np.ndarray]:
        with self.torch.no_grad():
            out = self.module(*(self.torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()))
        return [o.numpy() for o in out]


class Translator:
    def __init__(self, folder: str | Path, providers: list[str] | None = None, int8: bool = False):
        """int8: the graphs export.py quantize=dynamic wrote beside the float ones (<graph>.int8.onnx)."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        spec = json.loads((folder / "model.json").read_text())
        self.settings = spec["decoding"]
        graphs = {g["name"]: g for g in spec["graphs"]}
        if spec["format"] == "torch_export":
            self.encoder, self.decoder = (Program(folder / graphs[n]["file"], [o["name"] for o in graphs[n]["outputs"]])
                                          for n in ("encoder", "decoder"))
        else:
            import onnxruntime as ort

            providers = providers or ["CPUExecutionProvider"]
            files = [folder / (graphs[n]["int8"]["file"] if int8 else graphs[n]["file"])
                     for n in ("encoder", "decoder")]
            self.encoder, self.decoder = (ort.InferenceSession(str(f), providers=providers) for f in files)
        self.src_tok = Tokenizer.from_file(str(folder / spec["preprocess"]["src_tokenizer_file"]))
        self.tgt_tok = Tokenizer.from_file(str(folder / spec["preprocess"]["tgt_tokenizer_file"]))
        self.states = ["h", "c"] if self.settings["cell"] == "lstm" else ["h"]

    def encode(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = [self.src_tok.encode(s.strip(), add_special_tokens=False).ids + [self.settings["eos_id"]]
               for s in sentences]
        src = np.full((len(ids), max(map(len, ids))), self.settings["pad_id"], dtype=np.int64)
        for i, row in enumerate(ids):
            src[i, :len(row)] = row
        return src, np.array([len(r) for r in ids], dtype=np.int64)

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.settings["eos_id"] in ids:
            ids = ids[:ids.index(self.settings["eos_id"])]
        return self.tgt_tok.decode([i for i in ids if i >= self.settings["special_tokens"]], skip_special_tokens=True)

    def translate(self, sentences: list[str], beam_size: int | None = None, attention: bool = False) -> list[tuple]:
        """[(translation, log-probability)] of each sentence; with attention, (translation, log-probability, table):
        the table holds the source and output tokens and each output token's attention weights over the source."""
        s = self.settings
        K = int(beam_size or s["beam_size"])
        penalty_power = s["length_penalty"] if K > 1 else 0.0
        src, src_len = self.encode(sentences)
        B = len(sentences)
        names = [o.name for o in self.encoder.get_outputs()]
        out = dict(zip(names, self.encoder.run(None, {"src": src, "src_len": src_len})))
        rep = lambda x, axis=0: np.repeat(x, K, axis=axis)  # noqa: E731 - (B, ...) -> (B*K, ...)
        memory, mask, keys, feed = rep(out["memory"]), rep(out["mask"]), rep(out["keys"]), rep(out["feed"])
        states = [rep(out[n], axis=1) for n in self.states]
        token = np.full(B * K, s["bos_id"], dtype=np.int64)
        scores = np.zeros((B, K), dtype=np.float32)
        scores[:, 1:] = -np.inf
        finished = np.zeros((B, K), dtype=bool)
        lengths = np.zeros((B, K), dtype=np.int64)
        history = np.zeros((B, K, 0), dtype=np.int64)
        attn = np.zeros((B, K, 0, src.shape[1]), dtype=np.float32)
        max_len = min(int(s["max_decode_len"]), int(src_len.max()) * 2 + 10)
        rows = np.arange(B)[:, None]
        for _ in range(max_len):
            feeds = {"token": token, "feed": feed, **dict(zip(self.states, states)), "keys": keys, "memory": memory,
                     "mask": mask}
            logp, feed, *states, weights = self.decoder.run(None, feeds)
            logp = logp.reshape(B, K, -1)
            logp = np.where(finished[:, :, None], -np.inf, logp)
            logp[:, :, s["pad_id"]] = np.where(finished, 0.0, -np.inf)
            V = logp.shape[-1]
            total = (scores[:, :, None] + logp).reshape(B, K * V)
            flat = np.argsort(-total, axis=1, kind="stable")[:, :K]
            scores = np.take_along_axis(total, flat, axis=1)
            beam, token = flat // V, flat % V
            index = (beam + np.arange(B)[:, None] * K).reshape(-1)
            feed = feed[index]
            states = [st[:, index] for st in states]
            history = np.concatenate([history[rows, beam], token[:, :, None]], axis=2)
            if attention:  # each new token attended as its parent beam did
                attn = np.concatenate([attn[rows, beam], weights.reshape(B, K, 1, -1)[rows, beam]], axis=2)
            was_finished = finished[rows, beam]
            lengths = lengths[rows, beam] + (~was_finished)
            finished = was_finished | (token == s["eos_id"])
            token = token.reshape(-1).astype(np.int64)
            if finished.all():
                break
        penalty = ((5.0 + lengths) / 6.0) ** penalty_power if penalty_power else np.ones_like(scores)
        best = (scores / penalty).argmax(axis=1)
        out = [(self.decode(history[b, best[b]]), float(scores[b, best[b]])) for b in range(B)]
        if not attention:
            return out
        tables = []
        for b in range(B):
            hyp = [int(t) for t in history[b, best[b]]]
            hyp = hyp[:hyp.index(s["eos_id"]) + 1] if s["eos_id"] in hyp else hyp
            n = int(src_len[b])
            tables.append({"source": [self.src_tok.id_to_token(int(t)) for t in src[b, :n]],
                           "target": [self.tgt_tok.id_to_token(t) for t in hyp],
                           "weights": np.round(attn[b, best[b], :len(hyp), :n], 4).tolist()})
        return [(text, logp, table) for (text, logp), table in zip(out, tables)]


def main(argv: list[str]) -> int:
    beam = None
    if len(argv) >= 2 and argv[0] == "--beam":
        beam, argv = int(argv[1]), argv[2:]
    if not argv:
        print('usage: python translate.py [--beam K] "a sentence" ["another" ...]', file=sys.stderr)
        return 2
    translator = Translator(Path(__file__).resolve().parent)
    for sentence, (text, logp) in zip(argv, translator.translate(argv, beam)):
        print(json.dumps({"input": sentence, "translation": text, "log_prob": round(logp, 4)}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
