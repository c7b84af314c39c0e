"""export.py: each task's checkpoint to ONNX and to torch.export, run as a user would without gradlab's model code
(ONNX Runtime; torch.export.load), on real inputs, against what predict.py says of the same files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra.utils import get_class

from tests.helpers import (
    SHARED_DATA,
    TINY_IMAGE,
    TINY_SPEECH,
    TINY_TRANSLATION,
    cli,
    digit_images,
    predict_here,
    recordings,
    reviews_csv,
    train_here,
)

FORMATS = ["onnx", "torch_export"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Checkpoints of the image and speech tasks, trained briefly here, and real inputs for each: digits test
    images as PNG files, FSDD recordings (or, without ../shared, tones) as WAV files."""
    root = tmp_path_factory.mktemp("export")
    image, speech = root / "image", root / "speech"
    train_here(image, *TINY_IMAGE)
    pictures = [str(p) for p in digit_images(root / "digits", 12)]
    train_here(speech, *TINY_SPEECH, f"paths.cache_dir={root / 'cache'}")
    wavs = recordings(root, 12)
    reviews = reviews_csv(root / "reviews.csv")
    texts = SHARED_DATA / "SST-2" / "dev.tsv"
    sentences = ([line.split("\t")[0] for line in texts.read_text().splitlines()[1:13]] if texts.is_file() else
                 ["a gorgeous , witty , seductive movie .", "it 's a dull , tedious mess .", "not bad at all",
                  "the worst film of the year , and the longest"])
    out = {"image": (image / "checkpoints" / "last.ckpt", pictures),
           "speech": (speech / "checkpoints" / "last.ckpt", [str(p) for p in wavs])}
    train_here(root / "translation", *TINY_TRANSLATION, f"paths.cache_dir={root / 'cache'}")
    from src.data.text.numbers import NumbersDataModule

    phrases = NumbersDataModule(train_size=600, val_size=40, test_size=40, cache_dir=str(root / "cache"))
    out["translation"] = (root / "translation" / "checkpoints" / "last.ckpt",
                          [src for src, _ in phrases.splits()["test"][:16]])
    for name, model in (("sentiment", "bilstm"), ("sentiment_cnn", "textcnn")):
        train_here(root / name, "task=sentiment", "data=text_csv", f"data.path={reviews}", f"model={model}",
                   "model.embed_dim=16", "trainer.max_epochs=1", f"paths.cache_dir={root / 'cache'}",
                   *(["model.hidden=16"] if model == "bilstm" else ["model.channels=8"]))
        out[name] = (root / name / "checkpoints" / "last.ckpt", sentences)
    return out


def _inputs_of(ckpt, files):
    """What the exported model takes for these files: read_input and collate_inputs with the checkpoint's info."""
    from src.checkpoint import load_task

    task = load_task(str(ckpt))
    data_cls, info = get_class(task.hparams.data["_target_"]), task.data_info
    batch = data_cls.collate_inputs([data_cls.read_input(f, info) for f in files], info)
    _, inputs, _, _ = task.export_graphs(batch)["model"]
    return inputs


@pytest.mark.parametrize("kind,fmt", [(k, f) for k in ("image", "speech", "sentiment", "sentiment_cnn")
                                      for f in FORMATS])
def test_an_exported_classifier_predicts_what_predict_py_does(runs, kind, fmt, tmp_path):
    from src.export import run_exported

    ckpt, files = runs[kind]
    out = tmp_path / "exported"
    code, _, err = cli("export.py", f"ckpt_path={ckpt}", f"format={fmt}", f"out_dir={out}")
    assert code == 0, err
    spec = json.loads((out / "model.json").read_text())
    assert spec["task"] == kind.removesuffix("_cnn") and spec["format"] == fmt and (out / spec["file"]).is_file()
    assert spec["checked_max_abs_difference"] <= 1e-4 and spec["inputs"][0]["shape"][0] == "batch"
    (list_file := tmp_path / "inputs.txt").write_text("\n".join(files) + "\n")
    expected = predict_here(ckpt, f"inputs={list_file}", "top_k=100")
    probabilities = run_exported(out / spec["file"], _inputs_of(ckpt, files))[0]  # all inputs in one batch
    probabilities = np.asarray(probabilities)
    assert probabilities.shape == (len(files), len(spec["labels"]))
    for row, want in zip(probabilities, expected):
        assert spec["labels"][int(row.argmax())] == want["prediction"]
        by_label = dict(want["top_k"])
        assert max(abs(row[i] - by_label[label]) for i, label in enumerate(spec["labels"])) < 1e-4
    one = run_exported(out / spec["file"], _inputs_of(ckpt, files[:1]))[0]  # and a batch of one
    assert np.abs(np.asarray(one)[0] - probabilities[0]).max() < 1e-5


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_exported_translator_translates_as_predict_py_does(runs, fmt, tmp_path):
    """The encoder and one decoder step, driven by translate.py (numpy and ONNX Runtime, or torch.export.load, only),
    beam and greedy, on sources longer and shorter than the example the graphs were traced with."""
    import importlib.util

    from src.checkpoint import load_task

    ckpt, phrases = runs["translation"]
    out = tmp_path / "exported"
    code, _, err = cli("export.py", f"ckpt_path={ckpt}", f"format={fmt}", f"out_dir={out}")
    assert code == 0, err
    suffix = {"onnx": "onnx", "torch_export": "pt2"}[fmt]
    assert sorted(p.name for p in out.iterdir()) == [f"decoder.{suffix}", f"encoder.{suffix}", "model.json",
                                                     "src_tokenizer.json", "tgt_tokenizer.json", "translate.py"]
    spec = importlib.util.spec_from_file_location("translate", out / "translate.py")
    translate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(translate)
    translator = translate.Translator(out)
    (list_file := tmp_path / "phrases.txt").write_text("\n".join(phrases) + "\n")
    expected = predict_here(ckpt, f"inputs={list_file}")
    got = translator.translate(phrases)  # all in one batch, beam 3 as the checkpoint decodes
    assert [t for t, _ in got] == [e["translation"] for e in expected]
    assert max(abs(p - e["log_prob"]) for (_, p), e in zip(got, expected)) < 1e-3
    task = load_task(str(ckpt)).eval()
    src, src_len = translator.encode(phrases)
    tokens, _ = task.net.beam_search(torch.from_numpy(src), torch.from_numpy(src_len), beam_size=1,
                                     max_len=min(task.max_decode_len, int(src_len.max()) * 2 + 10), length_penalty=0.0)
    assert [t for t, _ in translator.translate(phrases, beam_size=1)] == [translator.decode(t) for t in tokens.tolist()]


def test_export_refuses_an_unknown_format_and_names_the_fix(runs):
    code, _, err = cli("export.py", f"ckpt_path={runs['image'][0]}", "format=tflite")
    assert code == 2 and "format=tflite: choose one of onnx, torch_export" in err


def test_the_image_model_is_normalised_inside_the_graph(runs, tmp_path):
    """Raw uint8 pixels go in: a user needs no mean or std of ours."""
    import onnxruntime as ort

    ckpt, files = runs["image"]
    code, _, err = cli("export.py", f"ckpt_path={ckpt}", f"out_dir={tmp_path / 'e'}")
    assert code == 0, err
    session = ort.InferenceSession(str(tmp_path / "e" / "model.onnx"), providers=["CPUExecutionProvider"])
    (node,) = session.get_inputs()
    assert node.type == "tensor(uint8)" and node.shape[0] == "batch"
    from PIL import Image

    pixels = np.asarray(Image.open(files[0]).convert("L"), dtype=np.uint8)[None, None]
    assert abs(float(session.run(None, {"input": pixels})[0].sum()) - 1) < 1e-5
    assert torch.equal(_inputs_of(ckpt, files[:1])["input"], torch.from_numpy(pixels))


def test_quantize_dynamic_writes_int8_weights_beside_the_float_model(runs, tmp_path):
    from src.export import run_exported

    ckpt, sentences = runs["sentiment"]
    out = tmp_path / "q"
    code, _, err = cli("export.py", f"ckpt_path={ckpt}", f"out_dir={out}", "quantize=dynamic")
    assert code == 0, err
    (graph,) = json.loads((out / "model.json").read_text())["graphs"]
    assert graph["int8"]["file"] == "model.int8.onnx" and (out / "model.int8.onnx").is_file()
    inputs = _inputs_of(ckpt, sentences)
    full, int8 = (np.asarray(run_exported(out / name, inputs)[0]) for name in ("model.onnx", "model.int8.onnx"))
    assert np.abs(full - int8).max() < 0.05  # int8 weights: close, not equal
    code, _, err = cli("export.py", f"ckpt_path={ckpt}", "format=torch_export", "quantize=dynamic")
    assert code == 2 and "quantize=dynamic" in err and "format=onnx" in err
