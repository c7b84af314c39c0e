"""Test a checkpoint on its task's test split: python eval.py ckpt_path=<file.ckpt> [split=val] [data_dir=...]"""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from src.cli import run

    return run(cfg, "eval", "evaluate")


if __name__ == "__main__":
    main()
