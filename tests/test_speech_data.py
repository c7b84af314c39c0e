"""The speech data modules (FSDD, Speech Commands, audio folders) on small WAV files written here in each
data set's real layout, plus the real FSDD copy in ../shared/data when it is there."""
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.data.audio import base as audio
from src.data.audio import fsdd, speech_commands
from src.data.audio.audio_folder import AudioFolderDataModule
from src.data.audio.augment import augment_waveforms
from src.data.audio.base import load_clips, read_audio
from src.data.audio.fsdd import FSDDDataModule
from src.data.audio.speech_commands import COMMANDS, WORDS, SpeechCommandsDataModule
from src.errors import UserError
from tests.helpers import ROOT

SPEAKERS = ["george", "theo", "lucas"]


def tone(seconds: float, rate: int, amp: float = 0.5, freq: float = 440.0, silence=(0.0, 0.0)) -> np.ndarray:
    """A sine of `seconds`, with silence before and after (seconds)."""
    t = np.arange(int(seconds * rate)) / rate
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.concatenate([np.zeros(int(silence[0] * rate)), x, np.zeros(int(silence[1] * rate))])


def write_wav(path: Path, x: np.ndarray, rate: int, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), rate, **kwargs)
    return path


def make_fsdd(root: Path, speakers=SPEAKERS, indices=range(7)) -> Path:
    """<root>/fsdd/recordings/{digit}_{speaker}_{index}.wav at 8 kHz; every file a tone of its own loudness,
    so that a clip can be traced back to its file."""
    rec = root / "fsdd" / "recordings"
    k = 0
    for d in range(10):
        for s in speakers:
            for i in indices:
                k += 1
                write_wav(rec / f"{d}_{s}_{i}.wav", tone(0.3, 8000, amp=0.1 + 0.002 * k, silence=(0.05, 0.05)), 8000)
    return rec


def names_of(clips: torch.Tensor, ref_clips: torch.Tensor, ref_names: list[str]) -> list[str]:
    """Which reference file each clip was read from (clips are compared byte for byte)."""
    index = {bytes(c.numpy().tobytes()): n for c, n in zip(ref_clips, ref_names)}
    assert len(index) == len(ref_names), "test files should differ"
    return [index[bytes(c.numpy().tobytes())] for c in clips]


# -- FSDD --------------------------------------------------------------------------------------------
def test_fsdd_standard_split_holds_index_0_to_4_out_for_test(tmp_path):
    rec = make_fsdd(tmp_path)
    dm = FSDDDataModule(data_dir=str(tmp_path), download=False, val_fraction=0.5, cache_dir=str(tmp_path / "cache"))
    dm.setup()
    ref, _, names = FSDDDataModule.read_folder(rec, 16000, 16000, 40.0)
    test = names_of(dm.test_set.clips, ref, names)
    rest = names_of(torch.cat([dm.train_set.clips, dm.val_set.clips]), ref, names)
    assert len(test) == 10 * 3 * 5 and all(int(n.rsplit("_", 1)[1][:-4]) < 5 for n in test)
    assert len(rest) == 10 * 3 * 2 and all(int(n.rsplit("_", 1)[1][:-4]) >= 5 for n in rest)
    assert sorted(test + rest) == sorted(names)
    assert torch.equal(torch.bincount(dm.val_set.labels, minlength=10), torch.full((10,), 3))  # stratified by digit
    for s in (dm.train_set, dm.val_set, dm.test_set):
        assert s.clips.dtype == torch.int16 and s.clips.shape[1] == 16000 and s.labels.dtype == torch.int64
    assert dm.class_names == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert [int(n[0]) for n in test] == dm.test_set.labels.tolist()
    assert dm.info["num_samples"] == 16000 and dm.info["test_sets"] == ["test"]


def test_fsdd_speaker_split_keeps_the_held_out_speaker_for_test(tmp_path):
    rec = make_fsdd(tmp_path)
    dm = FSDDDataModule(data_dir=str(tmp_path), download=False, split="speaker", test_speakers=["theo"],
                        cache_dir=None, sample_rate=8000)
    dm.setup()
    ref, _, names = FSDDDataModule.read_folder(rec, 8000, 8000, 40.0)
    test = names_of(dm.test_set.clips, ref, names)
    rest = names_of(torch.cat([dm.train_set.clips, dm.val_set.clips]), ref, names)
    assert sorted(test) == sorted(n for n in names if "_theo_" in n)
    assert not any("_theo_" in n for n in rest) and len(rest) == 2 * 70
    with pytest.raises(UserError, match=r"\['nobody'\] recorded nothing.*george"):
        FSDDDataModule(data_dir=str(tmp_path), download=False, split="speaker", test_speakers=["nobody"],
                       cache_dir=None).setup()
    with pytest.raises(ValueError, match="data.split=random"):
        FSDDDataModule(split="random")


def test_fsdd_missing_recordings_say_how_to_get_them(tmp_path):
    dm = FSDDDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(UserError, match=r"fsdd/recordings holds no recordings.*data.download=true.*data.data_dir"):
        dm.prepare_data()
    with pytest.raises(UserError, match="no such folder of FSDD recordings"):
        FSDDDataModule.read_folder(tmp_path / "nowhere", 16000, 16000, 40.0)


def fsdd_archive(tmp_path) -> tuple[Path, str]:
    """A release-shaped archive (free-spoken-digit-dataset-<tag>/recordings/*.wav) and its recordings' tree md5."""
    src = make_fsdd(tmp_path / "src", speakers=["george"], indices=range(2))
    archive = tmp_path / "release.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="free-spoken-digit-dataset-1.0.10/recordings")
        info = tarfile.TarInfo("free-spoken-digit-dataset-1.0.10/README.md")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return archive, fsdd.tree_md5(src)


def test_fsdd_download_unpacks_the_recordings_and_checks_them(tmp_path, monkeypatch):
    archive, digest = fsdd_archive(tmp_path)
    fetched = []
    monkeypatch.setattr(fsdd, "fetch", lambda urls, dest, checksum: fetched.append(urls) or
                        dest.write_bytes(archive.read_bytes()))
    monkeypatch.setattr(fsdd, "RECORDINGS_MD5", "0" * 32)
    data = tmp_path / "data"
    with pytest.raises(UserError, match="fail their checksum"):
        FSDDDataModule(data_dir=str(data), download=True).prepare_data()
    assert sorted(p.name for p in (data / "fsdd").iterdir()) == []  # neither recordings nor the bad archive
    monkeypatch.setattr(fsdd, "RECORDINGS_MD5", digest)
    FSDDDataModule(data_dir=str(data), download=True).prepare_data()
    assert sorted(p.name for p in (data / "fsdd").iterdir()) == ["recordings"]  # the archive is gone
    assert len(list((data / "fsdd" / "recordings").glob("*.wav"))) == 20
    assert fetched[0][0] == "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"


def test_fsdd_pinned_checksum_matches_the_shared_copy(shared_data):
    assert fsdd.tree_md5(shared_data / "fsdd" / "recordings") == fsdd.RECORDINGS_MD5


def test_read_folder_labels_by_first_digit_and_names_bad_files(tmp_path):
    write_wav(tmp_path / "3_me_0.wav", tone(0.2, 8000), 8000)
    write_wav(tmp_path / "7_you_12.wav", tone(0.2, 8000), 8000)
    (tmp_path / "notes.txt").write_text("not audio")
    clips, labels, names = FSDDDataModule.read_folder(tmp_path, 16000, 8000, 40.0)
    assert names == ["3_me_0.wav", "7_you_12.wav"] and labels.tolist() == [3, 7] and clips.shape == (2, 8000)
    (tmp_path / "5_me_1.wav").write_bytes(b"\x00garbage, not RIFF" * 20)
    with pytest.raises(UserError, match=r"5_me_1\.wav: not an audio file"):
        FSDDDataModule.read_folder(tmp_path, 16000, 8000, 40.0)
    (tmp_path / "5_me_1.wav").unlink()
    write_wav(tmp_path / "hello.wav", tone(0.2, 8000), 8000)
    with pytest.raises(UserError, match=r"hello\.wav: the name should start with its digit"):
        FSDDDataModule.read_folder(tmp_path, 16000, 8000, 40.0)


# -- shaping: resampling, centring, trimming -----------------------------------------------------------
def test_resampling_8k_to_16k_keeps_length_and_frequency(tmp_path):
    write_wav(tmp_path / "1_sine_0.wav", tone(1.0, 8000, freq=1000.0), 8000)
    x = read_audio(tmp_path / "1_sine_0.wav", 16000)
    assert x.shape == (16000,)
    clips, _, _ = FSDDDataModule.read_folder(tmp_path, 16000, 16000, None)
    spectrum = torch.fft.rfft(clips[0].float()).abs()
    assert clips.shape == (1, 16000) and int(spectrum.argmax()) == 1000  # 1 Hz bins


def test_short_clips_are_centred_and_long_ones_cut_in_the_middle(tmp_path):
    write_wav(tmp_path / "0_short_0.wav", np.full(4000, 0.5), 16000)  # 0.25 s of DC
    ramp = np.linspace(-0.9, 0.9, 24000)  # 1.5 s
    write_wav(tmp_path / "1_long_0.wav", ramp, 16000, subtype="FLOAT")
    clips, _, _ = FSDDDataModule.read_folder(tmp_path, 16000, 16000, None)
    loud = torch.nonzero(clips[0]).flatten()
    assert (int(loud[0]), int(loud[-1])) == (6000, 9999)
    expected = torch.from_numpy(np.round(ramp[4000:20000] * 32767)).to(torch.int16)
    assert (clips[1].int() - expected.int()).abs().max() <= 1


def test_trimming_drops_silence_so_the_word_is_centred(tmp_path):
    # a 0.2 s tone after 0.6 s of silence and before 0.2 s: untrimmed, its middle sits at 0.7 s
    write_wav(tmp_path / "0_late_0.wav", tone(0.2, 16000, silence=(0.6, 0.2)), 16000)
    for trim_db, centre in ((40.0, 8000), (None, 11200)):
        clips, _, _ = FSDDDataModule.read_folder(tmp_path, 16000, 16000, trim_db)
        loud = torch.nonzero(clips[0].abs() > 100).flatten()
        assert abs((int(loud[0]) + int(loud[-1])) / 2 - centre) < 200, trim_db


# -- the cache -----------------------------------------------------------------------------------------
def test_decoded_clips_are_cached_and_reread_when_a_file_changes(tmp_path, monkeypatch):
    rec = make_fsdd(tmp_path / "data", speakers=["george"], indices=range(6))
    cache = tmp_path / "cache"
    rec.chmod(0o555)  # data_dir may be a read-only shared copy
    try:
        first = FSDDDataModule(data_dir=str(tmp_path / "data"), download=False, cache_dir=str(cache))
        first.setup()
        assert len(list((cache / "audio").glob("*.pt"))) == 1

        def no_reading(*args, **kwargs):
            raise AssertionError("the cache should have been used")

        monkeypatch.setattr(audio, "load_clips", no_reading)
        again = FSDDDataModule(data_dir=str(tmp_path / "data"), download=False, cache_dir=str(cache))
        again.setup()
        assert torch.equal(again.test_set.clips, first.test_set.clips)
        with pytest.raises(AssertionError, match="cache should have been used"):  # another length: another key
            FSDDDataModule(data_dir=str(tmp_path / "data"), download=False, cache_dir=str(cache),
                           clip_seconds=0.5).setup()
    finally:
        rec.chmod(0o755)
    monkeypatch.setattr(audio, "load_clips", load_clips)
    write_wav(rec / "0_george_0.wav", tone(0.5, 8000, amp=0.9), 8000)
    changed = FSDDDataModule(data_dir=str(tmp_path / "data"), download=False, cache_dir=str(cache))
    changed.setup()
    assert len(list((cache / "audio").glob("*.pt"))) == 2
    assert int(changed.test_set.clips.abs().max()) > int(first.test_set.clips.abs().max())


def test_a_damaged_cache_is_rebuilt(tmp_path):
    write_wav(tmp_path / "a" / "0_x_0.wav", tone(0.2, 16000), 16000)
    clips, _, _ = FSDDDataModule.read_folder(tmp_path / "a", 16000, 4000, 40.0, cache_dir=tmp_path / "c")
    (cached,) = (tmp_path / "c" / "audio").glob("*.pt")
    cached.write_bytes(b"broken")
    again, _, _ = FSDDDataModule.read_folder(tmp_path / "a", 16000, 4000, 40.0, cache_dir=tmp_path / "c")
    assert torch.equal(again, clips)


# -- Speech Commands -------------------------------------------------------------------------------------
def make_speech_commands(root: Path, per_word: int = 3) -> Path:
    """SpeechCommands/speech_commands_v0.02/<word>/<speaker>_nohash_<n>.wav for all 35 words, the two list
    files (the first speaker's file val, the second's test) and _background_noise_/*.wav, at 16 kHz."""
    sc = root / "SpeechCommands" / "speech_commands_v0.02"
    val, test = [], []
    k = 0
    for word in WORDS:
        for s in range(per_word):
            k += 1
            rel = f"{word}/{s:08x}_nohash_0.wav"
            write_wav(sc / rel, tone(0.25, 16000, amp=0.1 + 0.005 * k, silence=(0.1, 0.1)), 16000)
            (val if s == 0 else test if s == 1 else []).append(rel)
    (sc / "validation_list.txt").write_text("\n".join(val) + "\n")
    (sc / "testing_list.txt").write_text("\n".join(test) + "\n")
    rng = np.random.default_rng(0)
    for name in ("white_noise.wav", "running_tap.wav"):
        write_wav(sc / "_background_noise_" / name, 0.3 * rng.standard_normal(16000 * 12), 16000)
    (sc / "_background_noise_" / "README.md").write_text("noise")
    (sc / "LICENSE").write_text("CC BY 4.0")
    return sc


def make_canonical(root: Path) -> Path:
    ct = root / "SpeechCommands" / "speech_commands_test_set_v0.02"
    for k, label in enumerate([*COMMANDS, "_unknown_", "_silence_"]):
        write_wav(ct / label / f"{k:08x}_nohash_0.wav", tone(0.25, 16000, amp=0.2 + 0.01 * k), 16000)
    return ct


def test_speech_commands_35_words_follow_the_official_lists(tmp_path):
    sc = make_speech_commands(tmp_path)
    dm = SpeechCommandsDataModule(data_dir=str(tmp_path), download=False, classes=35, cache_dir=None)
    dm.setup()
    paths = sorted(sc.glob("*/*_nohash_*.wav"))
    rels = [p.relative_to(sc).as_posix() for p in paths]
    ref = load_clips(paths, 16000, 16000, 40.0)
    val_list = (sc / "validation_list.txt").read_text().split()
    test_list = (sc / "testing_list.txt").read_text().split()
    assert sorted(names_of(dm.val_set.clips, ref, rels)) == sorted(val_list)
    assert sorted(names_of(dm.test_set.clips, ref, rels)) == sorted(test_list)
    train = names_of(dm.train_set.clips, ref, rels)
    assert len(train) == 35 and not set(train) & (set(val_list) | set(test_list))
    assert dm.class_names == WORDS and dm.extra_test_sets == {}
    assert [dm.class_names[y] for y in dm.test_set.labels] == [n.split("/")[0] for n in
                                                               names_of(dm.test_set.clips, ref, rels)]
    assert dm.test_set.clips.shape == (35, 16000) and dm.test_set.clips.dtype == torch.int16


def test_speech_commands_12_classes_map_other_words_to_unknown_and_cut_silence(tmp_path):
    make_speech_commands(tmp_path)
    make_canonical(tmp_path)
    dm = SpeechCommandsDataModule(data_dir=str(tmp_path), download=False, classes=12,
                                  cache_dir=str(tmp_path / "cache"))
    dm.setup()
    assert dm.class_names == [*COMMANDS, "_unknown_", "_silence_"]
    for s in (dm.train_set, dm.val_set, dm.test_set):
        counts = torch.bincount(s.labels, minlength=12)
        assert counts[:10].tolist() == [1] * 10 and counts[10] == 25  # the 25 other words are _unknown_
        assert counts[11] == round(35 / 11)  # _silence_: as many as an average class
        silence = s.clips[s.labels == 11]
        assert silence.shape == (3, 16000) and (silence != 0).float().mean() > 0.9  # noise, not zeros
    assert not set(map(bytes, dm.train_set.clips[dm.train_set.labels == 11].numpy())) & \
        set(map(bytes, dm.test_set.clips[dm.test_set.labels == 11].numpy()))
    canonical = dm.extra_test_sets["canonical"]
    assert sorted(canonical.labels.tolist()) == list(range(12)) and dm.info["test_sets"] == ["test", "canonical"]
    again = SpeechCommandsDataModule(data_dir=str(tmp_path), download=False, cache_dir=str(tmp_path / "cache"))
    again.setup()
    assert torch.equal(again.train_set.clips, dm.train_set.clips)  # the silence clips are seeded


def test_speech_commands_errors_name_the_missing_pieces(tmp_path):
    with pytest.raises(UserError, match=r"speech_commands_v0.02 is missing.*data.download=true.*data.data_dir"):
        SpeechCommandsDataModule(data_dir=str(tmp_path), download=False).prepare_data()
    sc = make_speech_commands(tmp_path, per_word=2)
    with pytest.raises(UserError, match=r"speech_commands_test_set_v0.02 is missing.*data.canonical_test=false"):
        SpeechCommandsDataModule(data_dir=str(tmp_path), download=False).prepare_data()
    (sc / "yes" / "00000001_nohash_0.wav").unlink()
    with pytest.raises(UserError, match=r"1 files named in .*testing_list.txt are missing.*yes/00000001_nohash_0"):
        SpeechCommandsDataModule(data_dir=str(tmp_path), download=False, classes=35, cache_dir=None).setup()
    (sc / "yes" / "00000001_nohash_0.wav").write_bytes(b"garbage" * 50)
    with pytest.raises(UserError, match=r"yes/00000001_nohash_0.wav: not an audio file"):
        SpeechCommandsDataModule(data_dir=str(tmp_path), download=False, classes=35, cache_dir=None).setup()
    with pytest.raises(ValueError, match="data.classes=10"):
        SpeechCommandsDataModule(classes=10)


def test_speech_commands_download_checks_the_sha256_and_unpacks(tmp_path, monkeypatch):
    sc = make_speech_commands(tmp_path / "src", per_word=1)
    archive = tmp_path / "sc.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sc, arcname=".")
    monkeypatch.setattr(speech_commands, "fetch", lambda urls, dest, checksum: dest.write_bytes(archive.read_bytes()))
    name = "speech_commands_v0.02.tar.gz"
    monkeypatch.setitem(speech_commands.ARCHIVES, name, ("0" * 64, archive.stat().st_size))
    data = tmp_path / "data"
    dm = SpeechCommandsDataModule(data_dir=str(data), download=True, classes=35, cache_dir=None)
    with pytest.raises(UserError, match=f"{name} failed its checksum"):
        dm.prepare_data()
    assert not (data / "SpeechCommands" / name).exists() and not dm.root.exists()
    monkeypatch.setitem(speech_commands.ARCHIVES, name, (speech_commands.sha256(archive), archive.stat().st_size))
    dm.prepare_data()
    assert (dm.root / "testing_list.txt").is_file() and (dm.root / "yes" / "00000000_nohash_0.wav").is_file()
    assert sorted(p.name for p in dm.root.parent.iterdir()) == ["speech_commands_v0.02"]


# -- audio folders ---------------------------------------------------------------------------------------
def make_tree(root: Path, classes=("cat", "dog", "owl"), n=10, rate=16000) -> Path:
    k = 0
    for c in classes:
        for i in range(n):
            k += 1
            ext = ["wav", "flac", "ogg"][i % 3]
            write_wav(root / c / f"{i}.{ext}", tone(0.2, rate, amp=0.1 + 0.01 * k), rate)
    return root


def test_audio_folder_splits_a_flat_tree_by_class(tmp_path):
    make_tree(tmp_path / "tree")
    dm = AudioFolderDataModule(path=str(tmp_path / "tree"), val_fraction=0.2, test_fraction=0.2,
                               cache_dir=str(tmp_path / "cache"), sample_rate=8000)
    dm.setup()
    assert dm.class_names == ["cat", "dog", "owl"]
    for s, n in ((dm.train_set, 6), (dm.val_set, 2), (dm.test_set, 2)):
        assert torch.bincount(s.labels).tolist() == [n] * 3 and s.clips.shape == (3 * n, 8000)
    everything = torch.cat([dm.train_set.clips, dm.val_set.clips, dm.test_set.clips])
    assert len({bytes(c.numpy()) for c in everything}) == 30  # disjoint, and every file (wav, flac, ogg) read


def test_audio_folder_uses_train_and_test_folders_when_there(tmp_path):
    make_tree(tmp_path / "tree" / "train", n=10)
    make_tree(tmp_path / "tree" / "test", classes=("cat", "owl"), n=4)
    dm = AudioFolderDataModule(path=str(tmp_path / "tree"), val_fraction=0.2, cache_dir=None)
    dm.setup()
    assert dm.class_names == ["cat", "dog", "owl"]
    assert torch.bincount(dm.test_set.labels).tolist() == [4, 0, 4]  # test/ as given: it lacks dog
    assert len(dm.val_set) == 6 and len(dm.train_set) == 24  # val carved out of train/
    make_tree(tmp_path / "tree" / "val", classes=("bat",), n=2)
    with pytest.raises(UserError, match=r"class folders \['bat'\] that .*train lacks"):
        AudioFolderDataModule(path=str(tmp_path / "tree"), cache_dir=None).setup()


def test_audio_folder_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match=r"data.path=.*nowhere: no such folder"):
        AudioFolderDataModule(path=str(tmp_path / "nowhere")).setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no sound files in class folders"):
        AudioFolderDataModule(path=str(tmp_path / "empty")).setup()
    make_tree(tmp_path / "one", classes=("cat",))
    with pytest.raises(UserError, match=r"only one class \(cat\)"):
        AudioFolderDataModule(path=str(tmp_path / "one"), cache_dir=None).setup()
    (tmp_path / "one" / "dog").mkdir()
    with pytest.raises(UserError, match=r"one/dog holds no sound files"):
        AudioFolderDataModule(path=str(tmp_path / "one"), cache_dir=None).setup()
    write_wav(tmp_path / "one" / "dog" / "0.wav", tone(0.2, 16000), 16000)
    (tmp_path / "one" / "dog" / "1.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(UserError, match=r"dog/1\.wav: not an audio file"):
        AudioFolderDataModule(path=str(tmp_path / "one"), cache_dir=None).setup()
    make_tree(tmp_path / "split" / "test")
    with pytest.raises(UserError, match="no train/ folder"):
        AudioFolderDataModule(path=str(tmp_path / "split")).setup()


# -- configs and the real copy ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fsdd", "speech_commands", "audio_folder"])
def test_config_builds_and_its_augmentation_runs(tmp_path, name):
    cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache")},
                            "data": OmegaConf.load(ROOT / "conf" / "data" / f"{name}.yaml")})
    if name == "audio_folder":
        cfg.data.path = str(tmp_path)
    dm = instantiate(cfg.data)
    assert dm.num_samples == 16000 and dm.batch_size == 128
    x = augment_waveforms(torch.randn(4, dm.num_samples) * 0.1, dm.sample_rate, **dm.augment)
    assert x.shape == (4, 16000) and torch.isfinite(x).all()


def test_real_fsdd_standard_split(shared_data, tmp_path):
    before = sorted((shared_data / "fsdd").rglob("*"))
    dm = FSDDDataModule(data_dir=str(shared_data), download=False, cache_dir=str(tmp_path))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (2430, 270, 300)
    assert torch.bincount(dm.test_set.labels).tolist() == [30] * 10
    assert dm.train_set.clips.shape == (2430, 16000) and dm.train_set.clips.abs().amax(1).min() > 0
    assert sorted((shared_data / "fsdd").rglob("*")) == before  # nothing written there
    assert len(list((tmp_path / "audio").glob("*.pt"))) == 1
