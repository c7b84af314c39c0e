"""The task and data contracts (src/tasks/base.py, src/data/base.py): a fifth task written only here, with its own
config node, task class and data module class and nothing added under src/ or conf/, trains through
src.pipeline.train, is evaluated and predicts; what is missing from a task or asked of it is named at once."""
import json

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf, open_dict
from torch.utils.data import DataLoader, TensorDataset

from src import pipeline
from src.callbacks.plots import ConfusionMatrixPlot
from src.data.base import DataModule
from src.errors import UserError
from src.tasks.base import Task
from tests.helpers import QUICK


class SignData(DataModule):
    """Numbers in [-1, 1], labelled by their sign. An input is a number written as text."""

    def __init__(self, size: int = 400, batch_size: int = 32, seed: int = 0):
        super().__init__()
        self.size, self.batch_size, self.seed = size, batch_size, seed

    def setup(self, stage=None):
        if self.train_set is None:
            x = torch.rand(self.size, 1, generator=torch.Generator().manual_seed(self.seed)) * 2 - 1
            y = (x[:, 0] > 0).long()
            cut = [int(self.size * f) for f in (0.6, 0.8)]
            self.train_set = TensorDataset(x[:cut[0]], y[:cut[0]])
            self.val_set = TensorDataset(x[cut[0]:cut[1]], y[cut[0]:cut[1]])
            self.test_set = TensorDataset(x[cut[1]:], y[cut[1]:])

    @property
    def info(self) -> dict:
        return {"class_names": ["negative", "positive"]}

    @staticmethod
    def read_input(raw: str, info: dict) -> torch.Tensor:
        try:
            return torch.tensor([float(raw)])
        except ValueError:
            raise UserError(f"input={raw!r} is not a number") from None

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=self.batch_size)


class SignTask(Task):
    """A linear classifier of SignData: logits from the model, accuracy logged as {val,test}/acc."""

    def model_kwargs(self):
        return {"out_features": len(self.data_info["class_names"])}

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def _accuracy(self, batch, split: str):
        x, y = batch
        self.log(f"{split}/acc", (self.net(x).argmax(-1) == y).float().mean(), batch_size=len(y))

    def validation_step(self, batch, batch_idx):
        self._accuracy(batch, "val")

    def test_step(self, batch, batch_idx):
        self._accuracy(batch, "test")

    @torch.inference_mode()
    def predict_batch(self, batch, top_k: int = 3):
        self.eval()
        p, i = torch.softmax(self.net(batch), -1).max(-1)
        return [{"prediction": self.data_info["class_names"][int(c)], "probability": round(float(q), 4)}
                for q, c in zip(p, i)]


class NoPredict(Task):
    """A task that forgot predict_batch."""


NODES = {"task": {"_target_": f"{__name__}.SignTask", "monitor": "val/acc", "mode": "max"},
         "model": {"_target_": "torch.nn.Linear", "in_features": 1},
         "data": {"_target_": f"{__name__}.SignData", "size": 400, "batch_size": 32}}


def sign_config(compose_train, *overrides, **nodes):
    """The train config with this task's nodes in place of the image task's (and without its confusion plot)."""
    cfg = compose_train(*QUICK, "trainer.max_epochs=8", "optimizer.lr=0.1", "callbacks.confusion_plot=null",
                        *overrides)
    with open_dict(cfg):
        for key, node in {**NODES, **nodes}.items():
            cfg[key] = OmegaConf.create(node)
    return cfg


def test_a_task_written_outside_src_trains_evaluates_and_predicts(compose_train, tmp_path):
    cfg = sign_config(compose_train)
    assert pipeline.train(cfg) >= 0.95
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/acc"] >= 0.95
    best = json.loads((tmp_path / "run.json").read_text())["best_checkpoint"]

    cfg = compose_train(f"ckpt_path={best}", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                        "trainer.enable_model_summary=false", config_name="eval")
    assert pipeline.evaluate(cfg)["test/acc"] == pytest.approx(metrics["test/acc"])

    cfg = compose_train(f"ckpt_path={best}", "input=-0.7", "device=cpu", config_name="predict")
    assert [r["prediction"] for r in pipeline.predict(cfg)] == ["negative"]
    cfg = compose_train(f"ckpt_path={best}", "input=a lot", "device=cpu", config_name="predict")
    with pytest.raises(UserError, match="input='a lot' is not a number"):
        pipeline.predict(cfg)


def test_a_task_without_predict_batch_fails_at_construction_naming_it(compose_train):
    cfg = sign_config(compose_train, task={**NODES["task"], "_target_": f"{__name__}.NoPredict"})
    with pytest.raises(UserError, match="abstract method predict_batch"):
        pipeline.train(cfg)


def test_a_callback_refuses_a_task_that_has_nothing_for_it(compose_train, tmp_path):
    cfg = sign_config(compose_train, "+callbacks.plot._target_=src.callbacks.plots.ConfusionMatrixPlot",
                      f"+callbacks.plot.dirpath={tmp_path}")
    with pytest.raises(UserError, match=r"ConfusionMatrixPlot needs a task that provides confusion_matrices\(\)"):
        pipeline.train(cfg)
    assert not (tmp_path / "metrics.json").exists()


def test_a_data_module_must_derive_from_the_contract(compose_train):
    cfg = sign_config(compose_train, data={"_target_": "torch.utils.data.TensorDataset"})
    with pytest.raises(UserError, match="is not a gradlab data module"):
        pipeline.train(cfg)


def test_the_callback_contract_is_checked_by_type():
    task = SignTask(model=NODES["model"], optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
                    data_info={"class_names": ["negative", "positive"]})
    with pytest.raises(UserError, match="SignTask does not"):
        ConfusionMatrixPlot(dirpath=".").setup(None, task, "fit")
