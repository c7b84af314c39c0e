"""Speech front end and models: log-Mel/MFCC features, SpecAugment, a residual CNN and a CRNN.

Inputs are waveform batches (N, L) in [-1, 1]; features are (N, 1, F, T); models take (N, 1, F, T) and
return logits (N, num_classes). nn.Modules only: no Lightning, no config, no I/O.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import nn


class Features(nn.Module):
    """Log-Mel spectrogram (kind="logmel") or MFCC (kind="mfcc") of a waveform batch, computed on its device.

    Each utterance is floored `top_db` below its loudest bin (zero padding has no energy at all); with
    `floor_db`, it is also given a soft noise floor `floor_db` below its mean power (log(power + floor), the
    expected spectrum of white noise at that SNR), so the digital silence around a trimmed recording and the
    hiss around a noisy one look alike. Then it is normalised: "utterance" (zero mean, unit variance over the
    whole clip), "band" (each frequency band to zero mean over time: removes a fixed microphone or channel
    colouring; then unit variance), or "none".
    """

    def __init__(self, sample_rate: int, kind: str = "logmel", n_mels: int = 40, n_mfcc: int = 20,
                 win_ms: float = 25.0, hop_ms: float = 10.0, f_min: float = 20.0, f_max: float | None = None,
                 top_db: float = 80.0, floor_db: float | None = None, normalize: str = "band"):
        super().__init__()
        if kind not in ("logmel", "mfcc"):
            raise ValueError(f"features.kind={kind}: choose logmel or mfcc")
        if normalize not in ("utterance", "band", "none"):
            raise ValueError(f"features.normalize={normalize}: choose utterance, band or none")
        if kind == "mfcc" and n_mfcc > n_mels:
            raise ValueError(f"features.n_mfcc={n_mfcc} cannot exceed features.n_mels={n_mels}")
        win = int(round(sample_rate * win_ms / 1000))
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=1 << (win - 1).bit_length(), win_length=win,
            hop_length=int(round(sample_rate * hop_ms / 1000)), f_min=f_min, f_max=f_max or sample_rate / 2,
            n_mels=n_mels, power=2.0, norm="slaney", mel_scale="slaney")
        self.kind, self.top_db, self.normalize = kind, top_db, normalize
        self.floor_db = None if floor_db is None else float(floor_db)
        if kind == "mfcc":
            self.register_buffer("dct", torchaudio.functional.create_dct(n_mfcc, n_mels, "ortho"), persistent=False)
        self.num_features = n_mfcc if kind == "mfcc" else n_mels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = self.mel(x.float())  # (N, F, T)
            if self.floor_db is not None:
                spec = spec + spec.mean(dim=(1, 2), keepdim=True) * 10 ** (-self.floor_db / 10)
            db = 10 * torch.log10(spec.clamp_min(1e-10))
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.top_db)
            if self.kind == "mfcc":
                db = torch.einsum("nft,fk->nkt", db, self.dct)
            if self.normalize == "band":
                db = db - db.mean(dim=2, keepdim=True)
                db = db / db.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)
            elif self.normalize == "utterance":
                db = (db - db.mean(dim=(1, 2), keepdim=True)) / db.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)
        return db[:, None]


class SpecAugment(nn.Module):
    """Random frequency and time masks (Park et al., 2019), different for each example; active in training."""

    def __init__(self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 10):
        super().__init__()
        self.freq = nn.ModuleList(torchaudio.transforms.FrequencyMasking(freq_width, iid_masks=True)
                                  for _ in range(freq_masks if freq_width > 0 else 0))
        self.time = nn.ModuleList(torchaudio.transforms.TimeMasking(time_width, iid_masks=True)
                                  for _ in range(time_masks if time_width > 0 else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, F, T), normalised: masks set to 0, the mean
        if not self.training:
            return x
        for mask in (*self.freq, *self.time):
            x = mask(x)
        return x


def _conv_bn(cin: int, cout: int, stride=1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class SpeechResNet(nn.Module):
    """A compact residual CNN over the spectrogram, for keyword spotting.

    A strided stem, then one stage of residual blocks per width (each stage after the first halves
    frequency and time), global average pooling, dropout and a linear layer.
    """

    #: the layer of class scores, one row per class (the classification task's output_layer)
    output_layer = "head.3"

    def __init__(self, num_classes: int, in_features: int = 40, widths: list[int] = (32, 64, 128),
                 blocks: int = 1, stem_stride: list[int] = (1, 2), dropout: float = 0.1):
        super().__init__()
        self.stem = _conv_bn(1, widths[0], stride=tuple(stem_stride))
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(_Residual(cin, w, stride=2 if (i > 0 and b == 0) else 1))
                cin = w
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(cin, num_classes))
        # channels-last convolutions: 1.3x faster training steps on CPU (oneDNN), and what cuDNN's tensor cores want
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x.contiguous(memory_format=torch.channels_last))))


class AttentionPooling(nn.Module):
    """A learned weighted mean over time: softmax(v . tanh(W h_t)) (Bahdanau-style scores)."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (N, T, D) -> (N, D)
        weights = torch.softmax(self.score(h).squeeze(-1), dim=1)
        return torch.einsum("nt,ntd->nd", weights, h)


class CRNN(nn.Module):
    """Convolution front end (conv-BN-ReLU blocks, pooling frequency more than time), a bidirectional GRU
    over the frames, attention pooling, dropout and a linear layer."""

    #: the layer of class scores, one row per class (the classification task's output_layer)
    output_layer = "head.1"

    def __init__(self, num_classes: int, in_features: int = 40, channels: list[int] = (32, 64),
                 pool: list[list[int]] = ((2, 2), (2, 1)), hidden: int = 96, layers: int = 1,
                 dropout: float = 0.1):
        super().__init__()
        if len(pool) != len(channels):
            raise ValueError(f"model.pool needs one [freq, time] pooling per conv block ({len(channels)})")
        blocks, cin, freq = [], 1, in_features
        for c, p in zip(channels, pool):
            blocks += [*_conv_bn(cin, c), nn.MaxPool2d(tuple(p))]
            cin, freq = c, freq // p[0]
        self.conv = nn.Sequential(*blocks)
        self.rnn = nn.GRU(cin * freq, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.pool = AttentionPooling(2 * hidden)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)  # (N, C, F', T')
        h = h.flatten(1, 2).transpose(1, 2)  # (N, T', C*F')
        h, _ = self.rnn(h)
        return self.head(self.pool(h))
