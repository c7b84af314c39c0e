"""The command line as users meet it: help, and one clear line for each kind of mistake."""
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from src import pipeline
from tests.helpers import QUICK, ROOT, cli


def _run(script, *args, check=False):
    """The command in this process (tests.helpers.cli), as a finished process."""
    code, out, err = cli(script, *args)
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def _fails(proc, *needles):
    assert proc.returncode != 0
    err = proc.stderr + proc.stdout
    for needle in needles:
        assert needle in err, err
    assert "Traceback" not in err, err
    return err


def test_help_lists_the_groups():
    """(How fast --help answers is measured by benchmarks/cli_latency.py; test_no_torch_before_a_run_starts
    checks what would slow it down.)"""
    proc = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0
    for group in ("task:", "model:", "data:", "optimizer:", "scheduler:", "trainer:", "logger:", "callbacks:",
                  "experiment:"):
        assert group in proc.stdout


def test_no_torch_before_a_run_starts():
    code = ("import sys; sys.argv=['train.py','trainer.max_epochs=ten']; import runpy\n"
            "try: runpy.run_path('train.py', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stdout + proc.stderr


def test_missing_ckpt_path(tmp_path):
    _fails(_run("eval.py", check=False), "ckpt_path")
    _fails(_run("train.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", check=False), "no such file")


def test_data_dir_without_the_files(tmp_path):
    err = _fails(_run("train.py", *QUICK, f"hydra.run.dir={tmp_path / 'run'}", "data=fashion_mnist",
                            f"data.data_dir={tmp_path}", "data.download=false", check=False),
                 "train-images-idx3-ubyte.gz", "data.data_dir")
    assert len(err.strip().splitlines()) <= 3


def test_checkpoint_of_another_task_is_refused(tmp_path):
    fake = tmp_path / "other.ckpt"
    torch.save({"gradlab": {"task": "src.tasks.translation.Translation"}, "hyper_parameters": {},
                "state_dict": {}}, fake)
    _fails(_run("train.py", *QUICK, f"hydra.run.dir={tmp_path / 'run'}", f"ckpt_path={fake}", check=False),
           "task=translation", "task=image")


def test_a_corrupt_or_empty_checkpoint_is_refused_in_one_line(tmp_path):
    """A truncated file, and 0 bytes, as a full disk or a cut copy leaves (the error handler itself failed on
    torch's empty error text before). train.py checks the file with the same read_checkpoint, before any data."""
    from src.checkpoint import read_checkpoint
    from src.errors import UserError

    bad, empty = tmp_path / "bad.ckpt", tmp_path / "empty.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    empty.write_bytes(b"")
    _fails(_run("eval.py", f"ckpt_path={bad}", f"hydra.run.dir={tmp_path / 'run'}", check=False),
           "not a readable checkpoint")
    err = _fails(_run("predict.py", f"ckpt_path={empty}", "input=x.png", check=False),
                 f"ckpt_path={empty} is not a readable checkpoint")
    assert len(err.strip().splitlines()) == 1
    for path in (bad, empty):
        with pytest.raises(UserError, match=f"ckpt_path={path} is not a readable checkpoint"):
            read_checkpoint(str(path))


def test_missing_logger_package_is_one_line(tmp_path):
    try:
        import mlflow  # noqa: F401
        pytest.skip("mlflow is installed here")
    except ImportError:
        pass
    err = _fails(_run("train.py", "logger=mlflow", check=False), "pip install mlflow")
    assert len(err.strip().splitlines()) == 1


def test_accelerator_that_is_not_there(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    _fails(_run("train.py", "trainer=gpu", "callbacks.progress_bar=null", f"hydra.run.dir={tmp_path}",
                      check=False), "trainer:")


def test_options_of_several_types_are_accepted(compose_train):
    """precision and devices take strings as well as numbers: the type check must not refuse them, and the run
    takes them (checks and run in this process, as train.py does them)."""
    from hydra import initialize_config_dir

    from src.checks import validate

    cfg = compose_train(*QUICK, "trainer.precision=bf16-mixed", "trainer.devices=auto", "debug=fdr")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        validate(cfg, "train")
    pipeline.train(cfg)
