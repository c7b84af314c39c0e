"""Single-input latency of an exported model beside predict.py's work in-process, and the files' sizes.

    python benchmarks/export_latency.py ckpt_path=<file.ckpt> input=<path or text> [repeats=200]

Exports the checkpoint to ONNX (float and quantize=dynamic) and to torch.export, then times
one input at a time, alternating the ways in one process (so that the machine's noise falls on all alike): the
checkpoint's task (predict_batch, as predict.py runs it after loading), ONNX Runtime (float, int8) and the
torch.export program. Reading and preparing the input (read_input, collate_inputs) is timed once and shared by all,
as a server would do it once per request whatever runs the network. Prints medians (ms) and ratios. Translation
models are timed through translate.py's decoding loop (beam as the checkpoint decodes), over each kind of graph.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> None:
    options = dict(a.split("=", 1) for a in argv)
    ckpt, raw, repeats = options["ckpt_path"], options["input"], int(options.get("repeats", 200))
    warnings.filterwarnings("ignore")
    import torch
    from hydra.utils import get_class

    from src.checkpoint import load_task
    from src.export import export

    torch.set_num_threads(int(options.get("threads", torch.get_num_threads())))
    task = load_task(ckpt).eval()
    data_cls, info = get_class(task.hparams.data["_target_"]), task.data_info
    started = time.perf_counter()
    batch = data_cls.collate_inputs([data_cls.read_input(raw, info)], info)
    read_ms = (time.perf_counter() - started) * 1000
    out = Path(tempfile.mkdtemp(prefix="export-latency-"))
    ways, sizes = {"checkpoint (predict_batch)": lambda: task.predict_batch(batch, top_k=3)}, {}
    folder = export(ckpt, "onnx", str(out / "onnx"), quantize="dynamic")
    if "decoding" in __import__("json").loads((folder / "model.json").read_text()):
        sys.path.insert(0, str(folder))
        from translate import Translator

        pt2 = export(ckpt, "torch_export", str(out / "pt2"))
        for label, where, int8 in (("onnx runtime", folder, False), ("onnx runtime int8", folder, True),
                                   ("torch.export (.pt2)", pt2, False)):
            translator = Translator(where, int8=int8)
            ways[f"{label} (translate.py)"] = lambda t=translator: t.translate([raw])
            graphs = __import__("json").loads((where / "model.json").read_text())["graphs"]
            sizes[f"{label} (translate.py)"] = sum((where / (g["int8"]["file"] if int8 else g["file"])).stat().st_size
                                                   for g in graphs)
    else:
        import onnxruntime as ort

        _, inputs, _, _ = task.export_graphs(batch)["model"]
        feeds = {k: v.numpy() for k, v in inputs.items()}
        for label, file in (("onnx runtime", "model.onnx"), ("onnx runtime int8", "model.int8.onnx")):
            session = ort.InferenceSession(str(folder / file), providers=["CPUExecutionProvider"])
            ways[label] = (lambda s=session: s.run(None, feeds))
            sizes[label] = (folder / file).stat().st_size
        pt2 = export(ckpt, "torch_export", str(out / "pt2"))
        program = torch.export.load(str(pt2 / "model.pt2")).module()
        args = tuple(inputs.values())
        ways["torch.export (.pt2)"] = lambda: program(*args)
        sizes["torch.export (.pt2)"] = (pt2 / "model.pt2").stat().st_size
    times = {name: [] for name in ways}
    with torch.inference_mode():
        for run in ways.values():  # warm up
            for _ in range(5):
                run()
        for _ in range(repeats):
            for name, run in ways.items():
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)
    base = statistics.median(times["checkpoint (predict_batch)"])
    print(f"checkpoint {ckpt} ({Path(ckpt).stat().st_size / 1e6:.1f} MB); input read and prepared once: "
          f"{read_ms:.2f} ms; {repeats} runs each, alternating, {torch.get_num_threads()} threads")
    print(f"{'way':32s} {'median ms':>10s} {'p90 ms':>8s} {'vs checkpoint':>14s} {'file MB':>8s}")
    for name, values in times.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(0.9 * len(values))]
        size = sizes.get(name)
        print(f"{name:32s} {median:10.3f} {p90:8.3f} {base / median:13.2f}x "
              f"{'' if size is None else f'{size / 1e6:8.2f}'}")


if __name__ == "__main__":
    main(sys.argv[1:])
