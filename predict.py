"""Predict with a checkpoint: python predict.py ckpt_path=<file.ckpt> input=<path or text> | inputs=<list file>

Prints one JSON line per input: {"input", "prediction", "probability", "top_k"}.
"""
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from src.cli import run

    return run(cfg, "predict", "predict")


if __name__ == "__main__":
    from src.cli import quote_text, report_errors

    sys.argv = quote_text(sys.argv)  # input=a gorgeous, witty film: one string, not a list to sweep
    report_errors(main, "predict")
