"""The translation task end to end on generated number phrases: it learns, and eval and predict use its checkpoint."""
import json

import lightning as L
import pytest
import torch

from src.errors import UserError
from tests.helpers import eval_here, predict_here, run_here, train_here

pytestmark = pytest.mark.slow  # every test uses a trained run

TINY = ["task=translation", "data.train_size=3000", "data.val_size=100", "data.test_size=100", "data.kinds=[number]",
        "data.max_number=100000", "model.emb_dim=64", "model.hidden=64", "trainer.max_epochs=6", "optimizer.lr=5e-3",
        "task.beam_size=3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("translation")
    train_here(run_dir, *TINY, f"paths.cache_dir={run_dir / 'cache'}")
    return run_dir


def test_learns_numbers_and_writes_its_outputs(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"test/bleu", "test/chrf", "test/exact", "test/ppl", "val/chrf"} <= metrics.keys()
    assert metrics["test/chrf"] > 55 and metrics["test/exact"] > 0.1  # an untrained model: chrF ~5, exact 0
    assert (trained / "attention.png").is_file()
    header = (trained / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/tgt_tokens_per_s" in header and "val/bleu" in header
    assert list((trained / "cache" / "tokenizers").glob("*.json"))  # derived files in the cache, not data_dir


def test_eval_repeats_the_test_metrics(trained, tmp_path):
    """With the checkpoint's own tokenizers: the cached ones are deleted first and are not learnt again."""
    import shutil

    ckpt = next((trained / "checkpoints").glob("best-*.ckpt"))
    shutil.rmtree(trained / "cache" / "tokenizers")
    evaluated = eval_here(tmp_path, ckpt)
    original = json.loads((trained / "metrics.json").read_text())
    assert evaluated == pytest.approx({k: v for k, v in original.items() if k.startswith("test/")})
    assert not (trained / "cache" / "tokenizers").exists()


def test_predict_translates_text_and_files_of_lines(trained, tmp_path):
    ckpt = next((trained / "checkpoints").glob("best-*.ckpt"))
    one = run_here("predict.py", f"ckpt_path={ckpt}", "input=three hundred and forty-two")
    line = json.loads(one.stdout.strip().splitlines()[-1])
    assert line["input"] == "three hundred and forty-two" and isinstance(line["translation"], str)
    (tmp_path / "lines.txt").write_text("seven\ntwelve\nninety-nine\n")
    many = predict_here(ckpt, f"inputs={tmp_path / 'lines.txt'}")
    assert [x["input"] for x in many] == ["seven", "twelve", "ninety-nine"]


def test_a_translation_checkpoint_is_refused_by_the_image_task(trained, tmp_path):
    ckpt = next((trained / "checkpoints").glob("best-*.ckpt"))
    with pytest.raises(UserError, match="task=translation"):  # before any data is read
        train_here(tmp_path, f"ckpt_path={ckpt}")


class RecordLosses(L.Callback):
    """+callbacks.losses._target_=tests.test_translation.RecordLosses: each training step's loss, in `losses`."""

    losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        RecordLosses.losses.append(float(outputs["loss"]))


def test_the_benchmarks_plain_loop_repeats_the_apps_run_step_for_step(tmp_path):
    """benchmarks/translation_step.py's plain loop (the baseline of the speed and Multi30k comparisons) builds the
    same weights, draws the same batches and dropout, and so gives the app's training losses bit for bit, across
    an epoch boundary: its comparisons are of the same work."""
    import sys

    from tests.helpers import QUICK, ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import translation_step

    overrides = ["task=translation", "data.train_size=640", "data.val_size=20", "data.test_size=20",
                 "model.emb_dim=64", "model.hidden=64", "trainer.max_epochs=2", f"paths.cache_dir={tmp_path / 'cache'}"]
    RecordLosses.losses = []
    train_here(tmp_path / "app", *overrides, "test=false",
               "+callbacks.losses._target_=tests.test_translation.RecordLosses")
    plain = translation_step.Plain(translation_step.compose(None, None, "cpu", tmp_path / "plain", False,
                                                            (*QUICK, *overrides)), "cpu")
    plain.schedule(2 * len(plain.loader(0)))
    losses = [float(x) for epoch in range(2) for x in plain.train_epoch(epoch, int(plain.cfg.seed))]
    assert len(RecordLosses.losses) == len(losses) > 2 * 4 and RecordLosses.losses == losses
    app = torch.load(tmp_path / "app" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(app[f"net.{k}"], v) for k, v in plain.model.state_dict().items())  # to the last bit
