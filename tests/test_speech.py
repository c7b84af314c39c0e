"""The speech task: espeak-ng synthesis, augmentation, features, models, and the pipeline end to end."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from src.data.audio.augment import augment_waveforms, time_shift
from src.data.audio.espeak import synthesise
from src.data.audio.spoken_words import SpokenWordsDataModule
from src.models.audio import CRNN, Features, SpecAugment, SpeechResNet
from tests.helpers import eval_here, predict_here, run_here, train_here

VARIANTS = ["m1", "m3", "f1", "f4", "klatt", "klatt3", "croak", "m2", "iven", "steph", "max", "belinda"]


def small_words(tmp_path, **kw):
    opts = dict(words=["yes", "no", "stop"], languages=["en-us", "en-gb-x-rp"], variants=VARIANTS, per_voice=1,
                val_voices=0.2, test_voices=0.2, cache_dir=str(tmp_path))
    return SpokenWordsDataModule(**{**opts, **kw})


# -- synthesis ---------------------------------------------------------------------------------------
def test_each_list_is_synthesised_from_espeaks_initial_state():
    a = [("seven", "en-us+m3", 160, 40, 50), ("nine", "en-us+croak", 180, 60, 50)]
    b = [("left", "en-gb-x-rp+klatt", 140, 50, 70), *a]
    (_, _, first), (_, _, second) = list(synthesise([a, b], processes=2))
    (_, rate, again), = list(synthesise([a], processes=1))
    assert rate == 22050 and all(len(w) > 0.2 * rate for w in first)
    # the same list gives the same samples, whatever ran before it in the same worker
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert len(second) == 3
    # why each list needs a fresh start: in one process, the same call twice gives different samples
    from src.data.audio.espeak import _synthesise_fresh

    _, (once, twice) = _synthesise_fresh([("seven", "en-us+m3", 175, 50, 50)] * 2)
    assert len(once) != len(twice) or not np.array_equal(once, twice)


def test_spoken_words_are_deterministic_and_split_by_voice(tmp_path):
    dm = small_words(tmp_path / "one")
    split = dm.voice_split()
    assert not set(split["train"]) & set(split["val"]) and not set(split["train"]) & set(split["test"])
    assert not set(split["val"]) & set(split["test"]) and "" in split["train"]
    first = dm.generate(tmp_path / "a.pt")
    second = small_words(tmp_path / "two").generate(tmp_path / "b.pt")
    assert first["md5"] == second["md5"] and torch.equal(first["clips"], second["clips"])
    other = small_words(tmp_path / "three", seed=1).generate(tmp_path / "c.pt")
    assert other["md5"] != first["md5"]
    # every clip's voice belongs to its split
    for voice, k in zip(first["voices"], first["split"].tolist()):
        variant = voice.split("+")[1] if "+" in voice else ""
        assert variant in split[("train", "val", "test")[k]]
    assert first["clips"].shape[1] == 16000 and first["clips"].dtype == torch.int16
    assert (first["clips"].abs().amax(1) > 1000).all()  # every clip holds a word, not silence


def test_the_cache_is_reused_and_a_damaged_one_is_named(tmp_path):
    from src.errors import UserError

    dm = small_words(tmp_path)
    dm.setup()
    n = len(dm.train_set) + len(dm.val_set) + len(dm.test_set)
    assert n == 3 * 2 * (len(VARIANTS) + 1) and dm.cache_path.is_file()
    data = torch.load(dm.cache_path, weights_only=True)
    data["clips"][0, 0] += 1
    torch.save(data, dm.cache_path)
    with pytest.raises(UserError, match="checksum"):
        small_words(tmp_path).setup()


def test_bad_options_are_named(tmp_path):
    from src.errors import UserError

    with pytest.raises(ValueError, match="data.words"):
        small_words(tmp_path, words="colours")
    with pytest.raises(ValueError, match="words=digits"):
        small_words(tmp_path, real_dir=str(tmp_path))
    with pytest.raises(UserError, match="not reproducible"):
        small_words(tmp_path, variants=["m1", "whisper", "m3", "f1"]).voice_split()
    with pytest.raises(UserError, match="no variant"):
        small_words(tmp_path, variants=["m1", "nobody"]).voice_split()


# -- augmentation and features -------------------------------------------------------------------------
def test_noise_is_mixed_at_the_snr_asked_for():
    torch.manual_seed(0)
    x = torch.sin(torch.linspace(0, 2000, 16000))[None].repeat(8, 1) * 0.3
    y = augment_waveforms(x, 16000, noise_p=1.0, snr_db=(10, 10))
    snr = 10 * torch.log10(x.pow(2).mean(1) / (y - x).pow(2).mean(1))
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.2)


def test_noise_where_word_leaves_the_padding_silent():
    torch.manual_seed(0)
    x = torch.zeros(3, 2000)
    x[:, 500:1500] = torch.randn(3, 1000) * 0.1
    y = augment_waveforms(x, 16000, noise_p=1.0, snr_db=(0, 0), noise_where="word")
    assert y[:, :500].abs().max() == 0 and y[:, 1500:].abs().max() == 0
    assert (y - x)[:, 500:1500].abs().mean() > 0.05
    everywhere = augment_waveforms(x, 16000, noise_p=1.0, snr_db=(0, 0))
    assert everywhere[:, :500].abs().mean() > 0.02


def test_time_shift_fills_with_zeros_and_keeps_the_clip():
    torch.manual_seed(0)
    x = torch.zeros(4, 1000)
    x[:, 400:600] = 1.0
    y = time_shift(x, 100)
    assert torch.equal(y.sum(1), x.sum(1))  # shifted within the window, nothing wrapped round
    assert not torch.equal(y, x)


def test_low_pass_removes_high_frequencies_and_everything_is_seeded():
    x = torch.randn(16, 16000) * 0.1
    torch.manual_seed(1)
    y = augment_waveforms(x, 16000, lowpass_p=1.0, lowpass_hz=(1000, 1000))
    spec_x, spec_y = torch.fft.rfft(x).abs().pow(2), torch.fft.rfft(y).abs().pow(2)
    high = slice(4000, 8001)  # 4-8 kHz
    assert spec_y[:, high].sum() < 1e-3 * spec_x[:, high].sum()
    full = dict(shift_ms=100, gain_db=(-6, 6), eq_db=6, eq_p=0.5, lowpass_p=0.5, highpass_p=0.5, reverb_p=0.5,
                noise_p=0.5)
    torch.manual_seed(2)
    a = augment_waveforms(x, 16000, **full)
    torch.manual_seed(2)
    b = augment_waveforms(x, 16000, **full)
    assert torch.equal(a, b) and a.shape == x.shape and torch.isfinite(a).all()


@pytest.mark.parametrize("kind,rows", [("logmel", 40), ("mfcc", 20)])
def test_features_shapes_and_band_normalisation(kind, rows):
    x = torch.randn(3, 16000) * 0.1
    f = Features(16000, kind=kind)(x)
    assert f.shape == (3, 1, rows, 101)
    assert f.mean(-1).abs().max() < 1e-4  # each band has zero mean over the clip
    assert Features(8000, n_mels=32)(torch.randn(2, 8000)).shape == (2, 1, 32, 101)


def test_a_soft_noise_floor_makes_silent_and_hissing_padding_look_alike():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(8000) / 8000
    word = torch.sin(2 * torch.pi * 400 * t) * ((t > 0.4) & (t < 0.6))  # a tone in silence
    power = word.pow(2).mean()
    hiss = word + torch.randn(8000, generator=g) * (power / 10 ** 4).sqrt()  # white noise at 40 dB SNR
    x = torch.stack([word, hiss])

    def gap(f):
        out = f(x)
        return (out[0] - out[1]).abs().mean().item()

    assert gap(Features(8000, floor_db=30)) < 0.25 * gap(Features(8000))
    assert torch.equal(Features(8000, floor_db=None)(x), Features(8000)(x))


def test_spec_augment_masks_in_training_only():
    aug = SpecAugment(freq_masks=2, freq_width=8, time_masks=2, time_width=10)
    x = torch.randn(4, 1, 40, 101)
    assert torch.equal(aug.eval()(x), x)
    torch.manual_seed(0)
    y = aug.train()(x)
    assert (y == 0).float().mean() > 0.02 and ((y == x) | (y == 0)).all()


# -- models learn a tiny task ----------------------------------------------------------------------------
def tones(n: int, seed: int):
    """Three classes of noisy tone sweeps at random times: low, middle, high."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    base = torch.tensor([300.0, 1200.0, 3000.0])[y] * (1 + 0.1 * torch.rand(n, generator=g))
    t = torch.arange(16000) / 16000
    start = torch.rand(n, 1, generator=g) * 0.6
    env = ((t[None] > start) & (t[None] < start + 0.3)).float()
    x = torch.sin(2 * torch.pi * base[:, None] * t[None]) * env * 0.5
    return x + 0.05 * torch.randn(n, 16000, generator=g), y


@pytest.mark.slow
@pytest.mark.parametrize("model,size", [(SpeechResNet, {"widths": (16, 32, 32)}), (CRNN, {"channels": (16, 32)})])
def test_each_model_learns_a_tiny_task(model, size):
    torch.manual_seed(0)
    features = Features(16000, n_mels=32)
    net = model(num_classes=3, in_features=32, **size)  # narrower than the defaults: the same layers, in seconds
    x, y = tones(192, seed=0)
    feats = features(x)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    first = None
    for _ in range(60):
        idx = torch.randint(0, len(y), (32,))
        loss = torch.nn.functional.cross_entropy(net(feats[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    xt, yt = tones(96, seed=1)
    net.eval()
    acc = (net(features(xt)).argmax(-1) == yt).float().mean().item()
    assert loss.item() < 0.3 * first and acc > 0.9


# -- end to end ------------------------------------------------------------------------------------------
TINY = ["task=speech", "data.words=[yes,no,stop]", "data.languages=[en-us,en-gb-x-rp]",
        f"data.variants=[{','.join(VARIANTS)}]", "data.per_voice=4", "data.val_voices=0.2", "data.test_voices=0.2",
        "trainer.max_epochs=4", "data.batch_size=32", "model.widths=[16,32,32]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("speech")
    train_here(run_dir, *TINY, f"paths.cache_dir={run_dir / 'cache'}")
    return run_dir


@pytest.mark.slow
def test_learns_spoken_words_and_writes_its_plots(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"test/acc", "test/f1", "val/acc"} <= metrics.keys()
    assert metrics["test/acc"] > 0.6  # chance is 1/3; held-out voices
    assert (trained / "confusion_matrix.png").is_file() and (trained / "spectrograms.png").is_file()


@pytest.mark.slow
def test_eval_repeats_the_test_metrics(trained, tmp_path):
    ckpt = next((trained / "checkpoints").glob("best-*.ckpt"))
    evaluated = eval_here(tmp_path, ckpt, f"paths.cache_dir={trained / 'cache'}")
    original = json.loads((trained / "metrics.json").read_text())
    assert evaluated == pytest.approx({k: v for k, v in original.items() if k.startswith("test/")})


@pytest.mark.slow
def test_predict_names_the_word_in_a_wav_file(trained, tmp_path):
    ckpt = next((trained / "checkpoints").glob("best-*.ckpt"))
    dm = small_words(trained / "cache", per_voice=4)
    dm.setup()
    # a training clip at 8 kHz in a WAV file: predict resamples it to the model's 16 kHz
    clip = dm.train_set.clips[0].float().numpy()[::2] / 32768
    sf.write(tmp_path / "clip.wav", clip, 8000)
    (line,) = predict_here(ckpt, f"input={tmp_path / 'clip.wav'}")
    assert line["prediction"] in ("yes", "no", "stop") and 0 < line["probability"] <= 1
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    bad = run_here("predict.py", f"ckpt_path={ckpt}", f"input={tmp_path / 'junk.wav'}", check=False)
    assert bad.returncode == 2 and "junk.wav" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_real_recordings_are_scored_apart_from_the_test_split(tmp_path):
    """data.real_dir: FSDD-named WAVs are scored as real/*, never trained on."""
    digits = SpokenWordsDataModule(words="digits", languages=["en-us"], variants=VARIANTS[:6], per_voice=1,
                                   val_voices=0.2, test_voices=0.2, cache_dir=str(tmp_path / "cache"))
    digits.setup()
    real = tmp_path / "recordings"
    real.mkdir()
    for i, (x, y) in enumerate(zip(digits.test_set.clips[:20], digits.test_set.labels[:20])):
        sf.write(real / f"{int(y)}_someone_{i}.wav", x.numpy()[::2], 8000)
    run_dir = tmp_path / "run"
    metrics = train_here(run_dir, "task=speech", "data.words=digits", "data.languages=[en-us]",
                         f"data.variants=[{','.join(VARIANTS[:6])}]", "data.per_voice=1", "data.val_voices=0.2",
                         "data.test_voices=0.2", f"data.real_dir={real}", "trainer.max_epochs=1",
                         "model.widths=[8,8,8]", f"paths.cache_dir={tmp_path / 'cache'}")
    assert {"real/acc", "real/f1", "test/acc"} <= metrics.keys()
    assert (run_dir / "real_confusion_matrix.png").is_file()
