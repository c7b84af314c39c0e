"""Export a checkpoint to run without gradlab: python export.py ckpt_path=<file.ckpt> [format=onnx|torch_export]

Writes a folder with the model (ONNX, or torch.export's .pt2), model.json and, for text tasks, tokenizer.json.
"""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from src.cli import run

    return run(cfg, "export", "export")


if __name__ == "__main__":
    from src.cli import report_errors

    report_errors(main, "export")
