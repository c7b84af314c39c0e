"""Waveform augmentation for whole batches on the device: the tricks that carry a model from clean or
synthetic speech to real microphones (speed change, random time shift, gain, EQ, band-limiting, reverberation,
noise at a random SNR). All filtering is one FFT per batch; every draw comes from torch's generator, so it is seeded.
"""
from __future__ import annotations

import math

import torch


def _uniform(n: int, bounds, device) -> torch.Tensor:
    lo, hi = (float(bounds),) * 2 if isinstance(bounds, (int, float)) else (float(bounds[0]), float(bounds[1]))
    return lo + (hi - lo) * torch.rand(n, device=device)


def _chosen(n: int, p: float, device) -> torch.Tensor:
    return torch.rand(n, device=device) < p


def time_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift each clip by up to +-max_shift samples, zero-filled (not rolled round)."""
    if max_shift <= 0:
        return x
    n, length = x.shape
    shift = torch.randint(-max_shift, max_shift + 1, (n, 1), device=x.device)
    idx = torch.arange(length, device=x.device)[None, :] - shift
    valid = (idx >= 0) & (idx < length)
    return torch.where(valid, x.gather(1, idx.clamp(0, length - 1)), x.new_zeros(()))


def change_speed(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Play each clip `factor` times faster (pitch, formants and tempo together, as resampling does), about
    its centre, by linear interpolation: a cheap stand-in for a speaker with a shorter or longer vocal tract."""
    n, length = x.shape
    centre = (length - 1) / 2
    pos = centre + (torch.arange(length, device=x.device)[None, :] - centre) * factor[:, None]
    valid = (pos >= 0) & (pos <= length - 1)
    lo = pos.floor().long().clamp(0, length - 2)
    w = pos - lo
    y = x.gather(1, lo) * (1 - w) + x.gather(1, lo + 1) * w
    return torch.where(valid, y, x.new_zeros(()))


def _span(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """1.0 from each clip's first to its last sample louder than eps, 0.0 outside (N, L)."""
    loud = x.abs() > eps
    idx = torch.arange(x.shape[1], device=x.device)[None, :]
    first = torch.where(loud, idx, x.shape[1]).amin(1, keepdim=True)
    last = torch.where(loud, idx, -1).amax(1, keepdim=True)
    return ((idx >= first) & (idx <= last)).float()


def colored_noise(n: int, length: int, exponent: torch.Tensor, device) -> torch.Tensor:
    """Noise with power spectrum 1/f^exponent (0 white, 1 pink, 2 brown), unit RMS, one exponent per clip."""
    spec = torch.randn(n, length // 2 + 1, dtype=torch.complex64, device=device)
    f = torch.arange(length // 2 + 1, device=device).clamp_min(1).float()
    spec = spec * f[None, :].pow(-exponent[:, None] / 2)
    noise = torch.fft.irfft(spec, n=length)
    return noise / noise.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-8)


def _eq_response(n: int, freqs: torch.Tensor, eq_db: float, bands: int = 8) -> torch.Tensor:
    """Smooth random gain curves (+-eq_db at `bands` log-spaced points, interpolated in log frequency)."""
    device = freqs.device
    gains = (torch.rand(n, bands, device=device) * 2 - 1) * eq_db
    logf = torch.log(freqs.clamp_min(20.0))
    points = torch.linspace(math.log(20.0), float(logf.max()), bands, device=device)
    pos = ((logf - points[0]) / (points[1] - points[0])).clamp(0, bands - 1 - 1e-6)
    lo = pos.floor().long()
    w = pos - lo
    db = gains[:, lo] * (1 - w) + gains[:, lo + 1] * w
    return 10 ** (db / 20)


def _band_limit(n: int, freqs: torch.Tensor, p: float, bounds, highpass: bool) -> torch.Tensor:
    """Second-order-like roll-off above (below, for highpass) a random cutoff, on a random p of the clips."""
    device = freqs.device
    cutoff = _uniform(n, bounds, device)[:, None]
    ratio = freqs[None, :] / cutoff
    if highpass:
        ratio = cutoff / freqs[None, :].clamp_min(1.0)
    mag = 1 / torch.sqrt(1 + ratio.pow(8))  # 4th-order Butterworth magnitude
    chosen = _chosen(n, p, device)[:, None]
    return torch.where(chosen, mag, torch.ones_like(mag))


def _reverb_response(n: int, nfft: int, sample_rate: int, p: float, rt60, device) -> torch.Tensor:
    """Frequency responses of synthetic rooms: a direct path plus exponentially decaying noise (RT60)."""
    length = int(sample_rate * max(float(rt60[1]), 0.05))
    t = torch.arange(length, device=device).float() / sample_rate
    decay = _uniform(n, rt60, device)[:, None]
    tail = torch.randn(n, length, device=device) * torch.exp(-6.9 * t[None, :] / decay)  # -60 dB at rt60
    wet = _uniform(n, (0.1, 0.6), device)[:, None]  # tail energy relative to the direct path
    tail = tail / tail.pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-8) * wet
    tail[:, 0] = 1.0
    rir = torch.where(_chosen(n, p, device)[:, None], tail, torch.nn.functional.one_hot(
        torch.zeros(n, dtype=torch.long, device=device), length).float())
    return torch.fft.rfft(rir, n=nfft)


def augment_waveforms(x: torch.Tensor, sample_rate: int, shift_ms: float = 0.0, gain_db=None, speed=None,
                      eq_db: float = 0.0, eq_p: float = 0.0, lowpass_p: float = 0.0, lowpass_hz=(3000, 8000),
                      highpass_p: float = 0.0, highpass_hz=(50, 400), reverb_p: float = 0.0, rt60=(0.1, 0.6),
                      noise_p: float = 0.0, snr_db=(0, 30), noise_color=(0.0, 2.0),
                      noise_where: str = "all") -> torch.Tensor:
    """Augment a float batch (N, L) in [-1, 1]; each option is off at its default. See conf/data/*.yaml.

    noise_where="word" keeps the noise between each clip's first and last non-zero sample, leaving the zero
    padding of a short clip silent, as it is in recordings that were trimmed and padded (FSDD)."""
    if noise_where not in ("all", "word"):
        raise ValueError(f"noise_where={noise_where}: choose all or word")
    n, length = x.shape
    device = x.device
    if speed is not None:
        x = change_speed(x, _uniform(n, speed, device))
    x = time_shift(x, int(sample_rate * shift_ms / 1000))
    filtered = eq_p > 0 and eq_db > 0 or lowpass_p > 0 or highpass_p > 0 or reverb_p > 0
    if filtered:
        tail = int(sample_rate * float(rt60[1])) if reverb_p > 0 else 0
        nfft = 1 << (length + tail - 1).bit_length()
        freqs = torch.fft.rfftfreq(nfft, 1 / sample_rate).to(device)
        response = torch.ones(n, freqs.numel(), dtype=torch.complex64, device=device)
        if eq_p > 0 and eq_db > 0:
            eq = _eq_response(n, freqs, eq_db)
            response = response * torch.where(_chosen(n, eq_p, device)[:, None], eq, torch.ones_like(eq))
        if lowpass_p > 0:
            response = response * _band_limit(n, freqs, lowpass_p, lowpass_hz, highpass=False)
        if highpass_p > 0:
            response = response * _band_limit(n, freqs, highpass_p, highpass_hz, highpass=True)
        if reverb_p > 0:
            response = response * _reverb_response(n, nfft, sample_rate, reverb_p, rt60, device)
        x = torch.fft.irfft(torch.fft.rfft(x, n=nfft) * response, n=nfft)[:, :length]
    if noise_p > 0:
        power = x.pow(2).mean(1, keepdim=True).clamp_min(1e-10)
        snr = _uniform(n, snr_db, device)[:, None]
        noise = colored_noise(n, length, _uniform(n, noise_color, device), device)
        scale = torch.sqrt(power / 10 ** (snr / 10)) * _chosen(n, noise_p, device)[:, None]
        if noise_where == "word":
            scale = scale * _span(x)
        x = x + noise * scale
    if gain_db is not None:
        x = x * 10 ** (_uniform(n, gain_db, device)[:, None] / 20)
    return x
