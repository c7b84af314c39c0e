"""Test a checkpoint on its task's test split: python eval.py ckpt_path=<file.ckpt> [split=val] [data_dir=...]"""
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from src.errors import UserError

    try:
        from src.checks import validate

        validate(cfg, "eval")
        from src.pipeline import evaluate

        evaluate(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
