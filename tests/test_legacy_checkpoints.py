"""Checkpoints written before src/data/ was split by modality (commit f6b5779) still evaluate and predict exactly as
that commit's eval.py and predict.py did (tests/fixtures/legacy: the checkpoints, the inputs, what was printed)."""
import json
import shutil

import pytest

from src import pipeline
from src.checkpoint import current_path, read_checkpoint
from tests.helpers import ROOT, run_here

LEGACY = ROOT / "tests" / "fixtures" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())
TASKS = ["image", "translation", "speech", "sentiment"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The folder the fixtures were made in: their data paths (sentiment.tsv, ./data/cache) are relative to it."""
    shutil.copy(LEGACY / "sentiment.tsv", tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _input(task: str) -> str:
    given = EXPECTED[task]["input"]
    return str(LEGACY / given) if (LEGACY / given).is_file() else given


@pytest.mark.parametrize("task", TASKS)
def test_an_old_checkpoint_names_old_paths_that_map_to_todays(task):
    ckpt = read_checkpoint(str(LEGACY / f"{task}.ckpt"))
    old = ckpt["hyper_parameters"]["data"]["_target_"]
    assert old.count(".") == 3  # src.data.<module>.<Class>: the flat layout
    assert current_path(old).startswith(("src.data.image.", "src.data.audio.", "src.data.text."))


@pytest.mark.parametrize("task", TASKS)
def test_an_old_checkpoint_evaluates_and_predicts_as_before(task, workdir, compose_train):
    cfg = compose_train(f"ckpt_path={LEGACY / f'{task}.ckpt'}", "trainer.accelerator=cpu",
                        "trainer.enable_model_summary=false", "trainer.enable_progress_bar=false",
                        config_name="eval")
    metrics = pipeline.evaluate(cfg)
    assert metrics == pytest.approx(EXPECTED[task]["eval"], rel=1e-5, abs=1e-6)

    cfg = compose_train(f"ckpt_path={LEGACY / f'{task}.ckpt'}", f"input='{_input(task)}'", "device=cpu",
                        config_name="predict")
    (result,) = pipeline.predict(cfg)
    expected = EXPECTED[task]["predict"]
    if task == "translation":
        assert result["translation"] == expected["translation"]
        assert result["log_prob"] == pytest.approx(expected["log_prob"], abs=1e-3)
    else:
        assert _same_prediction(result, expected)


def _same_prediction(result: dict, expected: dict) -> bool:
    return (result["prediction"] == expected["prediction"]
            and result["probability"] == pytest.approx(expected["probability"], abs=1e-5)
            and [c for c, _ in result["top_k"]] == [c for c, _ in expected["top_k"]])


@pytest.mark.slow
def test_the_entry_points_take_an_old_checkpoint(workdir):
    """eval.py and predict.py themselves, as a user types them, on the image fixture."""
    ckpt = LEGACY / "image.ckpt"
    run_here("eval.py", f"ckpt_path={ckpt}", "hydra.run.dir=eval", "trainer.accelerator=cpu")
    assert json.loads((workdir / "eval" / "metrics.json").read_text()) == \
        pytest.approx(EXPECTED["image"]["eval"], rel=1e-5)
    proc = run_here("predict.py", f"ckpt_path={ckpt}", f"input={_input('image')}", "device=cpu")
    assert _same_prediction(json.loads(proc.stdout.splitlines()[-1]), EXPECTED["image"]["predict"])
