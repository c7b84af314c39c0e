"""Serve a checkpoint over HTTP: python serve.py ckpt_path=<file.ckpt> [port=8000] [device=auto]

Loads the model once; GET / is a page to try it, POST /predict answers JSON (src/serve.py).
"""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from src.cli import run

    return run(cfg, "serve", "serve")


if __name__ == "__main__":
    from src.cli import report_errors

    report_errors(main, "serve")
