"""Test-split accuracy of a checkpoint's exported graphs: ONNX float, ONNX int8 (quantize=dynamic) and torch.export,
beside the checkpoint itself, on the same batches.

    python benchmarks/export_accuracy.py ckpt_path=<file.ckpt> [data.<key>=<value> ...]

Classifiers: accuracy of each, and how often the int8 graph's label differs from the float graph's. Translators
(through translate.py's decoding loop, beam as the checkpoint decodes): exact match and sacreBLEU of each. The data
module is the checkpoint's, as eval.py builds it (data.<key>= changes a key, e.g. data.data_dir=../shared/data).
Everything here is deterministic: the figures repeat on one machine.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> None:
    options = dict(a.split("=", 1) for a in argv)
    ckpt = options.pop("ckpt_path")
    warnings.filterwarnings("ignore")
    import torch

    from src.checkpoint import load_task
    from src.data.audio.base import from_int16
    from src.export import export
    from src.pipeline import build_data

    task = load_task(ckpt).eval()
    data_cfg = dict(task.hparams.data)
    data_cfg.update({k.removeprefix("data."): v for k, v in options.items() if k.startswith("data.")})
    datamodule = build_data(data_cfg)
    datamodule.use_info(task.data_info)
    datamodule.prepare_data()
    datamodule.setup("test")
    out = Path(tempfile.mkdtemp(prefix="export-accuracy-"))
    onnx = export(ckpt, "onnx", str(out / "onnx"), quantize="dynamic")
    pt2 = export(ckpt, "torch_export", str(out / "pt2"))
    seconds: dict[str, float] = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        return result

    if "decoding" in json.loads((onnx / "model.json").read_text()):
        import sacrebleu

        sys.path.insert(0, str(onnx))
        from translate import Translator

        ways = {"onnx": Translator(onnx), "onnx int8": Translator(onnx, int8=True), "torch.export": Translator(pt2)}
        hyps, refs = {name: [] for name in ["checkpoint", *ways]}, []
        with torch.inference_mode():
            for batch in datamodule.test_dataloader():
                refs += batch["ref"]
                hyps["checkpoint"] += [r["translation"] for r in timed("checkpoint", task.predict_batch, batch)]
                for name, translator in ways.items():
                    hyps[name] += [t for t, _ in timed(name, translator.translate, batch["src_text"])]
        print(f"{ckpt}: {len(refs)} test sentences")
        print(f"{'way':14s} {'exact':>7s} {'BLEU':>7s} {'same as float':>14s} {'seconds':>8s}")
        for name, got in hyps.items():
            exact = sum(h == r for h, r in zip(got, refs)) / len(refs)
            same = sum(a == b for a, b in zip(got, hyps["onnx"])) / len(refs)
            print(f"{name:14s} {exact:7.4f} {sacrebleu.corpus_bleu(got, [refs]).score:7.2f} {same:14.4f} "
                  f"{seconds[name]:8.1f}")
        return
    import onnxruntime as ort

    sessions = {name: ort.InferenceSession(str(onnx / file), providers=["CPUExecutionProvider"])
                for name, file in (("onnx", "model.onnx"), ("onnx int8", "model.int8.onnx"))}
    program = torch.export.load(str(pt2 / "model.pt2")).module()
    labels, preds = [], {name: [] for name in ("checkpoint", *sessions, "torch.export")}
    with torch.inference_mode():
        for batch in datamodule.test_dataloader():
            x, y = task.inputs(batch), task.target(batch)
            if isinstance(x, torch.Tensor) and x.dtype == torch.int16:  # clips kept as int16 in memory: the graph
                x = from_int16(x)  # takes float32 samples, as read_input gives them
            _, inputs, _, _ = task.export_graphs(x)["model"]
            labels.append(y)
            preds["checkpoint"].append(timed("checkpoint", task.predict_proba, x).argmax(-1))
            for name, session in sessions.items():
                feeds = {k: v.numpy() for k, v in inputs.items()}
                preds[name].append(torch.from_numpy(timed(name, session.run, None, feeds)[0]).argmax(-1))
            preds["torch.export"].append(timed("torch.export", program, *inputs.values()).argmax(-1))
    y = torch.cat(labels)
    print(f"{ckpt}: {len(y)} test inputs")
    print(f"{'way':14s} {'accuracy':>9s} {'same as float':>14s} {'seconds':>8s}")
    for name, got in preds.items():
        got = torch.cat(got)
        print(f"{name:14s} {float((got == y).float().mean()):9.4f} "
              f"{float((got == torch.cat(preds['onnx'])).float().mean()):14.4f} {seconds[name]:8.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
