"""Sentiment: the models (padding never changes a prediction; each learns a tiny task), the task end to end on
a tiny SST-2 tree written in GLUE's layout (train, eval, predict), and predict.py's quoting of free text."""
from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from src.cli import quote_text
from src.models.text import POOLINGS, RNNClassifier, TextCNN, WordDropout
from tests.helpers import eval_here, predict_here, run_here, train_here

MODELS = [(RNNClassifier, {"cell": "lstm", "pooling": p}) for p in POOLINGS] + [
    (RNNClassifier, {"cell": "gru", "pooling": "max", "layers": 2, "bidirectional": False}),
    (RNNClassifier, {"ngram_buckets": 50}), (TextCNN, {"kernel_sizes": [2, 5]}),
    (TextCNN, {"ngram_buckets": 50})]


@pytest.mark.parametrize("cls,kwargs", MODELS, ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_padding_never_changes_a_prediction(cls, kwargs):
    """Each text alone, and padded in a batch (ids and n-grams) beyond the longest: the same logits."""
    torch.manual_seed(0)
    net = cls(vocab_size=40, num_classes=3, embed_dim=16, **({"hidden": 8} if cls is RNNClassifier else {}),
              **kwargs).eval()
    texts = [torch.randint(4, 40, (n,)) for n in (9, 1, 4, 2)]
    grams = [torch.randint(1, 51, (n, k)) for n, k in zip((9, 1, 4, 2), (3, 5, 2, 4))]
    for g in grams:
        g[0, -1] = 0  # a token with fewer n-grams than the widest
    batch, batch_grams = torch.zeros(4, 12, dtype=torch.long), torch.zeros(4, 12, 6, dtype=torch.long)
    for i, (t, g) in enumerate(zip(texts, grams)):
        batch[i, :len(t)] = t
        batch_grams[i, :g.shape[0], :g.shape[1]] = g
    with_grams = "ngram_buckets" in kwargs
    together = net(batch, torch.tensor([len(t) for t in texts]), batch_grams if with_grams else None)
    for i, (t, g) in enumerate(zip(texts, grams)):
        alone = net(t[None], torch.tensor([len(t)]), g[None] if with_grams else None)
        torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-5)


def test_char_ngrams_know_an_unseen_word_by_its_pieces():
    from src.data.text.base import CharNgrams

    grams = CharNgrams(3, 5, buckets=10**6)
    text = "Unflinchingly bleak"
    rows = grams(text, [(0, 13), (14, 19)])
    assert rows.shape == (2, 32) and rows.dtype.name == "int32"
    bleak = [g for g in rows[1] if g]
    assert len(bleak) == 5 + 4 + 3  # <bl ble lea eak ak>, <ble blea leak eak>, <blea bleak leak>
    assert len(set(bleak) & set(grams.token("bleakly"))) == 12 - 3  # all but ak>, eak>, leak>
    assert grams(text, [(0, 13)])[0].tolist() == CharNgrams(3, 5, 10**6).token("unflinchingly")  # lower-cased
    assert rows.min(initial=1, where=rows > 0) >= 1 and rows.max() <= 10**6


def test_word_dropout_acts_in_training_only_and_spares_padding():
    drop = WordDropout(0.5, unk_id=3, pad_id=0)
    ids = torch.tensor([[5, 6, 7, 8, 0, 0]] * 200)
    out = drop.train()(ids)
    assert (out[:, 4:] == 0).all() and 0.4 < (out[:, :4] == 3).float().mean() < 0.6
    assert torch.equal(drop.eval()(ids), ids)


def counting_task(n: int, seed: int):
    """Label 1 when token 5 occurs more often than token 6 among random filler tokens; lengths 3-15."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, 15, dtype=torch.long)
    lengths = torch.randint(3, 16, (n,), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        words = torch.randint(7, 30, (int(lengths[i]),), generator=g)
        k = int(torch.randint(1, 3, (1,), generator=g))
        pos = torch.randperm(int(lengths[i]), generator=g)[:k]
        words[pos] = 5 if y[i] else 6
        ids[i, :lengths[i]] = words
    return ids, lengths, y


@pytest.mark.parametrize("cls", [RNNClassifier, TextCNN])
def test_each_model_learns_a_tiny_task(cls):
    torch.manual_seed(0)
    net = cls(vocab_size=30, num_classes=2, embed_dim=32, dropout=0.1)
    ids, lengths, y = counting_task(512, seed=0)
    opt = torch.optim.AdamW(net.parameters(), lr=5e-3)
    net.train()
    losses = []
    for _ in range(120):
        idx = torch.randint(0, len(y), (32,))
        loss = torch.nn.functional.cross_entropy(net(ids[idx], lengths[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    ids_t, lengths_t, y_t = counting_task(200, seed=1)
    acc = (net.eval()(ids_t, lengths_t).argmax(-1) == y_t).float().mean().item()
    assert sum(losses[-10:]) < 0.3 * sum(losses[:10]) and acc > 0.95


def test_bad_model_options_are_named():
    with pytest.raises(ValueError, match="model.pooling"):
        RNNClassifier(vocab_size=10, num_classes=2, pooling="median")
    with pytest.raises(ValueError, match="model.cell"):
        RNNClassifier(vocab_size=10, num_classes=2, cell="rnn")
    with pytest.raises(ValueError, match="model.kernel_sizes"):
        TextCNN(vocab_size=10, num_classes=2, kernel_sizes=[])


@pytest.mark.parametrize("text", ["a gorgeous, witty film", "it's [great] = {yes}", "C:\\dir\\", "x'y\\'z"])
def test_predict_keeps_free_text_one_string(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arg = quote_text(["predict.py", f"input={text}"])[1]
    assert OverridesParser.create().parse_overrides([arg])[0].value() == text
    quoted = ["input='already, quoted'", "top_k=2"]
    assert quote_text(["predict.py", *quoted])[1:] == quoted


# -- end to end on a tiny SST-2 ------------------------------------------------------------------------
GOOD = ["good", "great", "witty", "gorgeous", "charming", "moving"]
BAD = ["bad", "dull", "awful", "boring", "flat", "tedious"]
FILLER = ["the", "film", "movie", "is", "a", "plot", "story", "acting", "and", "quite", "really", "its"]


def tiny_sst2(folder, seed=0):
    """GLUE's layout: SST-2/{train,dev}.tsv; train holds each sentence and some of its phrases."""
    rng = random.Random(seed)

    def sentence():
        label = rng.random() < 0.5
        words = rng.choices(FILLER, k=rng.randint(3, 8))
        words.insert(rng.randint(0, len(words)), rng.choice(GOOD if label else BAD))
        return " ".join(words), int(label)

    (folder / "SST-2").mkdir(parents=True)
    train, seen = [], set()
    for _ in range(400):
        text, label = sentence()
        words = text.split()
        for phrase in {text, " ".join(words[1:]), " ".join(words[-3:])} - seen:
            if any(w in phrase.split() for w in GOOD + BAD):
                train.append((phrase, label))
                seen.add(phrase)
    dev = [sentence() for _ in range(80)]
    for name, rows in (("train.tsv", train), ("dev.tsv", dev)):
        lines = ["sentence\tlabel"] + [f"{t} \t{y}" for t, y in rows]  # GLUE's trailing space
        (folder / "SST-2" / name).write_text("\n".join(lines) + "\n")


TINY = ["task=sentiment", "trainer.max_epochs=10", "model.embed_dim=32", "data.batch_size=32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentiment")
    tiny_sst2(root / "data")
    run_dir = root / "run"
    train_here(run_dir, *TINY, "model.hidden=16", f"data.data_dir={root / 'data'}", f"paths.cache_dir={root / 'cache'}")
    return root


@pytest.mark.slow
def test_learns_tiny_sst2_and_lists_its_surest_mistakes(trained):
    run_dir = trained / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test/acc", "test/f1", "test/auroc", "val/acc"} <= metrics.keys()
    assert metrics["test/acc"] > 0.9 and metrics["test/auroc"] > 0.95
    assert (run_dir / "confusion_matrix.png").is_file()
    lines = (run_dir / "mistakes.tsv").read_text().splitlines()
    assert lines[0] == "probability\ttrue\tpredicted\ttext"
    wrong = [line.split("\t") for line in lines[1:]]
    assert len(wrong) == round((1 - metrics["test/acc"]) * 80)
    assert [float(w[0]) for w in wrong] == sorted((float(w[0]) for w in wrong), reverse=True)
    assert all(w[1] != w[2] for w in wrong)


@pytest.mark.slow
def test_the_averaged_weights_are_what_is_validated_checkpointed_and_tested(trained):
    """task=sentiment averages its weights (callbacks.ema): the best checkpoint holds the average, and validating
    it after training repeats the val/acc the average scored when the checkpoint was chosen."""
    import csv

    run_dir = trained / "run"
    ckpt = torch.load(next((run_dir / "checkpoints").glob("best-*.ckpt")), map_location="cpu", weights_only=True)
    assert any(not torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k]) for k in ckpt["state_dict"])
    with open(next((run_dir / "csv").rglob("metrics.csv"))) as f:
        logged = [float(r["val/acc"]) for r in csv.DictReader(f) if r.get("val/acc")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(logged) == 10 + 1  # one a training epoch, then the best checkpoint validated again
    assert metrics["val/acc"] == logged[-1] == pytest.approx(max(logged[:-1]))


def test_ema_warms_up():
    from src.callbacks.ema import EMA

    average = EMA(decay=0.999)._kwargs["multi_avg_fn"]
    avg = [torch.zeros(3), torch.zeros(2, dtype=torch.float64)]
    current = [torch.ones(3), torch.ones(2, dtype=torch.float64)]
    average(avg, current, torch.tensor(0))  # decay 1/10 at first
    assert torch.allclose(avg[0], torch.full((3,), 0.9))
    assert torch.allclose(avg[1], torch.full((2,), 0.9, dtype=torch.float64))
    avg = [torch.zeros(3), torch.tensor(5)]
    average(avg, [torch.ones(3), torch.tensor(9)], torch.tensor(10_000))  # then 0.999; a counter is copied
    assert torch.allclose(avg[0], torch.full((3,), 0.001)) and avg[1].item() == 9
    with pytest.raises(ValueError, match="decay"):
        EMA(decay=1.5)


def test_ema_fast_update_matches_torchs_averaged_model():
    """The per-step update (cached tensor lists, a Python count) gives what torch's
    AveragedModel.update_parameters gives with the same average, counters (BatchNorm's) included, and goes on
    from a restored count."""
    from types import SimpleNamespace

    import lightning as L

    from src.callbacks.ema import EMA

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))

    torch.manual_seed(0)
    module = Net()
    fast, reference = EMA(decay=0.9), EMA(decay=0.9)
    fast.setup(None, module, "fit")
    reference.setup(None, module, "fit")
    for step in range(1, 8):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p))
        module.net(torch.randn(8, 3))  # running statistics and num_batches_tracked move
        if step == 4:  # a checkpoint's round trip, as at a resume: the count is read again from it
            ckpt = {"state_dict": module.state_dict()}
            fast.on_save_checkpoint(None, module, ckpt)
            fast.on_load_checkpoint(None, module, ckpt)
        fast.on_train_batch_end(SimpleNamespace(global_step=step), module, None, None, 0)
        reference._average_model.update_parameters(module)
    got, want = fast._average_model.state_dict(), reference._average_model.state_dict()
    assert got.keys() == want.keys() and int(got["n_averaged"]) == 7
    for k in want:
        assert torch.allclose(got[k].float(), want[k].float(), rtol=0, atol=1e-6), k
    assert got["module.net.1.num_batches_tracked"] == module.net[1].num_batches_tracked == 7


@pytest.mark.slow
def test_eval_uses_the_checkpoints_tokenizer(trained, tmp_path):
    ckpt = next((trained / "run" / "checkpoints").glob("best-*.ckpt"))
    shutil.rmtree(trained / "cache" / "tokenizers")
    evaluated = eval_here(tmp_path, ckpt, f"paths.cache_dir={trained / 'cache'}")
    original = json.loads((trained / "run" / "metrics.json").read_text())
    assert evaluated == pytest.approx({k: v for k, v in original.items() if k.startswith("test/")})
    assert not (trained / "cache" / "tokenizers").exists()  # nothing learnt again


@pytest.mark.slow
def test_predict_reads_text_and_files_of_lines(trained, tmp_path):
    ckpt = next((trained / "run" / "checkpoints").glob("best-*.ckpt"))
    out = run_here("predict.py", f"ckpt_path={ckpt}", "input=a gorgeous, witty film")
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert line["input"] == "a gorgeous, witty film" and line["prediction"] == "positive"
    (tmp_path / "reviews.txt").write_text("the plot is dull\n\nquite charming and moving\n")
    lines = predict_here(ckpt, f"inputs={tmp_path / 'reviews.txt'}")
    assert [x["prediction"] for x in lines] == ["negative", "positive"]
    assert all(0.5 < x["probability"] <= 1 for x in lines)


@pytest.mark.slow
def test_textcnn_trains_end_to_end(trained, tmp_path):
    metrics = train_here(tmp_path / "run", *TINY, "model=textcnn", "model.channels=16",
                         f"data.data_dir={trained / 'data'}", f"paths.cache_dir={tmp_path / 'cache'}")
    assert metrics["test/acc"] > 0.9
