"""A few sample outputs per validation epoch, as a table: what the numbers mean, at a glance."""
from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from src.records import table_text
from src.tasks.base import HasMistakes, HasSamples, require

log = logging.getLogger(__name__)


class SamplesTable(Callback):
    """Shows the task's validation samples (HasSamples: a list of dicts, e.g. source / reference / hypothesis)
    as a table in the log after each validation, and adds them to TensorBoard as text."""

    def setup(self, trainer, pl_module, stage):
        require(pl_module, HasSamples, self)

    def on_validation_epoch_end(self, trainer, pl_module):
        samples = pl_module.validation_samples()
        if not samples or trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        from rich.table import Table

        columns = list(samples[0])
        table = Table(title=f"samples after epoch {trainer.current_epoch + 1}", title_justify="left", show_lines=True)
        for c in columns:
            table.add_column(c, overflow="fold")
        for s in samples:
            table.add_row(*(str(s[c]) for c in columns))
        log.info("%s", table_text(table))
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                md = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n" + "\n".join(
                    "| " + " | ".join(str(s[c]).replace("|", "\\|") for c in columns) + " |" for s in samples)
                logger.experiment.add_text("val/samples", md, global_step=trainer.global_step)


class MistakesList(Callback):
    """At the end of testing, writes the task's test mistakes (HasMistakes; sentiment: the wrong test
    predictions the model was surest of, a list of dicts) to <dirpath>/mistakes.tsv, one a line, in the task's
    order, with a header. Tabs and line breaks inside a text become spaces."""

    def __init__(self, dirpath: str, filename: str = "mistakes.tsv"):
        self.path = Path(dirpath) / filename

    def setup(self, trainer, pl_module, stage):
        require(pl_module, HasMistakes, self)

    def on_test_epoch_end(self, trainer, pl_module):
        mistakes = pl_module.test_mistakes()  # on every rank: it gathers
        if not trainer.is_global_zero:
            return
        columns = list(mistakes[0]) if mistakes else ["probability", "true", "predicted", "text"]
        lines = ["\t".join(columns)] + ["\t".join(" ".join(str(m[c]).split()) for c in columns) for m in mistakes]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
