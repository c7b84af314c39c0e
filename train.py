"""Train a model: python train.py [task=image] [model=cnn] [data=digits] [key=value ...]; --help lists the groups.

Only Hydra is imported here, so --help and configuration mistakes are answered at once; torch and
Lightning are imported when a run really starts (src.pipeline).
"""
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from src.cli import run

    return run(cfg, "train", "train")


if __name__ == "__main__":
    from src.cli import report_errors, resume_in_place

    sys.argv = resume_in_place(sys.argv)
    report_errors(main, "train")
