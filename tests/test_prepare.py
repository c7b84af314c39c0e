"""python prepare.py: a login node downloads and builds the caches; a job without network trains from them."""
import pytest

from tests.helpers import run_here, train_here
from tests.test_sentiment import tiny_sst2


def prepare(*overrides):
    return run_here("prepare.py", *overrides, check=False)


@pytest.mark.slow
def test_prepare_builds_the_caches_a_run_then_uses(tmp_path):
    tiny_sst2(tmp_path / "data")
    data = ["task=sentiment", f"data.data_dir={tmp_path / 'data'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    proc = prepare(*data)
    assert proc.returncode == 0, proc.stderr
    assert "prepared data=sst2 (2 classes; train" in proc.stdout
    (tokenizer,) = (tmp_path / "cache" / "tokenizers").glob("sst2-word-*.json")
    learnt = tokenizer.stat().st_mtime_ns
    train_here(tmp_path / "run", *data, "data.download=false", "trainer.max_epochs=1", "model.embed_dim=16",
               "model.hidden=8")
    assert tokenizer.stat().st_mtime_ns == learnt  # the run used the prepared tokenizer, not a new one
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_prepare_names_what_is_missing_or_mistyped(tmp_path):
    missing = prepare("task=sentiment", f"data.data_dir={tmp_path}", "data.download=false")
    assert missing.returncode == 2 and "lacks train.tsv, dev.tsv" in missing.stderr
    typo = prepare("data=sst3")
    assert typo.returncode == 2 and "no data config 'sst3'; did you mean sst2?" in typo.stderr
    assert "Traceback" not in typo.stderr
