"""Bad input, as a table: each case is a command as a user would type it (run in this process: tests.helpers.cli),
the exit status it must end with, and the words its one-line answer must hold. No answer may be a traceback, and
a user's mistake always ends with status 2. Cases that need a run to set up (a full disk, two runs at once, a
resume) follow the table."""
from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import QUICK, ROOT, cli, reviews_csv, train_here

# -- what the cases read: bad files of every kind, and two real checkpoints --------------------------------------


class NotAllowed:  # a class a checkpoint must not make us import and run
    pass


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of bad inputs, and checkpoints of two tasks trained here (image on digits, sentiment on a CSV)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad")
    files = root / "files"
    files.mkdir()
    (files / "empty.ckpt").write_bytes(b"")
    (files / "text.ckpt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, files / "not_ours.ckpt")
    (files / "pickled.ckpt").write_bytes(pickle.dumps({"gradlab": {"task": "x"}, "payload": NotAllowed()}))
    Image.new("RGB", (8, 8), (200, 10, 10)).save(files / "good.png")
    (files / "not_an_image.png").write_text("hello")
    (files / "empty.png").write_bytes(b"")
    (files / "empty.wav").write_bytes(b"")
    (files / "list.txt").write_text("good.png\nnot_an_image.png\nmissing.png\ngood.png\n")
    (files / "empty_list.txt").write_text("\n\n")
    (files / "folder").mkdir()
    # text data
    reviews_csv(files / "reviews.csv")
    (files / "empty.csv").write_text("")
    (files / "header_only.csv").write_text("text,label\n")
    (files / "one_class.csv").write_text("text,label\n" + "".join(f"film {i},pos\n" for i in range(40)))
    (files / "no_tab.tsv").write_text("".join(f"one {i}\n" for i in range(40)))
    (files / "src.txt").write_text("".join(f"one {i}\n" for i in range(40)))
    (files / "tgt.txt").write_text("".join(f"eins {i}\n" for i in range(39)))
    # image and audio folders
    (files / "no_train").mkdir()
    (files / "train_without_images" / "train" / "cat").mkdir(parents=True)
    (files / "not_an_archive.tar.gz").write_text("hello")
    (files / "cut.tar.gz").write_bytes(gzip.compress(b"x" * 100000)[:500])
    (files / "no_wavs" / "yes").mkdir(parents=True)
    for name, classes in {"hidden": {"cat": 6, "dog": 6, "bird": 0, ".ipynb_checkpoints": 0},
                          "one_class": {"cat": 6}, "tiny": {"cat": 3, "dog": 3}}.items():
        for c, n in classes.items():
            (files / name / "train" / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(files / name / "train" / c / f"{i}.png")
    for c in ("cat", "dog"):
        (files / "unknown_val" / "train" / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(files / "unknown_val" / "train" / c / f"{i}.png")
    (files / "unknown_val" / "val" / "cow").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(files / "unknown_val" / "val" / "cow" / "0.png")
    import numpy as np
    import soundfile as sf

    for c in ("yes", "no"):
        (files / "zero_length" / c).mkdir(parents=True)
        for i in range(4):
            sf.write(files / "zero_length" / c / f"{i}.wav", np.full(1600, 0.1 * (i + 1), "float32"), 16000)
    sf.write(files / "zero_length" / "no" / "empty.wav", np.zeros(0, "float32"), 16000)
    (files / "floats.csv").write_text("text,label\n" + "".join(f"film {i},{i / 7:.3f}\n" for i in range(60)))
    (files / "many.csv").write_text("text,label\n" + "".join(f"film {i},user{i}\n" for i in range(60)))
    (files / "ids.csv").write_text("".join(f"{i},a fine film {i},{i % 2}\n" for i in range(60)))
    (files / "val_unseen.csv").write_text("text,label\nnew film,pos\nodd film,meh\n")
    # checkpoints of real runs
    image = root / "image"
    train_here(image, "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2")
    ckpt = image / "checkpoints" / "last.ckpt"
    data = ckpt.read_bytes()
    (files / "cut.ckpt").write_bytes(data[:len(data) // 2])
    text = root / "text"
    train_here(text, "task=sentiment", "data=text_csv", f"data.path={files / 'reviews.csv'}", "model.hidden=16",
               "model.embed_dim=16", "trainer.max_epochs=1", f"paths.cache_dir={root / 'cache'}")
    return {"files": files, "tmp": root, "img": ckpt, "csv": text / "checkpoints" / "last.ckpt",
            "cache": root / "cache"}


# -- the table ----------------------------------------------------------------------------------------------------
# (script, arguments, exit status, words the answer must hold); {files}, {tmp}, {img}, {csv}, {cache} are filled in
CASES = [
    # the command line: keys, groups, options, values
    ("train.py", "trainer.max_epoch=3", 2, ["trainer.max_epoch", "did you mean trainer.max_epochs?"]),
    ("train.py", "trainr.max_epochs=3", 2, ["'trainr'", "did you mean trainer?"]),
    ("train.py", "modle=cnn", 2, ["'modle'", "did you mean model?"]),
    ("train.py", "model=bilsm", 2, ["no model config 'bilsm'", "did you mean bilstm?", "cnn, crnn"]),
    ("train.py", "task=speech model.hiden=3", 2, ["model has no key 'hiden'"]),
    ("train.py", "task=sentiment model.hiden=3", 2, ["did you mean model.hidden?"]),
    ("train.py", "optimizer.lr=[1,", 2, ["optimizer.lr=[1,", "Quote"]),
    ("train.py", "+trainer.max_epochs=3", 2, ["already at 'trainer.max_epochs'", "remove + prefix"]),
    ("train.py", "~trainer.nothing", 2, ["'trainer.nothing' does not exist"]),
    ("train.py", "task=rll", 2, ["no task config 'rll'", "image, rl, sentiment, speech, translation"]),
    ("train.py", "experiment=nope", 2, ["no experiment config 'nope'", "multi30k_gru"]),
    ("train.py", "scheduler=cosin", 2, ["did you mean cosine?"]),
    ("train.py", "trainer.max_epochs=ten", 2, ["trainer.max_epochs should be an integer"]),
    ("train.py", "optimizer.lr=fast", 2, ["optimizer.lr should be a number"]),
    ("train.py", "model.widths=32", 2, ["model.widths should be a list"]),
    ("train.py", "trainer.precision=15", 2, ["trainer.precision=15 is not a precision"]),
    ("train.py", "seed=abc", 2, ["seed=abc", "should be an integer"]),
    ("train.py", "trainer.max_epochs=0", 2, ["trainer.max_epochs=0 trains nothing"]),
    ("train.py", "trainer.max_steps=0", 2, ["trainer.max_steps=0 trains nothing"]),
    # (a tracker's missing package: tests/test_trackers.py, which hides the installed one)
    # another task's recipe, search, model or data
    ("train.py", "experiment=multi30k_gru task=image", 2, ["recipe of task=translation", "task=image was given"]),
    ("train.py", "task=image hparams_search=sentiment_optuna", 2, ["recipe of task=sentiment", "image_optuna"]),
    ("train.py", "hparams_search=image_optuna hydra.sweeper.pruner=medan", 2, ["hydra.sweeper.pruner=medan",
                                                                              "median, successive_halving"]),
    ("train.py", "task=speech model=bilstm", 2, ["model of task=sentiment", "speech_resnet, crnn"]),
    ("train.py", "task=translation model=cnn", 2, ["model of task=image", "seq2seq_gru, seq2seq_lstm"]),
    ("train.py", "data=sst2", 2, ["data set of task=sentiment", "digits, mnist"]),
    ("train.py", "task=sentiment data=numbers", 2, ["data set of task=translation", "sst2, imdb, text_csv"]),
    # checkpoints
    ("train.py", "ckpt_path={files}/missing.ckpt", 2, ["ckpt_path=", "no such file"]),
    ("train.py", "ckpt_path=last paths.log_dir={tmp}/nothing", 2, ["ckpt_path=last found no checkpoints/last.ckpt"]),
    ("train.py", "task=translation ckpt_path={img} hydra.run.dir={tmp}/t1", 2,
     ["checkpoint of task=image", "task=translation"]),
    ("eval.py", "", 2, ["ckpt_path is required"]),
    ("eval.py", "ckpt_path={files}/empty.ckpt hydra.run.dir={tmp}/e1", 2, ["empty.ckpt is not a readable checkpoint"]),
    ("eval.py", "ckpt_path={files}/cut.ckpt hydra.run.dir={tmp}/e2", 2, ["cut.ckpt is not a readable checkpoint"]),
    ("eval.py", "ckpt_path={files}/text.ckpt hydra.run.dir={tmp}/e3", 2, ["text.ckpt is not a readable checkpoint"]),
    ("eval.py", "ckpt_path={files}/not_ours.ckpt hydra.run.dir={tmp}/e4", 2, ["was not written by gradlab"]),
    ("eval.py", "ckpt_path={files}/pickled.ckpt hydra.run.dir={tmp}/e5", 2, ["pickled.ckpt is not a readable"]),
    ("eval.py", "ckpt_path={files}/folder hydra.run.dir={tmp}/e6", 2, ["no such file"]),
    ("eval.py", "ckpt_path={img} split=train hydra.run.dir={tmp}/e7", 2, ["split=train", "test or val"]),
    ("eval.py", "ckpt_path={img} data.nope=1 hydra.run.dir={tmp}/e8", 2, ["data.nope=1", "has no key 'nope'"]),
    ("eval.py", "ckpt_path={csv} data.path={files}/missing.csv hydra.run.dir={tmp}/e9", 2,
     ["missing.csv", "no such"]),
    ("eval.py", "ckpt_path={img} trainer.max_epoch=1", 2, ["did you mean trainer.max_epochs?"]),
    ("predict.py", "input=x", 2, ["ckpt_path is required"]),
    ("predict.py", "ckpt_path={files}/empty.ckpt input=x", 2, ["empty.ckpt is not a readable checkpoint"]),
    # predict inputs
    ("predict.py", "ckpt_path={img}", 2, ["give exactly one of input=", "inputs="]),
    ("predict.py", "ckpt_path={img} input=a inputs=b", 2, ["give exactly one of input="]),
    ("predict.py", "ckpt_path={img} inputs={files}/missing.txt", 2, ["inputs=", "no such file"]),
    ("predict.py", "ckpt_path={img} inputs={files}/empty_list.txt", 2, ["empty_list.txt", "no inputs"]),
    ("predict.py", "ckpt_path={img} input={files}/missing.png", 2, ["missing.png: no such file"]),
    ("predict.py", "ckpt_path={img} input={files}/not_an_image.png", 2, ["not_an_image.png: not an image"]),
    ("predict.py", "ckpt_path={img} input={files}/empty.png", 2, ["empty.png: not an image"]),
    ("predict.py", "ckpt_path={img} input={files}/folder", 2, ["folder", "not an image"]),
    ("predict.py", "ckpt_path={img} inputs={files}/list.txt", 2, ["2 of 4 inputs", "could not be read"]),
    ("predict.py", "ckpt_path={csv} input=", 2, ["the input is empty"]),
    ("predict.py", "ckpt_path={img} top_k=0 input={files}/good.png", 2, ["top_k=0 should be 1 or more"]),
    ("predict.py", "ckpt_path={img} batch_size=0 input={files}/good.png", 2, ["batch_size=0 should be 1 or more"]),
    ("predict.py", "ckpt_path={csv} inputs={files}/good.png", 2, ["good.png is not a text file"]),
    ("predict.py", "ckpt_path={csv} input=___", 2, ["the input is empty"]),
    ("predict.py", "ckpt_path={csv} input={files}/good.png", 2, ["good.png is a file, and this model reads text"]),
    # values out of their range
    ("train.py", "optimizer.lr=-1", 2, ["optimizer.lr=-1 should be a positive learning rate"]),
    ("train.py", "model.compile=maybe", 2, ["model.compile=maybe", "should be true or false"]),
    ("train.py", "model.compile=true model.compile_mode=fast", 2, ["model.compile_mode=fast", "reduce-overhead"]),
    ("train.py", "model.compile=true model.compile_backend=nope", 2, ["model.compile_backend=nope", "aot_eager"]),
    ("train.py", "optimizer.weight_decay=-0.1", 2, ["optimizer.weight_decay=-0.1 should be 0 or more"]),
    ("train.py", "seed=-5", 2, ["seed=-5 should be an integer from 0"]),
    ("train.py", "trainer.accumulate_grad_batches=0", 2, ["trainer.accumulate_grad_batches=0 should be 1 or more"]),
    ("train.py", "data.batch_size=0", 2, ["data.batch_size=0 should be 1 or more"]),
    ("train.py", "task=sentiment data=text_csv data.path={files}/reviews.csv data.num_workers=-1", 2,
     ["data.num_workers=-1 should be 0 or more"]),
    ("train.py", "data.val_fraction=0.6 data.test_fraction=0.5", 2, ["leaves nothing to train on"]),
    # data of each format (prepare.py reads and checks a data set, as a run would before training)
    ("prepare.py", "data=fashion_mnist data.data_dir={files}/folder data.download=false", 2, ["FashionMNIST"]),
    ("prepare.py", "data=image_folder data.path={files}/missing", 2, ["data.path=", "no such folder or file"]),
    ("prepare.py", "data=image_folder data.path={files}/no_train", 2, ["has no train/ folder"]),
    ("prepare.py", "data=image_folder data.path={files}/train_without_images", 2, ["holds no images"]),
    ("prepare.py", "data=image_folder data.path={files}/not_an_archive.tar.gz", 2, ["neither a folder nor a tar"]),
    ("prepare.py", "data=image_folder data.path={files}/cut.tar.gz data.data_dir={tmp}/x", 2, ["cut.tar.gz"]),
    ("prepare.py", "data=image_folder data.path={files}/hidden", 2, ["bird holds no images"]),
    ("prepare.py", "data=image_folder data.path={files}/unknown_val", 2, ["['cow'] that train/ lacks"]),
    ("prepare.py", "data=image_folder data.path={files}/one_class", 2, ["one class folder (cat)"]),
    ("prepare.py", "data=image_folder data.path={files}/tiny", 2, ["split is empty", "data.test_fraction"]),
    ("prepare.py", "data=image_folder data.path={files}/tiny data.test_fraction=1.5", 2,
     ["data.test_fraction=1.5 should be from 0 to below 1"]),
    ("prepare.py", "data=image_folder data.path={files}/hidden data.image_size=0", 2, ["data.image_size=0 should be"]),
    ("prepare.py", "task=speech data=audio_folder data.path={files}/missing", 2, ["missing"]),
    ("prepare.py", "task=speech data=audio_folder data.path={files}/zero_length", 2, ["empty.wav: holds no samples"]),
    ("prepare.py", "task=speech data=audio_folder data.path={files}/no_wavs", 2, ["no_wavs"]),
    ("prepare.py", "task=sentiment data=text_csv data.path={files}/missing.csv", 2, ["missing.csv"]),
    ("prepare.py", "task=sentiment data=text_csv data.path={files}/empty.csv", 2, ["empty.csv"]),
    ("prepare.py", "task=sentiment data=text_csv data.path={files}/header_only.csv", 2, ["header_only.csv"]),
    ("prepare.py", "task=sentiment data=text_csv data.path={files}/one_class.csv", 2, ["one_class.csv", "1 class"]),
    ("prepare.py", "task=sentiment data=text_csv data.path={files}/floats.csv", 2, ["holds numbers such as"]),
    ("prepare.py", "task=sentiment data=text_csv data.path={files}/many.csv", 2, ["60 different labels for"]),
    ("prepare.py", "task=sentiment data=text_csv data.path={files}/ids.csv", 2, ["holds only numbers (an id?)"]),
    ("prepare.py", "task=sentiment data=text_csv data.path={files}/reviews.csv data.val_path={files}/val_unseen.csv",
     2, ["['meh'] that data.path=", "never has"]),
    ("prepare.py", "task=sentiment data=text_csv data.path={files}/reviews.csv data.text_column=label "
     "data.label_column=label", 2, ["must differ"]),
    ("prepare.py", "task=translation data=parallel_text data.path={files}/missing.tsv", 2, ["missing.tsv"]),
    ("prepare.py", "task=translation data=parallel_text data.path={files}/no_tab.tsv", 2, ["no_tab.tsv"]),
    ("prepare.py", "task=translation data=parallel_text data.path=null data.src_path={files}/src.txt "
     "data.tgt_path={files}/tgt.txt", 2, ["40", "39"]),
    ("prepare.py", "task=sentiment data=sst2 data.data_dir={files}/folder data.download=false", 2, ["SST-2"]),
]


def _fill(text: str, bad: dict) -> list[str]:
    """The arguments as the shell hands them over (___ stands for three spaces: an input of blanks)."""
    return [a.format(**bad).replace("___", "   ") for a in text.split()] if text else []


@pytest.mark.parametrize("script,args,status,words", CASES, ids=[f"{s}:{a}"[:60] for s, a, _, _ in CASES])
def test_bad_input_gets_one_line_and_status_2(bad, script, args, status, words, tmp_path):
    given = _fill(args, bad)
    if script == "train.py":  # should a case get further than it should, it writes here, not into the checkout
        given += [*QUICK, *(f"{key}={tmp_path / key}" for key in ("paths.log_dir", "paths.sweep_dir")
                            if not any(a.startswith(key) for a in given))]
    code, out, err = cli(script, *given)
    said = (err + out).strip()
    assert code == status, said
    assert "Traceback" not in said, said
    for word in words:
        assert word.format(**bad) in said, said
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: "), said


def test_the_table_is_at_least_60_cases():
    assert len(CASES) >= 60


# -- predict.py inputs= ----------------------------------------------------------------------------------------------
def test_one_unreadable_input_of_a_list_loses_none_of_the_others(bad):
    code, out, err = cli("predict.py", f"ckpt_path={bad['img']}", f"inputs={bad['files'] / 'list.txt'}", "device=cpu")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 2 and err.strip() == ("error: 2 of 4 inputs in inputs=" + str(bad["files"] / "list.txt") +
                                         " could not be read: their lines above say why (\"error\"); the other 2 "
                                         "were predicted.")
    assert sorted(Path(x["input"]).name for x in lines if "prediction" in x) == ["good.png", "good.png"]
    errors = {Path(x["input"]).name: x["error"] for x in lines if "error" in x}
    assert set(errors) == {"not_an_image.png", "missing.png"} and "not an image" in errors["not_an_image.png"]


def test_texts_of_any_length_are_read_from_an_inputs_list(bad, tmp_path):
    """A line longer than a file name may be (255 bytes) made the check for a relative path fail with OSError."""
    texts = tmp_path / "texts.txt"
    texts.write_text("a gorgeous witty film " * 60 + "\na dull mess\n")
    code, out, err = cli("predict.py", f"ckpt_path={bad['csv']}", f"inputs={texts}", "device=cpu")
    assert code == 0, err
    assert [len(json.loads(line)["input"]) for line in out.splitlines()] == [len("a gorgeous witty film " * 60) - 1,
                                                                              len("a dull mess")]


# -- stale or damaged files the app wrote itself ------------------------------------------------------------------
def test_a_damaged_cache_is_built_again(bad, tmp_path, caplog):
    """A cut copy of a cached tokenizer, or of decoded images, is rebuilt with a warning, not a crash."""
    from src.data.image.image_folder import ImageFolderDataModule
    from src.data.text.text_csv import TextCSVDataModule

    text = dict(path=str(bad["files"] / "reviews.csv"), cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path))
    first = TextCSVDataModule(**text).info["tokenizer"]
    (cached,) = (tmp_path / "cache" / "tokenizers").iterdir()
    cached.write_text(cached.read_text()[:100])
    assert TextCSVDataModule(**text).info["tokenizer"] == first and "cannot be read" in caplog.text
    caplog.clear()
    images = dict(path=str(bad["files"] / "hidden"), image_size=8, cache_dir=str(tmp_path / "img"), val_fraction=0.2,
                  test_fraction=0.2)
    bad_folder = bad["files"] / "hidden" / "train" / "bird"
    bad_folder.rename(bad_folder.with_name(".bird"))  # (an empty class folder is refused: hidden, it is skipped)
    try:
        dm = ImageFolderDataModule(**images)
        dm.setup("fit")
        assert dm.class_names == ["cat", "dog"]
        for cache in (tmp_path / "img").glob("*.pt"):
            cache.write_bytes(cache.read_bytes()[:50])
        again = ImageFolderDataModule(**images)
        again.setup("fit")
        assert torch.equal(again.train_set.images, dm.train_set.images) and "cannot be read" in caplog.text
    finally:
        bad_folder.with_name(".bird").rename(bad_folder)


def test_a_changed_archive_is_extracted_again(tmp_path):
    import tarfile

    from PIL import Image

    from src.data.image.image_folder import ImageFolderDataModule

    def archive(classes):
        src = tmp_path / "src"
        for c in classes:
            (src / "train" / c).mkdir(parents=True, exist_ok=True)
            for i in range(5):
                Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(src / "train" / c / f"{i}.png")
        with tarfile.open(tmp_path / "pets.tar.gz", "w:gz") as tar:
            tar.add(src, arcname="pets")

    options = dict(path=str(tmp_path / "pets.tar.gz"), data_dir=str(tmp_path / "data"), cache_dir=None,
                   val_fraction=0.2, test_fraction=0.2)
    archive(["cat", "dog"])
    dm = ImageFolderDataModule(**options)
    dm.setup("fit")
    assert dm.class_names == ["cat", "dog"]
    time.sleep(0.01)
    archive(["cat", "dog", "fox"])  # the same file name, new contents
    again = ImageFolderDataModule(**options)
    again.setup("fit")
    assert again.class_names == ["cat", "dog", "fox"]


# -- cases that need a run to set up ------------------------------------------------------------------------------
def test_a_recipe_or_search_of_another_task_creates_nothing(tmp_path):
    code, _, err = cli("train.py", "experiment=multi30k_gru", "task=image", f"hydra.run.dir={tmp_path / 'run'}",
                       f"paths.data_dir={tmp_path / 'data'}", f"paths.cache_dir={tmp_path / 'cache'}")
    assert code == 2 and "recipe of task=translation" in err
    code, _, err = cli("train.py", "task=image", "hparams_search=sentiment_optuna",
                       f"paths.sweep_dir={tmp_path / 'sw'}")
    assert code == 2 and "recipe of task=sentiment" in err
    assert list(tmp_path.iterdir()) == []  # no run directory, no data, no study with a trial left RUNNING


def test_eval_reads_data_that_moved_with_data_path(bad, tmp_path):
    moved = tmp_path / "elsewhere" / "reviews.csv"
    moved.parent.mkdir()
    moved.write_bytes((bad["files"] / "reviews.csv").read_bytes())
    code, out, err = cli("eval.py", f"ckpt_path={bad['csv']}", f"data.path={moved}", f"hydra.run.dir={tmp_path / 'e'}",
                         "trainer.accelerator=cpu", "trainer.enable_progress_bar=false")
    assert code == 0, err
    assert "test/acc" in json.loads((tmp_path / "e" / "metrics.json").read_text())
    code, _, err = cli("eval.py", f"ckpt_path={bad['csv']}", f"data.nope={moved}", f"hydra.run.dir={tmp_path / 'f'}")
    assert code == 2 and "has no key 'nope'" in err and "path, " in err  # the keys it has are listed


def test_one_cycle_runs_of_a_few_steps_train(tmp_path):
    """pct_start x total_steps = 1 (4 steps at the default 0.25) made torch's OneCycleLR divide by zero."""
    for steps in (1, 2, 4):
        metrics = train_here(tmp_path / str(steps), "scheduler=onecycle", "trainer.max_epochs=1",
                             f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=2",
                             "trainer.limit_test_batches=2")
        assert "test/acc" in metrics


def test_a_resume_into_its_run_directory_keeps_the_first_part_s_config_and_record(tmp_path):
    run = tmp_path / "run"
    assert cli("train.py", *QUICK, f"hydra.run.dir={run}", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
               "trainer.limit_val_batches=2")[0] == 0
    first = json.loads((run / "run.json").read_text())
    overrides = (run / ".hydra" / "overrides.yaml").read_text()
    code, _, err = cli("train.py", *QUICK, "ckpt_path=last", f"hydra.run.dir={run}", "trainer.max_epochs=2",
                       "trainer.limit_train_batches=3", "trainer.limit_val_batches=2")
    assert code == 0, err
    assert (run / ".hydra" / "overrides.yaml").read_text() == overrides  # the run's own config is kept
    (resumed,) = (run / ".hydra").glob("resume-*/overrides.yaml")
    assert "trainer.max_epochs=2" in resumed.read_text()
    record = json.loads((run / "run.json").read_text())
    assert record["history"] == [first]  # the first part: its command, start, epochs
    assert record["resumed_from"] == str(run / "checkpoints" / "last.ckpt") and record["epochs"] == 2


def test_a_new_run_in_a_directory_that_holds_one_is_refused(bad, tmp_path):
    run = bad["img"].parent.parent
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    code, _, err = cli("train.py", *QUICK, f"hydra.run.dir={run}")
    assert code == 2 and "already holds a run" in err and "ckpt_path=last" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != ".lock"} == {
        p: t for p, t in before.items() if p.name != ".lock"}


@pytest.mark.slow
def test_a_second_run_in_the_same_directory_stops_at_once_naming_the_first(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "train.py", *QUICK, f"hydra.run.dir={run}", "trainer.max_epochs=2"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "run.json").is_file() and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, first.stdout.read()
        code, _, err = cli("train.py", *QUICK, f"hydra.run.dir={run}", "trainer.max_epochs=1")
        assert code == 2 and f"pid {first.pid}" in err and "in use by another run" in err, err
    finally:
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert "trainer.max_epochs=2" in (run / ".hydra" / "overrides.yaml").read_text()
    assert json.loads((run / "run.json").read_text())["epochs"] == 2
    assert "test/acc" in json.loads((run / "metrics.json").read_text())


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB file system of its own (tmpfs), so that a run can fill it; skipped where mounting is not allowed."""
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_save_says_so_and_keeps_the_last_checkpoint(small_disk):
    run = small_disk / "run"
    args = [*QUICK, f"hydra.run.dir={run}", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2"]
    assert cli("train.py", *args, "trainer.max_epochs=1")[0] == 0
    last = run / "checkpoints" / "last.ckpt"
    saved = last.read_bytes()
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - len(saved) // 2))  # room for half a checkpoint
    code, _, err = cli("train.py", *args, "trainer.max_epochs=3", "ckpt_path=last")
    assert code == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: no space left on the device writing ") and "Free some space" in line, line
    assert last.read_bytes() == saved  # the checkpoint of the first part is whole and unchanged
    assert not list(run.glob("checkpoints/*.part"))
