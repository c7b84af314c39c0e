"""Test a checkpoint on its task's test split: python eval.py ckpt_path=<file.ckpt> [split=val] [data.<key>=...]"""
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from src.cli import run

    return run(cfg, "eval", "evaluate")


if __name__ == "__main__":
    from src.cli import data_overrides, report_errors

    sys.argv = data_overrides(sys.argv)  # data.path=<new place>: any key of the checkpoint's data config
    report_errors(main, "eval")
