"""Fine-tuning (src/finetune.py): init_from= starts a run from another run's weights, with the output layer fitted
to the new labels; finetune.freeze keeps parts of the model as they are; torchvision models start from
pretrained weights (model.weights), a local file of them here, since there is no network."""
from __future__ import annotations

import json
import logging

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from src.errors import UserError
from tests.helpers import TINY_IMAGE, cli, train_here


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A digits checkpoint (ten classes "0" ... "9"), trained briefly here."""
    run_dir = tmp_path_factory.mktemp("source")
    train_here(run_dir, *TINY_IMAGE, "callbacks.model_checkpoint=null")
    return run_dir / "checkpoints" / "last.ckpt"


def _three_classes(root):
    """An image folder of three classes, 0, 1 and x (the digit 7), from the embedded digits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for name, digit in (("0", 0), ("1", 1), ("x", 7)):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i, image in enumerate(d.images[d.target == digit][:30]):
            Image.fromarray((image * 255 / 16).round().astype("uint8"), mode="L").save(folder / f"{i}.png")
    return root


def _state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_other_classes_get_a_new_output_layer_and_the_body_stays_frozen(source, tmp_path, caplog):
    """Three classes where the checkpoint had ten: the output layer starts afresh (one line says so), the body is
    the source's, and frozen for the whole run (finetune.freeze=[features], epochs=null) it stays so, batch-norm
    statistics included. run.json and the run's checkpoint record the start."""
    folder = _three_classes(tmp_path / "images")
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="src.finetune"):
        train_here(run, "data=image_folder", f"data.path={folder}", "data.color=grey", "data.num_workers=0",
                   "data.batch_size=16", "data.augment.hflip=false", "trainer.max_epochs=2",
                   f"init_from={source}", "finetune.freeze=[features]", "callbacks.model_checkpoint=null")
    said = [r.getMessage() for r in caplog.records if "starts afresh" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0]
    assert "output layer (net.head.2)" in said[0] and "new: x" in said[0] and "2, 3, 4" in said[0]

    before, after = _state(source), _state(run / "checkpoints" / "last.ckpt")
    body = [k for k in before["state_dict"] if k.startswith("net.features.")]
    assert body and all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in body)
    assert after["state_dict"]["net.head.2.weight"].shape[0] == 3
    assert after["hyper_parameters"]["data_info"]["class_names"] == ["0", "1", "x"]

    started = after["gradlab"]["init_from"]
    assert started["path"] == str(source.resolve()) and started["classes"] == "output layer net.head.2 started afresh"
    assert started["epoch"] == before["epoch"] and started["run"]["seed"] == 42
    assert json.loads((run / "run.json").read_text())["init_from"] == started


class _Weights(Callback):
    """A copy of the model's weights at the end of each training epoch."""

    def __init__(self):
        self.epochs = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})


def test_frozen_parts_hold_until_their_epoch(source):
    """finetune.freeze=[features] with finetune.epochs=1: epoch 0 trains the head only (the features' weights and
    batch-norm statistics as loaded); from epoch 1 the features train too, under the same optimizer."""
    import lightning as L

    from src.checkpoint import load_task
    from src.data.image.digits import DigitsDataModule
    from src.finetune import freezer

    task = load_task(str(source))
    start = {k: v.clone() for k, v in task.net.state_dict().items()}
    seen = _Weights()
    trainer = L.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=0, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[freezer(task, ["features"], 1), seen])
    trainer.fit(task, datamodule=DigitsDataModule())
    first, second = seen.epochs
    features = [k for k in start if k.startswith("features.")]
    assert all(torch.equal(start[k], first[k]) for k in features)
    assert not torch.equal(start["head.2.weight"], first["head.2.weight"])
    trained = [k for k in features if k.endswith(".weight") and not torch.equal(first[k], second[k])]
    assert len(trained) == len([k for k in features if k.endswith(".weight")])


def test_an_unknown_part_is_named_with_the_models_parts(source):
    from src.checkpoint import load_task
    from src.finetune import freezer

    with pytest.raises(UserError, match=r"has no part 'body'; its parts are features, pool, head") as e:
        freezer(load_task(str(source)), ["features", "body"], None)
    assert "\n" not in str(e.value)


def test_the_same_classes_in_another_order_reorder_the_output_rows(source):
    from src.checkpoint import load_task, read_checkpoint
    from src.finetune import load_weights

    ckpt = read_checkpoint(str(source))
    ckpt["hyper_parameters"]["data_info"]["class_names"] = [str(i) for i in reversed(range(10))]
    task = load_task(str(source))
    record = load_weights(task, ckpt, str(source))
    assert record["classes"] == "classes reordered"
    for k in ("net.head.2.weight", "net.head.2.bias"):
        assert torch.equal(task.state_dict()[k], ckpt["state_dict"][k].flip(0))
    assert torch.equal(task.state_dict()["net.features.0.0.weight"], ckpt["state_dict"]["net.features.0.0.weight"])


def test_another_architecture_is_refused_in_one_line(source):
    from src.checkpoint import read_checkpoint
    from src.finetune import load_weights
    from src.tasks.image import ImageClassification

    ckpt = read_checkpoint(str(source))
    hp = ckpt["hyper_parameters"]
    task = ImageClassification(**{**hp, "model": {**hp["model"], "widths": [8, 16, 32]}})
    with pytest.raises(UserError, match=r"does not fit this model \(shapes differ: net\.features") as e:
        load_weights(task, ckpt, str(source))
    assert "\n" not in str(e.value)


def test_a_checkpoint_of_another_task_is_refused(source, tmp_path):
    code, _, err = cli("train.py", "task=speech", f"init_from={source}", f"hydra.run.dir={tmp_path}")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: init_from={source} is a checkpoint of task=image") and "task=speech" in err


def test_init_from_and_ckpt_path_together_are_refused(source, tmp_path):
    code, _, err = cli("train.py", f"init_from={source}", f"ckpt_path={source}", f"hydra.run.dir={tmp_path}")
    assert code == 2 and err.count("\n") == 1 and "init_from" in err and "give one" in err
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("given, said", [
    ("finetune.epochs=2", "unfreezes nothing"),
    ("finetune.epochs=0", "1 or more"),
    ("init_from=missing.ckpt", "init_from=missing.ckpt: no such file"),
])
def test_finetune_options_are_checked_before_the_run(given, said, tmp_path):
    code, _, err = cli("train.py", given, f"hydra.run.dir={tmp_path}")
    assert code == 2 and said in err and err.count("\n") == 1


@pytest.mark.parametrize("model, kwargs", [
    ("cnn.CNN", {"in_channels": 1}), ("resnet.ResNet", {"in_channels": 1, "blocks": [1, 1]}),
    ("tv.torchvision_model", {"in_channels": 1, "name": "mobilenet_v3_small"}),
    ("audio.SpeechResNet", {}), ("audio.CRNN", {}),
    ("text.RNNClassifier", {"vocab_size": 50}), ("text.TextCNN", {"vocab_size": 50})])
def test_every_classifier_names_its_output_layer(model, kwargs):
    """The layer each model declares (output_layer) is the one that gives a score per class."""
    from hydra.utils import get_method

    net = get_method(f"src.models.{model}")(num_classes=7, **kwargs)
    layer = net.get_submodule(net.output_layer)
    assert getattr(layer, "out_features", None) == 7 or getattr(layer, "out_channels", None) == 7


# -- torchvision's pretrained weights --------------------------------------------------------------------------
def test_torchvision_weights_from_a_local_file(tmp_path):
    """An ImageNet-shaped state dict (1,000 classes) in a file: the body loads, the classifier is ours (ten)."""
    import torchvision

    from src.models.tv import torchvision_model

    pretrained = torchvision.models.resnet18().state_dict()
    torch.save(pretrained, tmp_path / "resnet18.pth")
    net = torchvision_model(1, 10, "resnet18", weights=str(tmp_path / "resnet18.pth"))
    own = net.state_dict()
    assert net.output_layer == "net.fc" and own["net.fc.weight"].shape == (10, 512)
    assert all(torch.equal(own[f"net.{k}"], v) for k, v in pretrained.items() if not k.startswith("fc."))
    with pytest.raises(ValueError, match="does not fit this MobileNetV3"):
        torchvision_model(3, 10, "mobilenet_v3_small", weights=str(tmp_path / "resnet18.pth"))


def test_torchvision_default_weights_without_network_say_how(monkeypatch):
    import urllib.error

    from src.models.tv import torchvision_model

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ValueError) as e:
        torchvision_model(3, 10, "resnet18", weights="DEFAULT")
    message = str(e.value)
    assert "\n" not in message and "could not download" in message
    assert "model.weights=<path to resnet18-f37072fd.pth>" in message


def test_a_checkpoint_started_from_a_weights_file_loads_without_it(tmp_path):
    """The file of pretrained weights is needed to start the run, not to use its checkpoint."""
    import torchvision

    from src.checkpoint import load_task

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    run = tmp_path / "run"
    train_here(run, "model=torchvision", f"model.weights={weights}", "trainer.max_epochs=1",
               "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
               "callbacks.model_checkpoint=null")
    weights.unlink()
    task = load_task(str(run / "checkpoints" / "last.ckpt"))
    assert task.net.output_layer == "net.fc" and task.hparams.model["weights"] is None
