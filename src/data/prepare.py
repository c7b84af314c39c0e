"""Download and prepare a data set without training: python -m src.data.prepare [task=...] [data=...] [key=value ...]

For clusters whose compute nodes have no network: run this once on a login node with the same data options as
the training job (data.data_dir, data.* and paths.cache_dir); the job then finds the files, checksums verified,
and the derived caches (tokenizers, synthesised speech, decoded images) already built.
"""
from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from src.checks import CONF_DIR
    from src.errors import UserError

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=argv, return_hydra_config=True)
    except HydraException as e:
        print(f"error: {str(e).split(chr(10) + 'Config search path')[0].strip()}", file=sys.stderr)
        return 2
    start = time.time()
    try:
        from src.pipeline import _build

        datamodule = _build(cfg.data, "data")
        datamodule.prepare_data()  # downloads and checks files, builds caches
        datamodule.setup("fit")
        info = datamodule.info  # everything a run derives from the data, built now
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    classes = info.get("class_names")
    what = f"{len(classes)} classes" if classes else ", ".join(f"{k}={info[k]}" for k in ("src_lang", "tgt_lang")
                                                              if k in info)
    splits = {s: len(getattr(datamodule, f"{s}_set", None) or []) for s in ("train", "val", "test")}
    print(f"prepared data={OmegaConf.select(cfg, 'hydra.runtime.choices.data', default=cfg.data._target_)} "
          f"({what}; {', '.join(f'{k} {v}' for k, v in splits.items())}) in {time.time() - start:.1f} s", flush=True)
    print(f"data_dir: {cfg.data.get('data_dir', '-')}\ncache_dir: {cfg.data.get('cache_dir', '-')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
