"""Real training runs on the embedded digits data: learning, files, options, seeds, eval, predict."""
import json

import pytest
import torch

from src import pipeline
from tests.helpers import QUICK, predict_here, run_here, train_here

SHORT = ["trainer.max_epochs=3"]


def test_short_run_learns_and_writes_its_run_directory(compose_train, tmp_path):
    cfg = compose_train(*QUICK, *SHORT)
    value = pipeline.train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.8  # chance is 0.1
    assert value == metrics["val/acc"]
    assert {"val/acc", "val/f1", "val/loss", "test/acc", "test/f1", "test/acc_top5"} <= metrics.keys()
    for path in ("checkpoints/last.ckpt", "confusion_matrix.png", "csv/metrics.csv", "run.json"):
        assert (tmp_path / path).is_file(), path
    assert len(list((tmp_path / "checkpoints").glob("best-*.ckpt"))) == 1
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "grad_norm/total" in header and "lr-AdamW" in header and "train/loss" in header
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["seed"] == 42 and run["epochs"] == 3 and run["best_checkpoint"]


def test_last_ckpt_is_the_last_epoch_even_when_the_best_was_earlier(compose_train, tmp_path):
    # mode=min on val/acc makes the first (worst) epoch the "best": Lightning 2.6's save_last would then leave
    # last.ckpt at that epoch too, and a resumed run would redo every epoch after it
    cfg = compose_train(*QUICK, "trainer.max_epochs=3", "callbacks.model_checkpoint.mode=min")
    pipeline.train(cfg)
    assert [p.name for p in (tmp_path / "checkpoints").glob("best-*.ckpt")] == ["best-000.ckpt"]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    assert json.loads((tmp_path / "run.json").read_text())["best_checkpoint"].endswith("best-000.ckpt")


def test_without_a_monitored_checkpoint_the_last_epoch_is_tested(compose_train, tmp_path):
    cfg = compose_train(*QUICK, "trainer.max_epochs=2", "callbacks.model_checkpoint=null")
    pipeline.train(cfg)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]
    best = json.loads((tmp_path / "run.json").read_text())["best_checkpoint"]
    assert best == str(tmp_path / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize("overrides", [
    ["model=resnet", "model.width=16", "model.blocks=[1,1]", "optimizer=sgd", "optimizer.lr=0.05",
     "scheduler=onecycle"],
    ["optimizer=adam", "scheduler=plateau", "trainer.gradient_clip_val=1.0", "trainer.accumulate_grad_batches=2"],
    ["scheduler=step", "scheduler.step_size=1", "logger=tensorboard", "trainer.precision=bf16-mixed"],
    ["scheduler=none", "optimizer=sgd", "optimizer.nesterov=false", "callbacks.early_stopping=null"],
])
def test_options_train(compose_train, tmp_path, overrides):
    cfg = compose_train(*QUICK, "trainer.max_epochs=2", *overrides)
    pipeline.train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.3
    if "logger=tensorboard" in overrides:
        assert list((tmp_path / "tensorboard").glob("events.*"))


def test_seed_repeats_a_cpu_run_bit_for_bit(compose_train, tmp_path):
    results = []
    for name in ("a", "b"):
        cfg = compose_train(*QUICK, "trainer.max_epochs=2", "seed=7")
        cfg.paths.output_dir = str(tmp_path / name)
        pipeline.train(cfg)
        weights = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        results.append((json.loads((tmp_path / name / "metrics.json").read_text()), weights))
    (m1, w1), (m2, w2) = results
    assert m1 == m2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained")
    train_here(run_dir, *SHORT)
    return run_dir


@pytest.mark.slow
def test_eval_tests_a_checkpoint_with_the_same_metrics(trained, tmp_path):
    ckpt = next((trained / "checkpoints").glob("best-*.ckpt"))
    run_here("eval.py", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path}", "trainer.accelerator=cpu")
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    original = json.loads((trained / "metrics.json").read_text())
    assert evaluated == {k: v for k, v in original.items() if k.startswith("test/")}


@pytest.mark.slow
def test_predict_prints_one_json_line_per_image(trained, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    paths = []
    for i in range(5):
        path = tmp_path / f"digit{i}_{digits.target[i]}.png"
        Image.fromarray((digits.images[i] * 255 / 16).round().astype("uint8")).save(path)
        paths.append(path)
    (tmp_path / "list.txt").write_text("\n".join(p.name for p in paths) + "\n")
    ckpt = trained / "checkpoints" / "last.ckpt"
    one = run_here("predict.py", f"ckpt_path={ckpt}", f"input={paths[0]}")
    line = json.loads(one.stdout.strip().splitlines()[-1])
    assert line["prediction"] in [str(i) for i in range(10)] and 0 < line["probability"] <= 1
    lines = predict_here(ckpt, f"inputs={tmp_path / 'list.txt'}", "top_k=2")
    assert len(lines) == 5 and all(len(x["top_k"]) == 2 for x in lines)
    correct = sum(x["prediction"] == x["input"].rsplit("_", 1)[1][0] for x in lines)
    assert correct >= 4


def test_a_run_is_profiled_only_when_asked_and_then_every_hook_is_timed(compose_train, tmp_path):
    # without a profiler, the Trainer's stand-in times nothing (src/pipeline.py: Unprofiled)
    quiet = pipeline.build_trainer(compose_train(*QUICK), [], [])
    assert isinstance(quiet.profiler, pipeline.Unprofiled)
    with quiet.profiler.profile("[Callback]x.on_train_batch_end"):
        pass
    # debug=profiler (Lightning's simple profiler) still sees each callback's hooks
    cfg = compose_train(*QUICK, "debug=profiler", "+trainer.limit_train_batches=3", "trainer.limit_val_batches=1")
    trainer = pipeline.build_trainer(cfg, pipeline.build_callbacks(cfg), pipeline.build_loggers(cfg))
    dm = pipeline.build_data(cfg.data)
    trainer.fit(pipeline.build_task(cfg, pipeline.data_info(dm, trainer)), datamodule=dm)
    timed = trainer.profiler.recorded_durations
    assert len(timed["run_training_batch"]) == 3
    assert any(k.startswith("[Callback]GradientHealth") and k.endswith("on_train_batch_end") for k in timed)
