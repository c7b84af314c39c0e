from __future__ import annotations

import os

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from tests.helpers import QUICK, ROOT, SHARED_DATA

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the workers (pytest -n, one per core) share the cores: one thread each, for them and the runs they start
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def compose_train(tmp_path):
    """compose_train(*overrides) -> the composed train config, with its run directory in tmp_path."""

    def _compose(*overrides, config_name="train"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        HydraConfig().set_config(cfg)
        if "paths" not in cfg:
            return cfg
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path)
            cfg.paths.data_dir = str(tmp_path / "data")
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def quick():
    return list(QUICK)


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not here")
    return SHARED_DATA
