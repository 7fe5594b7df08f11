"""Input views of a network: the pixels, their frequency spectrum, or both side by side.

Generators leave periodic traces of their upsampling layers (transposed convolutions, nearest
or bilinear upsampling) that are faint in the pixels but stand out as peaks in the
log-amplitude Fourier spectrum (Durall et al. 2020; AstroSpy, 2024). A ``frequency`` or
``both`` view lets any registry CNN see that spectrum as image channels: the transform runs
inside :class:`galaxymorph.models.network.GalaxyNet`, so training, evaluation, prediction,
features and Grad-CAM all see the same view of the same RGB input, and the model card's
``model_kwargs["view"]`` rebuilds it.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from galaxymorph.errors import ConfigError

VIEWS = ("pixels", "frequency", "both")
#: log(|F| + EPS): an amplitude floor well below one 8-bit grey level, so empty bands of a
#: clean image do not become -inf yet the quantisation noise floor is kept.
EPS = 1e-4


def check_view(view: object) -> str:
    """``view`` when it is one of :data:`VIEWS`, else :class:`ConfigError`."""
    if view not in VIEWS:
        raise ConfigError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    return str(view)


def view_channels(view: str) -> int:
    """Input channels a backbone needs for ``view`` (RGB pixels and/or their 3 spectra)."""
    return 6 if check_view(view) == "both" else 3


@lru_cache(maxsize=16)
def _rings(height: int, width: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Ring index of every frequency of a shifted spectrum (flattened), and the one-hot
    ring matrix divided by the ring sizes: ``flat @ matrix`` is each ring's mean. A matrix
    product rather than ``scatter_add`` keeps the means deterministic on GPUs too.

    Frequencies at or beyond the Nyquist radius (the corners) form one ring: rings there hold
    a handful of frequencies each, so their own means would erase exactly the isolated
    corner peak that a stride-2 upsampler leaves at (Nyquist, Nyquist)."""
    v = torch.arange(height, dtype=torch.float32) - height // 2
    u = torch.arange(width, dtype=torch.float32) - width // 2
    radius = torch.sqrt(v[:, None] ** 2 + u[None, :] ** 2).round().long().flatten()
    radius = radius.clamp(max=min(height, width) // 2)
    onehot = torch.nn.functional.one_hot(radius).float()
    return radius.to(device), (onehot / onehot.sum(0, keepdim=True)).to(device)


def log_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Whitened log-amplitude spectrum ``(N, C, H, W)`` of images ``x`` (floats, any range).

    Per channel: ``log(|FFT| + EPS)``, centred (``fftshift``: low frequencies in the middle);
    then *azimuthally whitened*: the mean over each ring of equal radius subtracted, which
    removes the steep 1/f fall-off every galaxy image shares and leaves what is not
    rotationally typical (periodic peaks, anisotropy); then scaled to unit standard deviation
    per image and channel, so the channels sit on the scale of normalised pixels.
    """
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    spectrum = torch.fft.fftshift(torch.fft.fft2(x.float(), norm="ortho"), dim=(-2, -1))
    amp = torch.log(spectrum.abs() + EPS).reshape(n, c, h * w)
    radius, ring_mean = _rings(h, w, str(x.device))
    amp = amp - (amp @ ring_mean)[..., radius]
    amp = amp / (amp.std(dim=-1, keepdim=True) + 1e-6)
    return amp.reshape(n, c, h, w).to(x.dtype)
