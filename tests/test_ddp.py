"""DDP without GPUs: 2 CPU processes over gloo, with Lightning re-launching train.py as on a cluster."""
import json

from tests.helpers import QUICK, run_script


def test_ddp_sim_trains_tests_and_writes_one_run_directory(tmp_path):
    run_dir, log_dir = tmp_path / "run", tmp_path / "outputs"
    proc = run_script("train.py", *QUICK, "trainer=ddp_sim", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}",
                      f"paths.log_dir={log_dir}", timeout=600)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.5
    # the second rank wrote into the same run directory, not a new one of its own
    assert not log_dir.exists()
    assert [p.name for p in run_dir.iterdir() if p.is_dir()].count(".hydra") == 1
    assert proc.stdout.count("run directory:") == 1  # the summary comes from rank 0 alone
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
