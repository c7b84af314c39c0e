"""A checkpoint -> a folder that runs without gradlab: the network as ONNX (for ONNX Runtime) or as torch.export's
.pt2 (for torch.export.load), model.json saying what goes in and comes out, and the tokenizer of a text task.

The task decides what the exported network computes (src/tasks/base.py Exportable.export_graphs) and the data module
what must be done to an input before it (src/data/base.py: example_inputs, input_spec)."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import torch
from hydra.utils import get_class

from src.checkpoint import load_task, task_name
from src.errors import UserError
from src.records import git
from src.tasks.base import Exportable

log = logging.getLogger(__name__)
FORMATS = {"onnx": "model.onnx", "torch_export": "model.pt2"}  # (a translator: encoder.onnx, decoder.onnx)


TOKENIZERS = {"tokenizer": "tokenizer.json", "src_tokenizer": "src_tokenizer.json",
              "tgt_tokenizer": "tgt_tokenizer.json"}


def _plain(value):
    """A tensor or numpy value of a data module's info, as JSON."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def read_folder(folder: Path) -> tuple[dict, type, dict]:
    """An export folder's model.json, its data module class and the data module's info (tokenizers read back)."""
    spec = json.loads((Path(folder) / "model.json").read_text())
    if "data" not in spec:
        raise UserError(f"{folder}/model.json has no data section: it was written by an older export.py; export "
                        f"the checkpoint again.")
    info = dict(spec["data"]["info"])
    for key, name in TOKENIZERS.items():
        if isinstance(info.get(key), dict):
            info[key] = (Path(folder) / name).read_text()
    return spec, get_class(spec["data"]["module"]), info


def default_folder(ckpt_path: str, fmt: str) -> Path:
    ckpt = Path(ckpt_path)
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "export" / f"{ckpt.stem}-{fmt}"


def _dims(dynamic: dict[str, dict[int, str]], inputs: dict[str, torch.Tensor]):
    """Named dynamic axes -> torch.export's Dim objects, one per name, shared by inputs that share it."""
    made = {}
    shapes = []
    for name in inputs:
        axes = {}
        for axis, dim in dynamic.get(name, {}).items():
            if dim not in made:
                made[dim] = torch.export.Dim(dim, min=1, max=1 << 20)
            axes[axis] = made[dim]
        shapes.append(axes or None)
    return tuple(shapes)


def _versions() -> dict:
    out = {"torch": torch.__version__, "gradlab": git().get("commit")}
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def export(ckpt_path: str, fmt: str = "onnx", out_dir: str | None = None, opset: int = 18, check: bool = True,
           tolerance: float = 1e-4, quantize: str | None = None) -> Path:
    """Write the export folder; returns it. With check, runs each file on the example inputs and refuses one whose
    outputs differ from the checkpoint's by more than tolerance."""
    if fmt not in FORMATS:
        raise UserError(f"format={fmt}: choose one of {', '.join(FORMATS)}.")
    if quantize not in (None, "dynamic") or (quantize and fmt != "onnx"):
        raise UserError(f"quantize={quantize}: the choices are dynamic (with format=onnx) or null.")
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(f"format=onnx needs {', '.join(missing)}: run `uv sync --extra export` (or `pip install "
                            f"onnx onnxscript onnxruntime`), or use format=torch_export.")
    task = load_task(ckpt_path).eval()
    if not isinstance(task, Exportable):
        raise UserError(f"ckpt_path={ckpt_path}: {type(task).__name__} cannot be exported yet (it does not provide "
                        f"export_graphs, src/tasks/base.py Exportable).")
    data_cls, info = get_class(task.hparams.data["_target_"]), task.data_info
    samples = data_cls.example_inputs(info)
    if samples is None:
        raise UserError(f"ckpt_path={ckpt_path}: its data module {data_cls.__name__} has no example_inputs to export "
                        f"with.")
    graphs = task.export_graphs(data_cls.collate_inputs(samples, info))
    folder = Path(out_dir) if out_dir else default_folder(ckpt_path, fmt)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    suffix = Path(FORMATS[fmt]).suffix
    try:
        started, written = time.time(), []
        for name, (module, inputs, dynamic, outputs) in graphs.items():
            file = tmp / f"{name}{suffix}"
            difference = _write(module.eval(), inputs, dynamic, outputs, file, fmt, opset, check, ckpt_path)
            if difference is not None and difference > tolerance:
                raise UserError(f"the exported {name} graph's outputs differ from the checkpoint's by "
                                f"{difference:.2g} (> tolerance={tolerance}): not written. Report it with the "
                                f"checkpoint.")
            if quantize:
                written_int8 = _quantize(file, inputs, {n for n, _ in module.named_parameters()})
            written.append({"name": name, "file": file.name, "checked_max_abs_difference": difference,
                            **({"int8": written_int8} if quantize else {}),
                            "inputs": [{"name": n, "dtype": str(t.dtype).removeprefix("torch."),
                                        "shape": [dynamic.get(n, {}).get(i, d) for i, d in enumerate(t.shape)]}
                                       for n, t in inputs.items()],
                            "outputs": [{"name": n} for n in outputs]})
        seconds = time.time() - started
        first = written[0]
        spec = {"task": task_name(f"{type(task).__module__}.{type(task).__qualname__}"),
                "task_class": f"{type(task).__module__}.{type(task).__qualname__}", "format": fmt,
                "file": first["file"], "checkpoint": str(Path(ckpt_path).resolve()),
                "inputs": first["inputs"], "outputs": first["outputs"], "graphs": written,
                "labels": list(info.get("class_names") or []), "preprocess": data_cls.input_spec(info),
                **task.export_settings(), "opset": opset if fmt == "onnx" else None,
                "checked_max_abs_difference": max((g["checked_max_abs_difference"] or 0.0) for g in written)
                if check else None, "versions": _versions()}
        portable = dict(info)
        for key, name in TOKENIZERS.items():
            if key in info:
                (tmp / name).write_text(info[key])
                spec["preprocess"][f"{key}_file"] = name
                portable[key] = {"file": name}
        # what gradlab's own reading of an input needs (serve.py serves the folder with it); a user needs only
        # "preprocess" above
        spec["data"] = {"module": task.hparams.data["_target_"],
                        "info": json.loads(json.dumps(portable, default=_plain))}
        if "decoding" in spec:  # a translator's decoding loop, to run the graphs with numpy and ONNX Runtime only
            shutil.copy(Path(__file__).with_name("onnx_translate.py"), tmp / "translate.py")
        (tmp / "model.json").write_text(json.dumps(spec, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # what a failed export began
    size = sum((folder / g["file"]).stat().st_size for g in written)
    log.info("exported %s (%s, %.1f MB) in %.1f s%s -> %s", ckpt_path, fmt, size / 1e6, seconds,
             f"; outputs checked: max difference {spec['checked_max_abs_difference']:.1e}" if check else "", folder)
    return folder


def _quantize(file: Path, inputs: dict, parameters: set[str]) -> dict:
    """<graph>.int8.onnx beside <graph>.onnx: int8 weights for the MatMul/Gemm (and LSTM) of learnt weights (ONNX
    Runtime's dynamic quantization); returns its file name and how far its first output is from the float graph's on
    the examples. Products with fixed tensors (a buffer, such as the speech front end's mel filterbank) stay float:
    quantizing the filterbank took FSDD test accuracy from 1.00 to 0.53."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    graph = onnx.load(str(file), load_external_data=False).graph
    fixed = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")
             and not any(i in parameters for i in n.input)]

    int8 = file.with_name(f"{file.stem}.int8.onnx")
    prepared = file.with_name(f"{file.stem}.prep.onnx")
    logging.disable(logging.INFO)  # the quantizer's notes on each tensor it leaves alone
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            try:
                quant_pre_process(str(file), str(prepared), skip_symbolic_shape=True)
            except Exception:  # noqa: BLE001 - the pre-processing is an optimisation; quantize the file as it is
                shutil.copy(file, prepared)
            quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8, nodes_to_exclude=fixed,
                             op_types_to_quantize=["MatMul", "Gemm", "LSTM"],
                             extra_options={"EnableSubgraph": True})  # the recurrent weights inside a Scan
    finally:
        logging.disable(logging.NOTSET)
        prepared.unlink(missing_ok=True)
    a, b = run_exported(file, inputs)[0], run_exported(int8, inputs)[0]
    return {"file": int8.name, "size_bytes": int8.stat().st_size,
            "max_abs_difference_from_float": float(abs(torch.as_tensor(a).float() - torch.as_tensor(b).float()).max())}


def _write(module, inputs: dict, dynamic: dict, outputs: list[str], file: Path, fmt: str, opset: int, check: bool,
           ckpt_path: str) -> float | None:
    """One graph to one file; with check, the largest difference between the file's outputs and the module's."""
    names, args = list(inputs), tuple(inputs.values())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = module(*args)
        try:
            program = torch.export.export(module, args, dynamic_shapes=_dims(dynamic, inputs), strict=False)
        except Exception as e:  # noqa: BLE001 - torch.export's errors have no common base
            first = str(e).strip().splitlines()[0][:160]
            raise UserError(f"ckpt_path={ckpt_path}: torch.export could not trace its network ({type(e).__name__}: "
                            f"{first}). Report it with the checkpoint.") from None
        if fmt == "torch_export":
            torch.export.save(program, file)
        else:  # the exporter's optimiser prints what it folds, and logs each constant: not for the user
            logging.disable(logging.WARNING)
            try:
                with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                    named = tuple(dynamic.get(n) or None for n in names)  # the file's axes keep their names
                    onnx_program = torch.onnx.export(program, args, input_names=names, output_names=outputs,
                                                     opset_version=opset, dynamo=True, verbose=False,
                                                     dynamic_shapes=named)
                    onnx_program.save(str(file))
            finally:
                logging.disable(logging.NOTSET)
    if not check:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = run_exported(file, dict(zip(names, args)))
    expected = expected if isinstance(expected, (tuple, list)) else [expected]
    return max(float((torch.as_tensor(g).float() - e.float()).abs().max()) for g, e in zip(got, expected))


def run_exported(path: Path, inputs: dict[str, torch.Tensor]) -> list:
    """Run an exported file as a user would, without gradlab: ONNX Runtime, or torch.export.load."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        out = torch.export.load(str(path)).module()(*inputs.values())
    return [o.detach() for o in out] if isinstance(out, (tuple, list)) else [out.detach()]
