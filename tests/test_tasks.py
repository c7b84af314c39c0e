"""The task's metrics against torchmetrics' functional forms, and what a checkpoint carries."""
import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from src.tasks.classification import _metrics
from src.tasks.image import ImageClassification

MODEL = {"_target_": "src.models.cnn.CNN", "widths": [8], "depth": 1}
OPT = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}
INFO = {"class_names": [str(i) for i in range(10)], "in_channels": 1, "image_size": [8, 8], "mean": [0.3],
        "std": [0.2]}


def test_metrics_stay_apart_when_a_first_batch_is_perfect():
    metrics = _metrics(10)
    y1 = torch.arange(10).repeat(3)
    perfect = torch.nn.functional.one_hot(y1, 10).float()
    torch.manual_seed(0)
    y2 = torch.randint(0, 10, (50,))
    noisy = torch.randn(50, 10)
    metrics.update(perfect, y1)
    metrics.update(noisy, y2)
    out = metrics.compute()
    logits, y = torch.cat([perfect, noisy]), torch.cat([y1, y2])
    assert torch.isclose(out["f1"], multiclass_f1_score(logits, y, 10, average="macro"))
    assert torch.isclose(out["acc"], multiclass_accuracy(logits, y, 10, average="micro"))
    assert torch.isclose(out["acc_top5"], multiclass_accuracy(logits, y, 10, top_k=5, average="micro"))


def test_image_task_normalises_uint8_like_floats():
    task = ImageClassification(model=MODEL, optimizer=OPT, data_info=INFO)
    task.eval()
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    as_float = (x.float() / 255 - 0.3) / 0.2
    assert torch.allclose(task(x), task(as_float), atol=1e-5)


def test_checkpoint_carries_everything_needed(tmp_path):
    import lightning as L

    task = ImageClassification(model=MODEL, optimizer=OPT, data_info=INFO, data={"_target_": "x.Y"})
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, max_steps=0)
    trainer.strategy.connect(task)
    path = tmp_path / "t.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)  # plain data only: loadable without trusting pickles
    assert ckpt["gradlab"]["task"] == "src.tasks.image.ImageClassification"
    again = ImageClassification.load_from_checkpoint(path, weights_only=True)
    assert again.class_names == INFO["class_names"] and again.hparams.data == {"_target_": "x.Y"}
