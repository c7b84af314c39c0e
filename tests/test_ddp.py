"""DDP without GPUs: 2 CPU processes over gloo, with Lightning re-launching train.py as on a cluster."""
import json
import subprocess
import sys
import tarfile

import pytest

from tests.helpers import QUICK, ROOT, run_here, run_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp")
    run_dir, log_dir = tmp_path / "run", tmp_path / "outputs"
    proc = run_script("train.py", *QUICK, "trainer=ddp_sim", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}",
                      f"paths.log_dir={log_dir}", timeout=600)
    return proc, run_dir, log_dir


def test_ddp_sim_trains_tests_and_writes_one_run_directory(ddp_run):
    proc, run_dir, log_dir = ddp_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.5
    # the second rank wrote into the same run directory, not a new one of its own
    assert not log_dir.exists()
    assert [p.name for p in run_dir.iterdir() if p.is_dir()].count(".hydra") == 1
    assert proc.stdout.count("run directory:") == 1  # the summary comes from rank 0 alone
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_ddp_test_metrics_equal_a_single_process_on_an_odd_test_set(ddp_run, tmp_path):
    """digits' test split has 359 images: two ranks must split it 180/179, not pad one to 180 with a repeat."""
    _, run_dir, _ = ddp_run
    ddp = json.loads((run_dir / "metrics.json").read_text())
    ckpt = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    run_here("eval.py", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}", "trainer.accelerator=cpu")
    single = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {k: v for k, v in ddp.items() if k.startswith("test/") and k != "test/loss"} == pytest.approx(
        {k: v for k, v in single.items() if k != "test/loss"}, abs=1e-6)


def test_a_multirun_of_ddp_runs_gives_one_directory_and_one_metrics_file_per_run(tmp_path):
    proc = run_script("train.py", "-m", *QUICK, "trainer=ddp_sim", "trainer.max_epochs=1", "optimizer.lr=1e-3,3e-3",
                      f"paths.sweep_dir={tmp_path}", f"paths.log_dir={tmp_path / 'outputs'}", timeout=900)
    runs = sorted(p.parent for p in tmp_path.glob("*/*/*/metrics.json"))
    assert [r.name for r in runs] == ["0", "1"], proc.stdout[-3000:]
    # no rank-1 extras
    assert sorted(p.name for p in runs[0].parent.iterdir()) == ["0", "1", "multirun.yaml", "summary.csv"]
    assert not (tmp_path / "outputs").exists()
    for r in runs:
        assert [p.name for p in r.iterdir() if p.name == ".hydra"] == [".hydra"]


SPY = """
import os, runpy, sys, time
sys.path.insert(0, {root!r})
import src.data.image.image_folder as folder
real = folder.extract
def extract(*args, **kwargs):  # note which rank extracts, and take long enough for a racing rank to show
    with open({log!r}, "a") as f:
        f.write(os.environ["RANK"] + "\\n")
    time.sleep(3)
    return real(*args, **kwargs)
folder.extract = extract
sys.argv = [{train!r}, *sys.argv[1:]]
runpy.run_path({train!r}, run_name="__main__")
"""


def test_processes_started_together_prepare_the_data_once(tmp_path):
    """Under torchrun (as under SLURM) both processes start at once: the first extracts the archive while the other
    waits for it, instead of both extracting (or one reading a half-extracted folder)."""
    from tests.test_data import make_image_tree

    make_image_tree(tmp_path / "src" / "imgs", splits=("train", "test"), n=6)
    with tarfile.open(tmp_path / "imgs.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "imgs", arcname="imgs")
    log = tmp_path / "extracted_by"
    spy = tmp_path / "spy.py"
    spy.write_text(SPY.format(root=str(ROOT), log=str(log), train=str(ROOT / "train.py")))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(spy), *QUICK, "trainer=ddp_sim", "trainer.max_epochs=1", "data=image_folder",
                           f"data.path={tmp_path / 'imgs.tar.gz'}", f"data.data_dir={tmp_path / 'data'}",
                           "data.batch_size=8", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert log.read_text().split() == ["0"]
    assert (tmp_path / "run" / "metrics.json").is_file()
    (extracted,) = (tmp_path / "data" / "extracted").iterdir()  # one folder, no partial ones
    assert extracted.name.startswith("imgs-")  # named after the archive, and keyed by its size and time
