"""Download and prepare a data set without training: python prepare.py [task=...] [data=...] [key=value ...]

For clusters whose compute nodes have no network: run this once on a login node with the same data options as
the training job (data.data_dir, data.* and paths.cache_dir); the job then finds the files, checksums verified,
and the derived caches (tokenizers, synthesised speech, decoded images) already built. Nothing is written but
the data and its caches: no run directory.
"""
import logging
import sys


def main(argv: list[str]) -> int:
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException

    from src.checks import CONF_DIR
    from src.cli import config_message, run

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = compose("train", overrides=argv, return_hydra_config=True)
        except HydraException as e:
            print(f"error: {config_message(e, 'train', argv)}", file=sys.stderr)
            return 2
        HydraConfig().set_config(cfg)
        run(cfg, "train", "prepare")  # checks what was typed first, as train.py does
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
