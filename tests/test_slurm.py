"""hydra/launcher=slurm composes into the submission script a cluster would receive (no cluster here: the script
is made by submitit's own SLURM executor, exactly as the launcher configures it, and read back)."""
import pytest
import submitit
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from src.checks import CONF_DIR


def sbatch_script(tmp_path, monkeypatch, *overrides) -> str:
    # submitit's SLURM executor insists on finding srun; it is never run here
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}",
                                          "hydra.job.name=train", *overrides], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("SlurmLauncher")
    # what hydra_submitit_launcher's BaseSubmititLauncher.launch does with these parameters
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    return executor._executor._make_submission_file_text("python -u -m submitit.core._submit {}", "uid")


def test_a_ddp_run_becomes_one_job_of_nodes_times_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SBATCH_PARTITION", "gpu")
    monkeypatch.setenv("SBATCH_ACCOUNT", "lab42")
    script = sbatch_script(tmp_path, monkeypatch, "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    lines = set(script.splitlines())
    assert script.startswith("#!/bin/bash")
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --time=240", "#SBATCH --partition=gpu",
                 "#SBATCH --account=lab42", "#SBATCH --job-name=train", "#SBATCH --signal=USR2@120"):
        assert line in lines, (line, script)
    assert f"{tmp_path}/.submitit/" in script and "srun" in script


def test_partition_and_account_are_left_to_sbatch_when_not_set(tmp_path, monkeypatch):
    monkeypatch.delenv("SBATCH_PARTITION", raising=False)
    monkeypatch.delenv("SBATCH_ACCOUNT", raising=False)
    script = sbatch_script(tmp_path, monkeypatch, "trainer=ddp", "trainer.devices=2", "hydra.launcher.timeout_min=30")
    assert "--partition" not in script and "--account" not in script
    assert "#SBATCH --time=30" in script.splitlines() and "#SBATCH --nodes=1" in script.splitlines()


@pytest.mark.slow
def test_submitit_runs_a_sweep_end_to_end_with_its_local_executor(tmp_path):
    """The same launcher plugin with submitit's local executor: each run is a submitit job (pickled, run in its
    own process, logs under .submitit/), and the sweep still ends with one directory and metrics.json per run."""
    from tests.helpers import QUICK, run_script

    run_script("train.py", "-m", *QUICK, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
               "optimizer.lr=1e-3,3e-3", "trainer.max_epochs=1", f"paths.sweep_dir={tmp_path}", timeout=600)
    (sweep,) = tmp_path.glob("*/*")
    assert sorted(p.parent.name for p in sweep.glob("*/metrics.json")) == ["0", "1"]
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2 and (sweep / "summary.csv").is_file()
