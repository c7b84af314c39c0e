"""Predict with a checkpoint: python predict.py ckpt_path=<file.ckpt> input=<path or text> | inputs=<list file>

Prints one JSON line per input: {"input", "prediction", "probability", "top_k"}.
"""
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from src.errors import UserError

    try:
        from src.checks import validate

        validate(cfg, "predict")
        from src.pipeline import predict

        predict(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
