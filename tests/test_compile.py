"""model.compile=true: a compiled run writes checkpoints with plain parameter names, which eval.py and predict.py load
into an uncompiled network."""
from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import TINY_IMAGE, digit_images, run_script, train


@pytest.mark.slow
def test_a_compiled_run_saves_plain_names_that_eval_and_predict_load_uncompiled(tmp_path):
    run = tmp_path / "run"
    # aot_eager: the whole of torch.compile's tracing (Dynamo, AOTAutograd) without inductor's C++ compiler, which
    # would add minutes of CPU here; what is tested is the wiring, not the kernels
    metrics = train(run, *TINY_IMAGE, "model.compile=true", "model.compile_backend=aot_eager",
                    "trainer.limit_test_batches=2")
    record = json.loads((run / "run.json").read_text())
    first = record["compile_first_step_s"]
    assert set(first) == {"training", "evaluation"} and all(s > 0 for s in first.values())
    ckpt = record["best_checkpoint"]
    names = list(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    assert names and all(n.startswith("net.") and "_orig_mod" not in n for n in names)

    ev = run_script("eval.py", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}", "trainer.accelerator=cpu",
                    "trainer.limit_test_batches=2")
    assert "torch.compile" not in ev.stdout + ev.stderr  # loaded as a plain network
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["test/acc"] == pytest.approx(metrics["test/acc"], abs=1 / 64)  # the same weights, eager kernels

    image = digit_images(tmp_path / "images", 1)[0]
    pred = run_script("predict.py", f"ckpt_path={ckpt}", f"input={image}", f"hydra.run.dir={tmp_path / 'pred'}")
    assert "torch.compile" not in pred.stdout + pred.stderr
    assert json.loads(pred.stdout)["prediction"] in [str(d) for d in range(10)]
