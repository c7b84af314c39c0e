"""Sentiment data: SST-2, IMDB and text_csv on small files written here in their real layouts (and the UCI
sentences where ../shared/data has them), and the tokenizer each module learns, caches and hands on."""
import io
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from src.data.text import imdb as imdb_mod
from src.data.text.imdb import URL, IMDBDataModule, clean
from src.data.text.sst2 import SST2DataModule, read_tsv, sentences_of, split_by_sentence
from src.data.text.text_csv import TextCSVDataModule
from src.errors import UserError

UCI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uci_sentences"


def where(tmp_path, **kwargs) -> dict:
    """Every module reads and writes only under tmp_path."""
    return {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache"), "download": False, **kwargs}


def texts(rows) -> set[str]:
    return {t for t, _ in rows}


# -- SST-2 ------------------------------------------------------------------------------------------------
SENTENCES = {"a fine , moving film": 1, "the plot is dull": 0, "a fine cast": 1, "an empty script": 0,
             "slow and tedious": 0, "warm and funny": 1}
PARTS = {"fine , moving film": 1, "moving film": 1, "moving": 1, "fine": 1, "plot is dull": 0, "is dull": 0,
         "dull": 0, "fine cast": 1, "cast": 1, "empty script": 0, "empty": 0, "slow": 0, "tedious": 0,
         "warm": 1, "funny": 1}
SST_ROWS = list({**SENTENCES, **PARTS}.items())


def write_sst2(folder: Path) -> None:
    (folder / "SST-2").mkdir(parents=True)
    # GLUE's train.tsv ends most phrases with a space; read_tsv strips it
    train = "".join(f"{t} \t{y}\n" for t, y in SST_ROWS)
    (folder / "SST-2" / "train.tsv").write_text("sentence\tlabel\n" + train)
    (folder / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nit 's a charming journey . \t1\n"
                                              "a dull , lifeless film . \t0\n")


def test_read_tsv_checks_the_header_and_names_a_bad_line(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("sentence\tlabel\n  a fine film \t1\nsome 'quotes' \" here\t0\n")
    assert read_tsv(good) == [("a fine film", 1), ("some 'quotes' \" here", 0)]
    (tmp_path / "nohead.tsv").write_text("a fine film\t1\n")
    with pytest.raises(UserError, match="header 'sentence<TAB>label'"):
        read_tsv(tmp_path / "nohead.tsv")
    (tmp_path / "bad.tsv").write_text("sentence\tlabel\na fine film\t1\na film with no label\n")
    with pytest.raises(UserError, match=r"bad\.tsv, line 3: expected 'sentence<TAB>0 or 1'"):
        read_tsv(tmp_path / "bad.tsv")


def test_sentences_are_the_phrases_no_other_contains():
    assert sentences_of([t for t, _ in SST_ROWS]) == ["a fine , moving film", "the plot is dull", "a fine cast",
                                                      "an empty script", "slow and tedious", "warm and funny"]
    # a neutral root left out of SST-2: its largest labelled parts stand in for it
    assert sentences_of(["good acting", "good", "bad plot", "plot", "bad plot"]) == ["bad plot", "good acting"]


def test_split_by_sentence_holds_out_whole_sentences_without_their_parts():
    seeds = {split_by_sentence(SST_ROWS, 1 / 6, seed)[1][0][0]: seed for seed in range(40)}
    assert len(seeds) > 1  # the seed decides which sentence is held out
    train, val = split_by_sentence(SST_ROWS, 1 / 6, seeds["a fine , moving film"])
    assert val == [("a fine , moving film", 1)]
    gone = {"a fine , moving film", "fine , moving film", "moving film", "moving"}
    assert train == [(t, y) for t, y in SST_ROWS if t not in gone]
    assert ("fine", 1) in train  # also part of "a fine cast", a training sentence
    for seed in range(5):
        train, val = split_by_sentence(SST_ROWS, 0.34, seed)
        assert len(val) == 2 and texts(val) <= set(SENTENCES) and not texts(val) & texts(train)
        assert (train, val) == split_by_sentence(SST_ROWS, 0.34, seed)


def test_sst2_module_reads_its_folder_and_says_when_it_is_missing(tmp_path):
    with pytest.raises(UserError, match=r"SST-2.*lacks train\.tsv, dev\.tsv.*data\.download=true.*data\.data_dir"):
        SST2DataModule(**where(tmp_path)).prepare_data()
    write_sst2(tmp_path)
    splits = SST2DataModule(val_fraction=1 / 6, **where(tmp_path)).splits()
    assert splits["val"] == [("slow and tedious", 0)]  # seed 0's draw; "slow" and "tedious" go with it
    assert splits["train"] == [(t, y) for t, y in SST_ROWS if t not in ("slow and tedious", "slow", "tedious")]
    assert splits["test"] == [("it 's a charming journey .", 1), ("a dull , lifeless film .", 0)]


# -- IMDB -------------------------------------------------------------------------------------------------
def review(split: str, i: int, label: int) -> str:
    word = "wonderful" if label else "awful"
    return f"Review {split} {i}: a {word} film.<br /><br />The end<br/>truly<BR>so."


def imdb_members(n_train: int = 20, n_test: int = 5) -> dict[str, str]:
    """path -> text of an aclImdb tree: the four class folders, and what the loader must leave alone."""
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for label, cls in enumerate(("neg", "pos")):
            for i in range(n):
                rating = (1 + i % 4) if label == 0 else (7 + i % 4)
                files[f"aclImdb/{split}/{cls}/{i}_{rating}.txt"] = review(split, i, label)
        files[f"aclImdb/{split}/urls_pos.txt"] = "http://www.imdb.com/title/tt0453418/usercomments\n"
        files[f"aclImdb/{split}/labeledBow.feat"] = "9 0:9 1:1\n"
    files["aclImdb/train/unsup/0_0.txt"] = "an unlabelled review"
    files["aclImdb/imdb.vocab"] = "the\nand\n"
    return files


def write_imdb(folder: Path, **kwargs) -> None:
    for name, text in imdb_members(**kwargs).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


def test_imdb_reads_labels_cleans_breaks_and_holds_out_a_stratified_val(tmp_path):
    write_imdb(tmp_path)
    dm = IMDBDataModule(**where(tmp_path))
    s = dm.splits()
    assert dm.class_names == ["negative", "positive"]
    assert [len(s["train"]), len(s["val"]), len(s["test"])] == [36, 4, 10]
    assert Counter(y for _, y in s["val"]) == {0: 2, 1: 2} and Counter(y for _, y in s["train"]) == {0: 18, 1: 18}
    assert all((y == 1) == ("wonderful" in t) for split in s.values() for t, y in split)
    assert "Review test 3: a wonderful film. The end truly so." in texts(s["test"])
    assert not any("<br" in t.lower() or "unlabelled" in t for split in s.values() for t, _ in split)
    assert texts(s["train"]) | texts(s["val"]) == {clean(review("train", i, y)) for i in range(20) for y in (0, 1)}
    assert not texts(s["train"]) & texts(s["val"])


def test_imdb_split_is_fixed_by_its_seed_not_by_the_file_order(tmp_path, monkeypatch):
    write_imdb(tmp_path)
    a = IMDBDataModule(**where(tmp_path)).splits()
    listed = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(list(listed(self))[::-1]))  # another file system
    assert IMDBDataModule(**where(tmp_path)).splits() == a
    other = IMDBDataModule(split_seed=1, **where(tmp_path)).splits()
    assert texts(other["val"]) != texts(a["val"]) and len(other["val"]) == 4


def test_imdb_says_where_to_put_the_reviews(tmp_path):
    with pytest.raises(UserError) as e:
        IMDBDataModule(**where(tmp_path)).prepare_data()
    message = str(e.value)
    assert URL in message and str(tmp_path / "aclImdb" / "train" / "pos") in message and "data.data_dir" in message
    write_imdb(tmp_path)
    for f in (tmp_path / "aclImdb" / "test" / "neg").iterdir():
        f.unlink()
    with pytest.raises(UserError, match=r"incomplete: test/neg missing"):
        IMDBDataModule(**where(tmp_path)).prepare_data()
    with pytest.raises(ValueError, match="data.val_fraction=0"):
        IMDBDataModule(val_fraction=0, **where(tmp_path))


def tar_gz(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def fake_fetch(payload: bytes):
    def fetch(urls, dest, checksum):
        assert urls == [URL] and checksum == imdb_mod.MD5
        dest.write_bytes(payload)
        return dest
    return fetch


def test_imdb_download_unpacks_only_the_labelled_reviews(tmp_path, monkeypatch):
    monkeypatch.setattr(imdb_mod, "fetch", fake_fetch(tar_gz(imdb_members(10, 2))))
    data = tmp_path / "data"
    dm = IMDBDataModule(**{**where(data), "download": True})
    s = dm.splits()
    assert [len(s["train"]), len(s["val"]), len(s["test"])] == [18, 2, 4]
    kept = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())
    assert kept == sorted(n for n in imdb_members(10, 2) if n.endswith(".txt") and "/unsup/" not in n
                          and "urls_" not in n)
    assert sorted(p.name for p in data.iterdir()) == ["aclImdb"]  # the archive and the temporary folder are gone


def test_imdb_download_refuses_unsafe_members_and_names_the_url_offline(tmp_path, monkeypatch):
    data = tmp_path / "data"
    bad = {**imdb_members(2, 1), "aclImdb/../../evil.txt": "x"}
    monkeypatch.setattr(imdb_mod, "fetch", fake_fetch(tar_gz(bad)))
    with pytest.raises(UserError, match="unsafe member 'aclImdb/../../evil.txt'"):
        IMDBDataModule(**{**where(data), "download": True}).prepare_data()
    assert not (data / "aclImdb").exists() and not (tmp_path / "evil.txt").exists()
    assert [p.name for p in data.iterdir()] == ["aclImdb_v1.tar.gz"]

    def offline(urls, dest, checksum):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
    monkeypatch.setattr(imdb_mod, "fetch", offline)
    (data / "aclImdb_v1.tar.gz").unlink()
    with pytest.raises(UserError, match="could not download") as e:
        IMDBDataModule(**{**where(data), "download": True}).prepare_data()
    assert URL in str(e.value) and "aclImdb/train/pos" in str(e.value) and "data.data_dir" in str(e.value)


# -- text_csv ---------------------------------------------------------------------------------------------
def csv_module(tmp_path, path, **kwargs) -> TextCSVDataModule:
    return TextCSVDataModule(path=str(path), **where(tmp_path, **kwargs))


def all_rows(splits) -> list[tuple[str, int]]:
    return sorted(r for s in ("train", "val", "test") for r in splits[s])


def lines(n: int, labels=(0, 1), fmt="sentence {i} about thing {y}\t{y}") -> str:
    return "".join(fmt.format(i=i, y=labels[i % len(labels)]) + "\n" for i in range(n))


def test_csv_with_a_header_and_named_columns(tmp_path):
    f = tmp_path / "reviews.csv"
    f.write_text("id,review,sentiment\n" + "".join(f"{i},review number {i},{'pos' if i % 2 else 'neg'}\n"
                                                     for i in range(20)))
    dm = csv_module(tmp_path, f, text_column="review", label_column="sentiment")
    s = dm.splits()
    assert dm.class_names == ["neg", "pos"]
    assert all_rows(s) == sorted((f"review number {i}", i % 2) for i in range(20))
    assert [len(s["train"]), len(s["val"]), len(s["test"])] == [16, 2, 2]
    with pytest.raises(UserError, match=r"data.text_column='text' is not a column of its header \['id', 'review'"):
        csv_module(tmp_path, f, text_column="text", label_column="sentiment").splits()
    with pytest.raises(ValueError, match="data.text_column='review' is a column name, which needs a header"):
        csv_module(tmp_path, f, text_column="review", header=False)


def test_headerless_tab_file_keeps_quote_marks_and_skips_blank_lines(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text('He said "great film  \t1\n\n   \n' + lines(19) + "it's \"so\" bad.\t0\n")
    s = csv_module(tmp_path, f).splits()
    rows = all_rows(s)
    assert len(rows) == 21 and ('He said "great film', 1) in rows and ("it's \"so\" bad.", 0) in rows


def test_a_folder_of_files_like_uci_sentences_is_read_as_one(tmp_path):
    folder = tmp_path / "uci"
    folder.mkdir()
    for name in ("amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt"):
        (folder / name).write_text(lines(10, fmt=name[:4] + " sentence {i} is {y}.  \t{y}"))
    (folder / "readme.md").write_text("not data\t1\n")
    (folder / ".hidden.txt").write_text("not data\t1\n")
    dm = csv_module(tmp_path, folder)
    rows = all_rows(dm.splits())
    assert len(rows) == 30 and dm.class_names == ["0", "1"]
    assert ("yelp sentence 9 is 1.", 1) in rows and ("amaz sentence 0 is 0.", 0) in rows


def test_header_auto_both_ways(tmp_path):
    body = lines(20)
    (tmp_path / "with.tsv").write_text("sentence\tlabel\n" + body)
    (tmp_path / "without.tsv").write_text(body)
    for name in ("with.tsv", "without.tsv"):
        dm = csv_module(tmp_path, tmp_path / name)
        assert len(all_rows(dm.splits())) == 20 and dm.class_names == ["0", "1"]
    dm = csv_module(tmp_path, tmp_path / "with.tsv", header=False)  # the header read as a row: a third label
    assert len(all_rows(dm.splits())) == 21 and dm.class_names == ["0", "1", "label"]
    dm = csv_module(tmp_path, tmp_path / "without.tsv", header=True)  # the first row taken for a header
    assert len(all_rows(dm.splits())) == 19


def test_commas_in_quoted_texts(tmp_path):
    f = tmp_path / "q.csv"
    f.write_text('text,label\n"Slow, long, and dull",0\n"He said ""wow"", twice",1\n"two\nlines",1\n'
                 + lines(12, fmt="plain text {i},{y}"))
    rows = all_rows(csv_module(tmp_path, f).splits())
    assert len(rows) == 15
    assert {("Slow, long, and dull", 0), ('He said "wow", twice', 1), ("two\nlines", 1)} <= set(rows)


def test_label_names_name_the_classes(tmp_path):
    f = tmp_path / "s.tsv"
    f.write_text(lines(20))
    dm = csv_module(tmp_path, f, label_names={0: "negative", 1: "positive"})
    dm.splits()
    assert dm.class_names == ["negative", "positive"]
    dm = csv_module(tmp_path, f, label_names={"1": "positive", "0": "negative"})
    dm.splits()
    assert dm.class_names == ["negative", "positive"]
    with pytest.raises(UserError, match=r"no name for the label\(s\) \[1\]"):
        csv_module(tmp_path, f, label_names={0: "negative"}).splits()
    with pytest.raises(UserError, match="gives two labels one name"):
        csv_module(tmp_path, f, label_names={0: "same", 1: "same"}).splits()


def test_val_and_test_files_replace_their_fractions(tmp_path):
    (tmp_path / "train.tsv").write_text(lines(30) + "a test sentence\t1\n")
    (tmp_path / "val.tsv").write_text("a val sentence\t0\nanother val sentence\t1\n")
    (tmp_path / "test.tsv").write_text("a test sentence\t1\nmore test\t0\n")
    s = csv_module(tmp_path, tmp_path / "train.tsv", val_path=str(tmp_path / "val.tsv"),
                   test_path=str(tmp_path / "test.tsv")).splits()
    assert s["val"] == [("a val sentence", 0), ("another val sentence", 1)]
    assert s["test"] == [("a test sentence", 1), ("more test", 0)]
    assert len(s["train"]) == 30 and "a test sentence" not in texts(s["train"])  # no text in two splits
    s = csv_module(tmp_path, tmp_path / "train.tsv", val_path=str(tmp_path / "val.tsv"), test_fraction=0.2).splits()
    assert len(s["test"]) == 6 and len(s["train"]) == 25 and s["val"][0] == ("a val sentence", 0)


def test_no_text_is_in_two_splits(tmp_path):
    f = tmp_path / "dup.tsv"
    rows = [(f"text {i % 12}", i % 2) for i in range(36)] + [("said twice", 0), ("said twice", 1)]
    f.write_text("".join(f"{t}\t{y}\n" for t, y in rows))
    for seed in range(4):
        s = csv_module(tmp_path, f, split_seed=seed).splits()
        assert all_rows(s) == sorted(rows)
        assert not (texts(s["train"]) & texts(s["val"]) or texts(s["train"]) & texts(s["test"])
                    or texts(s["val"]) & texts(s["test"]))
        assert [len(s[k]) for k in ("val", "test")] == [3, 3]  # 13 distinct texts, 1 each for val and test
    assert csv_module(tmp_path, f).splits() == csv_module(tmp_path, f).splits()


def test_a_short_row_is_named_by_its_line(tmp_path):
    f = tmp_path / "short.tsv"
    f.write_text("fine\t1\n\nno label here\nbad\t0\n")
    with pytest.raises(UserError, match=r"short\.tsv, line 3: 1 field\(s\), too few for data.text_column=0"):
        csv_module(tmp_path, f).splits()


def test_more_than_two_classes_sort_numerically_and_stratify(tmp_path):
    f = tmp_path / "four.tsv"
    f.write_text(lines(40, labels=(10, 2, 1, 0)))
    dm = csv_module(tmp_path, f)
    s = dm.splits()
    assert dm.class_names == ["0", "1", "2", "10"]
    assert Counter(y for _, y in s["val"]) == Counter(y for _, y in s["test"]) == {0: 1, 1: 1, 2: 1, 3: 1}
    assert ("sentence 0 about thing 10", 3) in all_rows(s)


def test_a_missing_path_says_what_to_give(tmp_path):
    with pytest.raises(UserError, match=r"data.path=.*nowhere.tsv: no such file or folder. Give a .csv, .tsv or"):
        csv_module(tmp_path, tmp_path / "nowhere.tsv").prepare_data()
    with pytest.raises(ValueError, match="data.val_fraction=1.5"):
        csv_module(tmp_path, tmp_path / "nowhere.tsv", val_fraction=1.5)


@pytest.mark.skipif(not UCI.is_dir(), reason="../shared/data/uci_sentences is not here")
def test_uci_sentences(tmp_path):
    dm = csv_module(tmp_path, UCI, label_names={0: "negative", 1: "positive"})
    s = dm.splits()
    assert sum(len(s[k]) for k in ("train", "val", "test")) == 3000
    assert dm.class_names == ["negative", "positive"] and 280 <= len(s["val"]) <= 320
    assert not texts(s["train"]) & (texts(s["val"]) | texts(s["test"]))


def test_configs_compose_and_build(compose_train, tmp_path):
    from hydra.utils import instantiate

    cfg = compose_train("task=sentiment", "data=imdb")
    assert cfg.data.max_len == 400 and cfg.data.batch_size == 32
    assert isinstance(instantiate(cfg.data), IMDBDataModule)
    cfg = compose_train("task=sentiment", "data=text_csv", f"data.path={tmp_path}",
                        "data.label_names={0:negative,1:positive}")
    dm = instantiate(cfg.data)
    assert dm.label_names == {0: "negative", 1: "positive"} and dm.header == "auto"


# -- the tokenizer ----------------------------------------------------------------------------------------
def make(kind: str, folder: Path, **kwargs):
    if kind == "sst2":
        if not (folder / "SST-2").is_dir():
            write_sst2(folder)
        return SST2DataModule(val_fraction=1 / 6, **where(folder, **kwargs))
    if kind == "imdb":
        if not (folder / "aclImdb").is_dir():
            write_imdb(folder)
        return IMDBDataModule(**where(folder, **kwargs))
    f = folder / "texts.tsv"
    f.write_text(lines(30, fmt="The {i}th review is quite {y}!\t{y}"))
    return TextCSVDataModule(path=str(f), label_names={0: "negative", 1: "positive"}, **where(folder, **kwargs))


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
@pytest.mark.parametrize("kind", ["sst2", "imdb", "text_csv"])
def test_info_carries_the_tokenizer_the_data_was_encoded_with(kind, tokenizer, tmp_path, monkeypatch):
    dm = make(kind, tmp_path, tokenizer=tokenizer, vocab_size=200)
    info = dm.info
    assert info["class_names"] == ["negative", "positive"] and (info["pad_id"], info["unk_id"]) == (0, 3)
    tok = Tokenizer.from_str(info["tokenizer"])
    assert info["vocab_size"] == tok.get_vocab_size() > 4
    assert len(dm.train_set) > 10
    for e in dm.train_set:
        assert tok.encode(e["text"], add_special_tokens=False).ids == e["ids"]
    if tokenizer == "word":
        assert tok.encode("qzxjvw", add_special_tokens=False).ids == [3]
    else:  # subwords spell any word of known letters; an unseen character is [UNK]
        assert tok.encode("\u2603", add_special_tokens=False).ids[-1] == 3

    cached = list((tmp_path / "cache" / "tokenizers").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith(f"{dm.name}-{tokenizer}-")
    mtime = cached[0].stat().st_mtime_ns

    def relearn(self, texts):
        raise AssertionError("the cached tokenizer should have been used")
    monkeypatch.setattr(type(dm), "_learn", relearn)
    again = make(kind, tmp_path, tokenizer=tokenizer, vocab_size=200)
    assert again.info["tokenizer"] == info["tokenizer"]
    assert list((tmp_path / "cache" / "tokenizers").iterdir()) == cached and cached[0].stat().st_mtime_ns == mtime
