"""Encoders and decoders of GMMpVAE (docs/MATH.md#model, architectures).

Every architecture is built from the gated unit h = (Wx + b) ⊙ σ(Vx + c) (`GatedDense`,
`GatedConv2d`) with He (kaiming) initialisation, as in VampPrior (Tomczak & Welling 2018):

- ``mlp``: two gated dense layers of ``hidden_dim`` units each way.
- ``cnn``: gated convolutional encoder and decoder.
- ``pixel``: the cnn encoder and a PixelCNN decoder conditioned on z.

The encoder maps x (B, P) to the M Gaussian components of q(z|x): mu, logvar (B, M, D), logvar
clamped to [-6, 2]. The decoder maps z (N, D) to raw per-pixel parameters (N, P, n_params) of
the likelihood: one Bernoulli logit, or for the discretized logistic an unconstrained location
and an unconstrained log-scale — the likelihood owns any squashing (no sigmoid here).

The file reads top to bottom: initialisation, gated layers, encoder, decoders, builders.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.config import ModelConfig
from models.precision import network_scope

LOGVAR_MIN = -6.0
LOGVAR_MAX = 2.0
CONV_CHANNELS = 64  # width of the cnn encoder's deep layers and of the cnn decoder (VampPrior)
ENCODER_MAP_CHANNELS = 6  # channels of the cnn encoder's last feature map, before flattening


class Likelihood(Protocol):
    """What `Decoder.sample` needs of a likelihood (models/likelihoods.py)."""

    n_params: int

    def sample(self, params: Tensor) -> Tensor: ...


def he_init_(module: nn.Module) -> None:
    """He (kaiming-normal, fan-in) initialisation of every Linear/Conv2d weight; zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------
# Gated layers


class GatedDense(nn.Module):
    """h = (Wx + b) ⊙ σ(Vx + c); W and V are the two halves of one fused Linear (one matmul)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.linear = nn.Linear(in_features, 2 * out_features)  # rows [W; V], bias [b; c]

    def forward(self, x: Tensor) -> Tensor:
        h, g = self.linear(x).chunk(2, dim=-1)  # (..., out), (..., out)
        return h * torch.sigmoid(g)


class MaskedConv2d(nn.Conv2d):
    """A "same"-padded convolution whose kernel sees only pixels before the centre in raster
    order (PixelCNN, van den Oord et al. 2016): type ``A`` excludes the centre, type ``B``
    includes it. Rows below the centre, and pixels right of it on its row, are always zero."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type={mask_type!r} is invalid: expected 'A' or 'B'")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        c = kernel_size // 2
        mask = torch.ones_like(self.weight)  # (out, in, k, k)
        mask[:, :, c, c + (mask_type == "B") :] = 0
        mask[:, :, c + 1 :] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class GatedConv2d(nn.Module):
    """h = (W∗x + b) ⊙ σ(V∗x + c) with "same" padding (odd kernels); W and V are the two halves
    of one fused convolution's output channels. ``mask`` "A"/"B" makes it a masked convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        mask: str | None = None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size={kernel_size} is invalid: expected an odd size")
        self.out_channels = out_channels
        if mask is None:
            self.conv: nn.Conv2d = nn.Conv2d(
                in_channels, 2 * out_channels, kernel_size, stride, padding=kernel_size // 2
            )
        else:
            if stride != 1:
                raise ValueError("a masked convolution must have stride 1")
            self.conv = MaskedConv2d(in_channels, 2 * out_channels, kernel_size, mask)

    def forward(self, x: Tensor) -> Tensor:
        h, g = self.conv(x).chunk(2, dim=1)  # (N, out, H', W') each
        return h * torch.sigmoid(g)


# ----------------------------------------------------------------------------------------------
# Encoder


class ConvBody(nn.Module):
    """VampPrior's gated conv stack (7×7, 3×3/2, 5×5, 3×3/2, 3×3); x (B, P) → features (B, F).

    "Same" padding and two stride-2 layers give a ceil(H/4) × ceil(W/4) map for any H, W."""

    def __init__(self, image_shape: tuple[int, int]) -> None:
        super().__init__()
        self.image_shape = image_shape
        c = CONV_CHANNELS
        self.net = nn.Sequential(
            GatedConv2d(1, c // 2, 7),
            GatedConv2d(c // 2, c // 2, 3, stride=2),
            GatedConv2d(c // 2, c, 5),
            GatedConv2d(c, c, 3, stride=2),
            GatedConv2d(c, ENCODER_MAP_CHANNELS, 3),
        )
        h, w = (((s + 1) // 2 + 1) // 2 for s in image_shape)
        self.feature_dim = ENCODER_MAP_CHANNELS * h * w

    def forward(self, x: Tensor) -> Tensor:
        h = self.net(x.reshape(-1, 1, *self.image_shape))  # (B, 6, ceil(H/4), ceil(W/4))
        return h.flatten(1)  # (B, F)


class Encoder(nn.Module):
    """A feature body followed by linear heads to the M·D means and M·D log-variances."""

    precision: str = "fp32"  # TrainConfig.precision, set by models.precision.set_precision

    def __init__(self, body: nn.Module, feature_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.M, self.D, self.n_pixels = cfg.M, cfg.latent_dim, cfg.n_pixels
        self.body = body
        self.mu = nn.Linear(feature_dim, cfg.M * cfg.latent_dim)
        self.logvar = nn.Linear(feature_dim, cfg.M * cfg.latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, P) in [0, 1] (any leading dims) → mu, logvar (B, M, D); logvar in [-6, 2].

        The layers run at ``precision`` (`models.precision.network_scope`); mu and logvar
        leave in the input's dtype (float32 under bf16 autocast; float64 for a double model)."""
        lead = x.shape[:-1]
        with network_scope(self.precision, x.device.type):
            h = self.body(x.reshape(-1, self.n_pixels))  # (B, F)
            mu, logvar = self.mu(h), self.logvar(h)  # (B, M·D) each
        mu = mu.to(x.dtype).view(*lead, self.M, self.D)  # (B, M, D)
        logvar = F.hardtanh(logvar.to(x.dtype), LOGVAR_MIN, LOGVAR_MAX).view(*lead, self.M, self.D)
        return mu, logvar


# ----------------------------------------------------------------------------------------------
# Decoders


class Decoder(nn.Module):
    """z (N, D) [, x (N, P)] → likelihood parameters (N, P, n_params).

    ``autoregressive`` decoders (PixelCNN) need x for teacher forcing in `forward` and draw
    images pixel by pixel in `sample`; the others ignore x.
    """

    autoregressive: bool = False
    precision: str = "fp32"  # TrainConfig.precision, set by models.precision.set_precision

    def __init__(self, cfg: ModelConfig, n_params: int) -> None:
        super().__init__()
        self.image_shape = cfg.image_shape
        self.n_pixels = cfg.n_pixels
        self.latent_dim = cfg.latent_dim
        self.n_params = n_params

    def forward(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """`params` at ``precision`` (`models.precision.network_scope`), returned in z's dtype
        (float32 under bf16 autocast): the likelihood's log-density is never computed in bf16."""
        with network_scope(self.precision, z.device.type):
            out = self.params(z, x)
        return out.to(z.dtype)

    def params(self, z: Tensor, x: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, z: Tensor, likelihood: Likelihood) -> Tensor:
        """Draw one image per latent: z (N, D) → (N, P)."""
        return likelihood.sample(self(z, None))


class MLPDecoder(Decoder):
    """Two gated dense layers of ``hidden_dim`` units, then a linear map to P·n_params."""

    def __init__(self, cfg: ModelConfig, n_params: int) -> None:
        super().__init__(cfg, n_params)
        self.body = nn.Sequential(
            GatedDense(cfg.latent_dim, cfg.hidden_dim),
            GatedDense(cfg.hidden_dim, cfg.hidden_dim),
        )
        self.out = nn.Linear(cfg.hidden_dim, cfg.n_pixels * n_params)

    def params(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """z (N, D) (any leading dims) → params (N, P, n_params); x is ignored."""
        lead = z.shape[:-1]
        return self.out(self.body(z)).view(*lead, self.n_pixels, self.n_params)


def _to_params(h: Tensor, lead: torch.Size, n_params: int) -> Tensor:
    """(N, n_params, H, W) channel maps → (*lead, P, n_params), raster order."""
    return h.permute(0, 2, 3, 1).reshape(*lead, -1, n_params)


class ConvDecoder(Decoder):
    """z → two gated dense layers to a one-channel H×W map → three gated 3×3 convs → 1×1 conv
    to n_params channels (VampPrior's convolutional decoder)."""

    def __init__(self, cfg: ModelConfig, n_params: int) -> None:
        super().__init__(cfg, n_params)
        c = CONV_CHANNELS
        self.dense = nn.Sequential(
            GatedDense(cfg.latent_dim, cfg.hidden_dim),
            GatedDense(cfg.hidden_dim, cfg.n_pixels),
        )
        self.convs = nn.Sequential(GatedConv2d(1, c, 3), GatedConv2d(c, c, 3), GatedConv2d(c, c, 3))
        self.out = nn.Conv2d(c, n_params, 1)

    def params(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """z (N, D) (any leading dims) → params (N, P, n_params); x is ignored."""
        lead = z.shape[:-1]
        h = self.dense(z.reshape(-1, self.latent_dim)).view(-1, 1, *self.image_shape)  # (N,1,H,W)
        return _to_params(self.out(self.convs(h)), lead, self.n_params)


class PixelCNNDecoder(Decoder):
    """A PixelCNN conditioned on z (VampPrior's PixelVAE decoder).

    z is mapped by two gated dense layers to a one-channel H×W conditioning map. The masked
    stack — one gated 7×7 type-A layer, then ``pixel_layers − 1`` gated 3×3 type-B layers, all
    of ``pixel_channels`` channels — reads the image concatenated with that map; its output is
    concatenated with the map again (so z reaches every pixel's output directly) and goes
    through a gated 1×1 conv and a 1×1 conv to n_params channels. The params of pixel i thus
    depend on z and on x at pixels strictly before i in raster order only.
    """

    autoregressive = True

    def __init__(self, cfg: ModelConfig, n_params: int) -> None:
        super().__init__(cfg, n_params)
        c = cfg.pixel_channels
        self.cond = nn.Sequential(
            GatedDense(cfg.latent_dim, cfg.hidden_dim),
            GatedDense(cfg.hidden_dim, cfg.n_pixels),
        )
        layers = [GatedConv2d(2, c, 7, mask="A")]
        layers += [GatedConv2d(c, c, 3, mask="B") for _ in range(cfg.pixel_layers - 1)]
        self.masked = nn.Sequential(*layers)
        self.head = nn.Sequential(GatedConv2d(c + 1, c, 1), nn.Conv2d(c, n_params, 1))
        # Rows above a pixel that its output can see: Σ kernel // 2 over the masked stack.
        self.context_rows = 3 + (cfg.pixel_layers - 1)

    def _cond_map(self, z: Tensor) -> Tensor:
        return self.cond(z).view(-1, 1, *self.image_shape)  # (N, 1, H, W)

    def _params_map(self, cond: Tensor, image: Tensor) -> Tensor:
        """cond, image (N, 1, h, W) → (N, n_params, h, W); any band of rows works as long as it
        starts ``context_rows`` above the rows whose output is used (or at the top)."""
        h = self.masked(torch.cat([image, cond], dim=1))  # (N, C, h, W)
        return self.head(torch.cat([h, cond], dim=1))  # (N, n_params, h, W)

    def params(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """z (N, D), x (N, P) (teacher forcing; leading dims broadcast) → (N, P, n_params)."""
        if x is None:
            raise ValueError(
                "the pixel decoder is autoregressive: forward(z, x) needs the images x (N, P) "
                "for teacher forcing; use sample(z, likelihood) to draw images"
            )
        lead = z.shape[:-1]
        x = x.expand(*lead, self.n_pixels).reshape(-1, 1, *self.image_shape)  # (N, 1, H, W)
        cond = self._cond_map(z.reshape(-1, self.latent_dim))
        return _to_params(self._params_map(cond, x.to(cond.dtype)), lead, self.n_params)

    @torch.no_grad()
    def sample(self, z: Tensor, likelihood: Likelihood) -> Tensor:
        """Draw images pixel by pixel in raster order: z (N, D) → (N, P).

        Each of the H·W steps runs the network on the band of rows that the current pixel can
        see (at most ``context_rows`` + 1 rows), not on the whole image."""
        height, width = self.image_shape
        cond = self._cond_map(z)  # (N, 1, H, W)
        image = torch.zeros_like(cond)  # (N, 1, H, W)
        for r in range(height):
            top = max(0, r - self.context_rows)
            for c in range(width):
                params = self._params_map(cond[:, :, top : r + 1], image[:, :, top : r + 1])
                pixel = params[:, :, -1, c]  # (N, n_params)
                image[:, 0, r, c] = likelihood.sample(pixel[:, None, :])[:, 0].to(image.dtype)
        return image.view(-1, self.n_pixels)


# ----------------------------------------------------------------------------------------------
# Builders


def _mlp_encoder(cfg: ModelConfig) -> Encoder:
    body = nn.Sequential(
        GatedDense(cfg.n_pixels, cfg.hidden_dim),
        GatedDense(cfg.hidden_dim, cfg.hidden_dim),
    )
    return Encoder(body, cfg.hidden_dim, cfg)


def build_encoder(cfg: ModelConfig) -> Encoder:
    """The encoder of ``cfg.arch``: x (B, P) → (mu, logvar), each (B, M, D)."""
    if cfg.arch == "mlp":
        encoder = _mlp_encoder(cfg)
    else:  # cnn and pixel share the gated convolutional encoder
        body = ConvBody(cfg.image_shape)
        encoder = Encoder(body, body.feature_dim, cfg)
    he_init_(encoder)
    return encoder


def build_decoder(cfg: ModelConfig, n_params: int) -> Decoder:
    """The decoder of ``cfg.arch``: z (N, D) [, x (N, P)] → params (N, P, n_params)."""
    decoders: dict[str, type[Decoder]] = {
        "mlp": MLPDecoder,
        "cnn": ConvDecoder,
        "pixel": PixelCNNDecoder,
    }
    decoder = decoders[cfg.arch](cfg, n_params)
    he_init_(decoder)
    return decoder
