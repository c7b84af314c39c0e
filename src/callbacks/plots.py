"""Plots people would rather look at than read, drawn at test time as PNGs in the run dir (and TensorBoard):
confusion matrices, attention heat-maps (translation), spectrograms with predictions (speech), return curves (rl)."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from src.tasks.base import HasConfusion, HasCurves, HasExamples, require


def save_figure(fig, path: Path, trainer, tag: str, dpi: int = 120) -> None:
    """A figure to a PNG in the run directory and, with logger=tensorboard, to TensorBoard; then closed."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, fig, global_step=trainer.global_step)
    plt.close(fig)


def confusion_figure(matrix, class_names: list[str], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    counts = matrix.astype(float)
    rows = counts.sum(1, keepdims=True)
    rates = counts / rows.clip(min=1)
    size = min(4 + 0.45 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    return fig


class ConfusionMatrixPlot(Callback):
    """At the end of testing, draws the task's confusion matrices (HasConfusion) as confusion_matrix.png, and
    those of further test sets (speech: real recordings) as <name>_confusion_matrix.png."""

    def __init__(self, dirpath: str, filename: str = "confusion_matrix.png"):
        self.path = Path(dirpath) / filename

    def setup(self, trainer, pl_module, stage):
        require(pl_module, HasConfusion, self)

    def on_test_epoch_end(self, trainer, pl_module):
        # summed over ranks: every rank must ask
        matrices = {name: m.cpu().numpy() for name, m in pl_module.confusion_matrices().items()}
        if not trainer.is_global_zero:
            return
        for name, matrix in matrices.items():
            acc = matrix.trace() / max(1, matrix.sum())
            fig = confusion_figure(matrix, pl_module.class_names, f"{name} confusion matrix (accuracy {acc:.4f})")
            path = self.path if name == "test" else self.path.with_name(f"{name}_{self.path.name}")
            save_figure(fig, path, trainer, f"{name}/confusion_matrix", dpi=120)


def _grid(n: int, max_cols: int, width: float, height: float):
    """A figure of n panels, at most max_cols a row, each width x height inches: (fig, the n axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(max_cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def attention_figure(examples: list[dict]):
    fig, axes = _grid(len(examples), 2, 7, 5)
    for ax, ex in zip(axes, examples):
        ax.imshow(ex["weights"], cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(ex["source"])), ex["source"], rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(ex["hypothesis"])), ex["hypothesis"], fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
    fig.suptitle("attention of the greedy translation, test sentences")
    fig.tight_layout()
    return fig


class ExamplesPlot(Callback):
    """At the end of testing, draws the task's test examples (HasExamples) with `figure`, as
    <dirpath>/<filename> and under `tag` in TensorBoard. Subclasses name the three."""

    tag, filename = "", ""

    @staticmethod
    def figure(examples: list[dict]):
        raise NotImplementedError

    def __init__(self, dirpath: str, filename: str | None = None):
        self.path = Path(dirpath) / (filename or self.filename)

    def setup(self, trainer, pl_module, stage):
        require(pl_module, HasExamples, self)

    def on_test_epoch_end(self, trainer, pl_module):
        examples = pl_module.test_examples()
        if not examples or not trainer.is_global_zero:
            return
        save_figure(self.figure(examples), self.path, trainer, self.tag, dpi=110)


class AttentionPlot(ExamplesPlot):
    """Translation's test examples (source and output tokens, attention weights) as attention.png."""

    tag, filename = "test/attention", "attention.png"
    figure = staticmethod(attention_figure)


def spectrogram_figure(examples: list[dict]):
    fig, axes = _grid(len(examples), 4, 3.6, 3.0)
    for ax, ex in zip(axes, examples):
        ax.imshow(ex["features"], origin="lower", aspect="auto", cmap="magma")
        right = ex["predicted"] == ex["true"]
        ax.set_title(f"true {ex['true']}, predicted {ex['predicted']} ({ex['probability']:.2f})", fontsize=9,
                     color="black" if right else "red")
        ax.set_xlabel("frame")
        ax.set_ylabel("feature")
    fig.suptitle("features of test clips (normalised), with the model's predictions")
    fig.tight_layout()
    return fig


class SpectrogramPlot(ExamplesPlot):
    """Speech's test examples (features, true and predicted word, probability) as spectrograms.png."""

    tag, filename = "test/spectrograms", "spectrograms.png"
    figure = staticmethod(spectrogram_figure)


def return_figure(curves: dict[str, list], title: str):
    """Each training episode's return (dots) and its moving mean, and the mean evaluation return after each epoch,
    against environment steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    if curves.get("train"):
        steps, returns = np.array(curves["train"]).T
        ax.scatter(steps, returns, s=3, alpha=0.25, color="tab:blue", label="training episode")
        window = max(1, min(50, len(returns) // 10))
        mean = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], mean, color="tab:blue", label=f"training, mean of {window}")
    if curves.get("val"):
        steps, returns = np.array(curves["val"]).T
        ax.plot(steps, returns, "o-", color="tab:orange", label="evaluation (deterministic, own seeds)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


class ReturnCurvePlot(Callback):
    """returns.png in the run directory (and TensorBoard) at the end of training: the agent's learning curve."""

    def __init__(self, dirpath: str, filename: str = "returns.png"):
        self.path = Path(dirpath) / filename

    def setup(self, trainer, pl_module, stage):
        require(pl_module, HasCurves, self)

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            title = str(pl_module.data_info.get("env_id", ""))
            save_figure(return_figure(pl_module.return_curves(), title), self.path, trainer, "returns")
