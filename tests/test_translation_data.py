"""Translation data: the numbers generator, BPE tokenizers, bucketed batches, and each data module on files
written here in the real layouts (and on the real Multi30k copy where ../shared/data has it)."""
import gzip
import random

import pytest
import torch
from tokenizers import Tokenizer

from src.data.text import numbers as numbers_mod
from src.data.text.base import BOS_ID, EOS_ID, PAD_ID, UNK_ID, BucketBatchSampler, collate_pairs, encode, train_bpe
from src.data.text.multi30k import Multi30kDataModule
from src.data.text.numbers import NumbersDataModule, cardinal, generate_pairs, say_date, say_quantity, say_time
from src.data.text.parallel_text import ParallelTextDataModule
from src.data.text.translation import TranslationDataModule
from src.errors import UserError
from src.tokens import decode

SMALL = dict(train_size=600, val_size=100, test_size=100, vocab_size=200, batch_size=16)


# -- the numbers generator ------------------------------------------------------------------------------
def test_generator_is_deterministic_per_seed():
    a = generate_pairs(300, "en", "de", seed=0)
    assert a == generate_pairs(300, "en", "de", seed=0)
    assert a != generate_pairs(300, "en", "de", seed=1)


@pytest.mark.parametrize("src,tgt", [("en", "de"), ("de", "en"), ("en", "fr"), ("en", "es"), ("en", "it")])
def test_each_language_pair_gives_unique_non_empty_phrases(src, tgt):
    pairs = generate_pairs(400, src, tgt, seed=3)
    assert len(pairs) == 400 and len({s for s, _ in pairs}) == 400
    assert all(s.strip() and t.strip() and s == s.strip() and t == t.strip() for s, t in pairs)
    assert not any(c.isdigit() for s, t in pairs for c in s + t)  # every number is in words
    for kind in numbers_mod.KINDS:
        assert len(generate_pairs(20, src, tgt, seed=0, kinds=[kind])) == 20


def test_phrases_read_naturally():
    assert cardinal(342, "en") == "three hundred and forty-two" and cardinal(342, "de") == "dreihundertzweiundvierzig"
    assert say_date((25, 11, 2026), "de") == "der fünfundzwanzigste November zweitausendsechsundzwanzig"
    assert say_date((25, 11, 2026), "en") == "the twenty-fifth of November twenty twenty-six"
    assert say_date((1, 5, None), "fr") == "le premier mai"
    assert say_date((8, 3, None), "it") == "l'otto marzo"
    assert say_time((14, 30), "de") == "vierzehn Uhr dreißig" and say_time((14, 30), "fr") == "quatorze heures trente"
    assert say_time((2, 0), "en") == "two o'clock" and say_time((1, 0), "es") == "la una en punto"
    assert say_quantity((42, "mass-kilogram"), "en") == "forty-two kilograms"
    assert say_quantity((42, "mass-kilogram"), "de") == "zweiundvierzig Kilogramm"
    assert say_quantity((1, "duration-hour"), "de") == "eine Stunde"
    assert say_quantity((21, "duration-hour"), "fr") == "vingt et une heures"
    assert say_quantity((21, "length-kilometer"), "es") == "veintiún kilómetros"
    assert cardinal(118, "it") == "centodiciotto"  # num2words says "centodicotto"


def test_generator_says_when_a_kind_runs_out():
    with pytest.raises(ValueError, match="different phrases"):
        generate_pairs(2000, "en", "de", seed=0, kinds=["time"])  # 23 hours x 60 minutes
    with pytest.raises(ValueError, match="kinds"):
        generate_pairs(10, "en", "de", seed=0, kinds=["weather"])


def test_numbers_splits_are_disjoint_and_independent_of_the_training_seed(tmp_path, monkeypatch):
    dm = NumbersDataModule(data_dir=str(tmp_path), **SMALL)
    dm.setup()
    splits = dm.splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 600, "val": 100, "test": 100}
    src = {k: {s for s, _ in v} for k, v in splits.items()}
    assert not (src["train"] & src["val"]) and not (src["train"] & src["test"]) and not (src["val"] & src["test"])
    assert len(dm.val_set) == 100 and len(dm.test_set) == 100  # max_len never drops val/test pairs
    monkeypatch.setenv("PL_GLOBAL_SEED", "1234")
    again = NumbersDataModule(data_dir=str(tmp_path), **SMALL)
    assert again.splits()["test"] == splits["test"]


# -- tokenizers -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def en_de():
    return generate_pairs(2000, "en", "de", seed=0)


def test_bpe_round_trip_and_specials(en_de):
    de = train_bpe([t for _, t in en_de], vocab_size=300)
    en = train_bpe([s for s, _ in en_de], vocab_size=300)
    assert [de.token_to_id(t) for t in ("[PAD]", "[BOS]", "[EOS]", "[UNK]")] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    for tok, texts in ((de, [t for _, t in en_de[:200]]), (en, [s for s, _ in en_de[:200]])):
        for x in texts:
            assert decode(tok, encode(tok, x)) == x
    for x in ("dreihundertzweiundvierzig", "der fünfundzwanzigste November zweitausendsechsundzwanzig",
              "vierzehn Uhr dreißig"):
        ids = encode(de, x)
        assert min(ids) > UNK_ID and decode(de, ids) == x
    ids = encode(de, "zwei Uhr")
    assert decode(de, [BOS_ID, *ids, EOS_ID, *encode(de, "Kilogramm"), PAD_ID]) == "zwei Uhr"  # stops at EOS
    assert train_bpe([t for _, t in en_de], vocab_size=300).to_str() == de.to_str()  # deterministic


def test_tokenizers_are_cached_and_travel_through_info(tmp_path, monkeypatch):
    dm = NumbersDataModule(data_dir=str(tmp_path), **SMALL)
    dm.prepare_data()
    files = sorted(p.name for p in (tmp_path / "cache" / "tokenizers").iterdir())
    assert len(files) == 2 and files[0].startswith("numbers-de-") and files[1].startswith("numbers-en-")
    monkeypatch.setattr("src.data.text.translation.train_bpe", lambda *a, **k: pytest.fail("retrained"))
    dm.prepare_data()  # safe twice; the cache is used
    dm.setup()
    info = dm.info
    assert info["pad_id"] == 0 and info["bos_id"] == 1 and info["eos_id"] == 2 and info["unk_id"] == 3
    assert info["src_vocab_size"] == dm.src_tok.get_vocab_size() and not info["shared_vocab"]
    src_tok, tgt_tok = Tokenizer.from_str(info["src_tokenizer"]), Tokenizer.from_str(info["tgt_tokenizer"])
    for s, t in dm.splits()["val"][:20]:
        assert encode(src_tok, s) == encode(dm.src_tok, s) and encode(tgt_tok, t) == encode(dm.tgt_tok, t)
    sample = TranslationDataModule.read_input(dm.splits()["test"][0][0] + "\n", info)
    assert sample["src"][-1] == EOS_ID and sample["src"][:-1] == encode(dm.src_tok, dm.splits()["test"][0][0])
    batch = TranslationDataModule.collate_inputs([sample, TranslationDataModule.read_input("one", info)], info)
    assert batch["src"].shape[0] == 2 and batch["src_len"].tolist() == [len(sample["src"]), 2]
    monkeypatch.undo()
    other = NumbersDataModule(data_dir=str(tmp_path), **{**SMALL, "vocab_size": 150})
    other.prepare_data()  # another vocabulary size is another cache file
    assert len(list((tmp_path / "cache" / "tokenizers").iterdir())) == 4


def test_shared_vocabulary_is_one_tokenizer(tmp_path):
    dm = NumbersDataModule(data_dir=str(tmp_path), shared_vocab=True, **SMALL)
    info = dm.info
    assert info["src_tokenizer"] == info["tgt_tokenizer"] and info["shared_vocab"]
    assert [p.name.split("-")[1] for p in (tmp_path / "cache" / "tokenizers").iterdir()] == ["en+de"]


# -- batching -------------------------------------------------------------------------------------------
def _padding(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_bucket_sampler_covers_each_index_once_per_epoch_and_cuts_padding():
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(1003)]
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=7, bucket_factor=10)
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler) and sorted(i for b in epoch0 for i in b) == list(range(1003))
    assert all(1 <= len(b) <= 16 for b in epoch0)
    assert list(BucketBatchSampler(lengths, batch_size=16, seed=7, bucket_factor=10)) == epoch0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and sorted(i for b in epoch1 for i in b) == list(range(1003))
    sampler.set_epoch(0)
    assert list(sampler) == epoch0  # depends on (seed, epoch) only
    perm = list(range(1003))
    random.Random(1).shuffle(perm)
    random_batches = [perm[i:i + 16] for i in range(0, 1003, 16)]
    assert _padding(epoch0, lengths) < 0.3 * _padding(random_batches, lengths)

    ordered = BucketBatchSampler(lengths, batch_size=16, shuffle=False)
    batches = list(ordered)
    assert len(batches) == len(ordered) == 63 and sorted(i for b in batches for i in b) == list(range(1003))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)


def test_bucket_sampler_splits_batches_between_ranks():
    lengths = [random.Random(i).randint(1, 30) for i in range(203)]
    for shuffle in (True, False):
        ranks = [BucketBatchSampler(lengths, 8, seed=1, shuffle=shuffle, bucket_factor=4, num_replicas=3, rank=r)
                 for r in range(3)]
        seen = [list(s) for s in ranks]
        assert len({len(b) for b in seen}) == 1 and [len(s) for s in ranks] == [len(b) for b in seen]
        flat = [i for batches in seen for b in batches for i in b]
        assert len(flat) == len(set(flat))
        if shuffle:  # training drops fewer than 3 batches
            assert len(flat) > 203 - 3 * 8
        else:  # evaluation sees every example exactly once
            assert sorted(flat) == list(range(203)) and all(len(b) <= 8 for s in seen for b in s)


def test_collate_pads_and_counts():
    examples = [{"src": [5, 6, 7, EOS_ID], "tgt": [BOS_ID, 8, EOS_ID], "src_text": "a b c", "ref": "x"},
                {"src": [5, EOS_ID], "tgt": [BOS_ID, 8, 9, 10, EOS_ID], "src_text": "a", "ref": "y z"}]
    batch = collate_pairs(examples)
    assert batch["src"].shape == (2, 4) and batch["tgt"].shape == (2, 5) and batch["src"].dtype == torch.long
    assert batch["src_len"].tolist() == [4, 2] and batch["tgt_len"].tolist() == [3, 5]
    assert batch["src"][1, 2:].tolist() == [PAD_ID, PAD_ID] and batch["tgt"][0, 3:].tolist() == [PAD_ID, PAD_ID]
    assert batch["src"][1, :2].tolist() == [5, EOS_ID] and batch["ref"] == ["x", "y z"]
    assert batch["src_text"] == ["a b c", "a"]


def test_loaders_batches_and_lightning_epoch_hook(tmp_path):
    from lightning.fabric.utilities.data import _set_sampler_epoch

    dm = NumbersDataModule(data_dir=str(tmp_path), **SMALL)
    dm.setup()
    loader = dm.train_dataloader()
    assert len(loader) == len(list(loader)) and sum(len(b["ref"]) for b in loader) == len(dm.train_set)
    _set_sampler_epoch(loader, 3)  # what Lightning's fit loop calls at each epoch start
    assert loader.batch_sampler.epoch == 3
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"src", "src_len", "tgt", "tgt_len", "src_text", "ref"}
    assert (batch["src"].gather(1, batch["src_len"][:, None] - 1) == EOS_ID).all()
    assert (batch["tgt"][:, 0] == BOS_ID).all() and batch["ref"][0] in {t for _, t in dm.splits()["val"]}
    moved = dm.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert isinstance(moved["ref"], list) and torch.equal(moved["src"], batch["src"])


# -- Multi30k -------------------------------------------------------------------------------------------
def write_multi30k(root, n=(40, 6, 5), langs=("de", "en")):
    folder = root / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    words = {"de": ["ein", "Mann", "Hund", "läuft", "über", "die", "Straße"],
             "en": ["a", "man", "dog", "runs", "across", "the", "street"]}
    for prefix, count in zip(("train", "val", "test_2016_flickr"), n):
        for lang in langs:
            lines = [" ".join(words[lang][(i + j) % 7] for j in range(2 + i % 5)) + "." for i in range(count)]
            with gzip.open(folder / f"{prefix}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    return folder


def test_multi30k_reads_the_published_layout(tmp_path):
    write_multi30k(tmp_path)
    dm = Multi30kDataModule(data_dir=str(tmp_path), download=False, vocab_size=100)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (40, 6, 5)
    src, ref = dm.splits()["test"][0]
    assert src.startswith("ein ") and ref.startswith("a ")
    assert dm.test_set[0]["ref"] in {t for _, t in dm.splits()["test"]}
    assert dm.info["src_lang"] == "de" and dm.info["shared_vocab"]


def test_multi30k_names_missing_files_and_the_fixes(tmp_path, monkeypatch):
    with pytest.raises(UserError) as e:
        Multi30kDataModule(data_dir=str(tmp_path), download=False).prepare_data()
    msg = str(e.value)
    assert "train.de.gz" in msg and "test_2016_flickr.en.gz" in msg and str(tmp_path / "multi30k") in msg
    assert "data.data_dir" in msg and "data=numbers" in msg and "data.download=true" in msg

    def offline(urls, dest, checksum):
        assert "c40b37b23d6387214f8ab37335b5a8672b9745f2" in urls[0] and checksum
        raise OSError("no network")

    monkeypatch.setattr("src.data.text.multi30k.fetch", offline)
    with pytest.raises(UserError, match="could not download train.de.gz.*data=numbers"):
        Multi30kDataModule(data_dir=str(tmp_path), download=True).prepare_data()
    with pytest.raises(ValueError, match="cs"):
        Multi30kDataModule(src_lang="ja")


def test_multi30k_refuses_misaligned_files(tmp_path):
    folder = write_multi30k(tmp_path)
    with gzip.open(folder / "val.en.gz", "wt") as f:
        f.write("only one line\n")
    with pytest.raises(UserError, match="val.de.gz has 6 lines but .*val.en.gz has 1"):
        Multi30kDataModule(data_dir=str(tmp_path), download=False).setup()


def test_real_multi30k(shared_data, tmp_path):
    if not (shared_data / "multi30k").is_dir():
        pytest.skip("../shared/data/multi30k is not here")
    (tmp_path / "multi30k").symlink_to(shared_data / "multi30k")  # the tokenizer cache goes to tmp_path
    dm = Multi30kDataModule(data_dir=str(tmp_path), download=False, vocab_size=1000, max_len=1000)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (29000, 1014, 1000)
    assert dm.splits()["train"][0] == ("Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
                                       "Two young, White males are outside near many bushes.")
    src_tok = Tokenizer.from_str(dm.info["src_tokenizer"])
    assert all(decode(src_tok, e["src"]) == e["src_text"] for e in dm.val_set[:200])


# -- a user's parallel text -----------------------------------------------------------------------------
def test_parallel_text_from_a_tsv_splits_by_source(tmp_path):
    rows = [(f"source {i % 150}", f"target {i}") for i in range(300)]  # each source twice
    (tmp_path / "corpus.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in rows) + "\n", encoding="utf-8")
    dm = ParallelTextDataModule(path=str(tmp_path / "corpus.tsv"), data_dir=str(tmp_path), vocab_size=60,
                                val_fraction=0.1, test_fraction=0.1)
    dm.setup()
    splits = dm.splits()
    assert sum(len(v) for v in splits.values()) == 300 and len(splits["test"]) == 30 and len(splits["val"]) == 30
    src = {k: {s for s, _ in v} for k, v in splits.items()}
    assert not (src["train"] & src["test"]) and not (src["train"] & src["val"]) and not (src["val"] & src["test"])
    assert len(dm.train_set) == 240


def test_parallel_text_from_two_files_and_its_errors(tmp_path):
    (tmp_path / "a.txt").write_text("".join(f"eins {i}\n" for i in range(50)), encoding="utf-8")
    (tmp_path / "b.txt").write_text("".join(f"one {i}\n" for i in range(50)), encoding="utf-8")
    dm = ParallelTextDataModule(path=None, src_path=str(tmp_path / "a.txt"), tgt_path=str(tmp_path / "b.txt"),
                                data_dir=str(tmp_path), vocab_size=50)
    dm.setup()
    assert dm.splits()["val"][0][0].startswith("eins ") and sum(len(v) for v in dm.splits().values()) == 50

    (tmp_path / "c.txt").write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(UserError, match="has 50 lines but data.tgt_path=.*c.txt has 2"):
        ParallelTextDataModule(src_path=str(tmp_path / "a.txt"), tgt_path=str(tmp_path / "c.txt")).setup()
    (tmp_path / "bad.tsv").write_text("a\tb\nc\td\ne f\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 3: expected source<TAB>target"):
        ParallelTextDataModule(path=str(tmp_path / "bad.tsv")).setup()
    with pytest.raises(UserError, match="data.path=.*nothere.tsv: no such file"):
        ParallelTextDataModule(path=str(tmp_path / "nothere.tsv")).setup()
    with pytest.raises(ValueError, match="either data.path"):
        ParallelTextDataModule(path=str(tmp_path / "bad.tsv"), src_path=str(tmp_path / "a.txt"),
                               tgt_path=str(tmp_path / "b.txt"))


def test_an_unwritable_data_dir_still_works(tmp_path, monkeypatch, caplog):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("src.data.text.base.tempfile.mkstemp", read_only)
    dm = NumbersDataModule(data_dir=str(tmp_path), **SMALL)
    dm.setup()
    assert "cannot cache the tokenizer" in caplog.text
    assert dm.info["src_vocab_size"] > 4 and not list((tmp_path / "cache" / "tokenizers").glob("*.json"))
