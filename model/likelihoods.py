"""Likelihood math: latent KL, the discretized mixture of logistics, the Gaussian output layer.

All per-example results are in nats per dimension, as in openai/vdvae (bits/dim = nats / ln 2).
Images are NHWC with values in [-1, 1]; 8-bit bins have half-width 1/255.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN2 = math.log(2.0)  # nats per bit: bits = nats / LN2


def gaussian_kl(
    mu_q: torch.Tensor, mu_p: torch.Tensor, logstd_q: torch.Tensor, logstd_p: torch.Tensor
) -> torch.Tensor:
    """Elementwise KL(N(mu_q, e^logstd_q) || N(mu_p, e^logstd_p)); scales are log standard deviations."""
    return (
        -0.5 + logstd_p - logstd_q + 0.5 * (logstd_q.exp() ** 2 + (mu_q - mu_p) ** 2) / (logstd_p.exp() ** 2)
    )


# --------------------------------------------------------------------------------------------
# Discretized mixture of logistics (PixelCNN++ as ported by openai/vdvae)
# --------------------------------------------------------------------------------------------
#
# Channel layout of the last dimension for M mixtures:
#   [0, M)                    mixture logits
#   3 channels: M + 3M*c + {0..M-1: mean, M..2M-1: log-scale, 2M..3M-1: raw AR coefficient}
#               (coefficient slots: c=0 G|R, c=1 B|R, c=2 B|G; the official layout)
#   1 channel:  M + {0..M-1: mean, M..2M-1: log-scale}


def dmol_channels(image_channels: int, num_mixtures: int) -> int:
    """Output channels of the DMoL head: 10*M for RGB (official), 3*M for grey-scale."""
    per_channel = 3 if image_channels == 3 else 2
    return num_mixtures * (1 + per_channel * image_channels)


def _dmol_unpack(params: torch.Tensor, channels: int, m: int):
    n, h, w, _ = params.shape
    logits = params[..., :m]  # (n, H, W, M)
    rest = params[..., m:].reshape(n, h, w, channels, -1)  # (n, H, W, C, 3M or 2M)
    means = rest[..., :m]
    log_scales = rest[..., m : 2 * m].clamp(min=-7.0)
    coeffs = torch.tanh(rest[..., 2 * m : 3 * m]) if channels == 3 else None
    return logits, means, log_scales, coeffs


def dmol_nll(x: torch.Tensor, params: torch.Tensor, num_mixtures: int, low_bit: bool = False) -> torch.Tensor:
    """Negative log-likelihood of 8-bit (or 5-bit) images x (n, H, W, C) in nats/dim, shape (n,)."""
    _, h, w, c = x.shape
    m = num_mixtures
    logits, means, log_scales, coeffs = _dmol_unpack(params, c, m)
    x_ = x.unsqueeze(-1)  # (n, H, W, C, 1)
    if c == 3:
        # Autoregressive means: G depends on R, B on R and G (of the target, during training).
        m1 = means[..., 1, :] + coeffs[..., 0, :] * x_[..., 0, :]
        m2 = means[..., 2, :] + coeffs[..., 1, :] * x_[..., 0, :] + coeffs[..., 2, :] * x_[..., 1, :]
        means = torch.stack([means[..., 0, :], m1, m2], dim=3)  # (n, H, W, 3, M)
    half_bin, log_bins = (1.0 / 31.0, math.log(15.5)) if low_bit else (1.0 / 255.0, math.log(127.5))
    centered = x_ - means
    inv_s = torch.exp(-log_scales)
    plus_in = inv_s * (centered + half_bin)
    min_in = inv_s * (centered - half_bin)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # left edge bin: log CDF
    log_one_minus_cdf_min = -F.softplus(min_in)  # right edge bin: log(1 - CDF)
    mid_in = inv_s * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)  # density approximation, tiny bins
    log_probs = torch.where(
        x_ < -0.999,
        log_cdf_plus,
        torch.where(
            x_ > 0.999,
            log_one_minus_cdf_min,
            torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid - log_bins),
        ),
    )
    log_probs = log_probs.sum(dim=3) + torch.log_softmax(logits, dim=-1)  # (n, H, W, M)
    return -torch.logsumexp(log_probs, dim=-1).sum(dim=(1, 2)) / (h * w * c)


def dmol_sample(
    params: torch.Tensor, channels: int, num_mixtures: int, u_mix: torch.Tensor, u_logistic: torch.Tensor
) -> torch.Tensor:
    """Draw images in [-1, 1] (n, H, W, C) given uniform(1e-5, 1-1e-5) noise.

    u_mix (n, H, W, M) picks the component by Gumbel-max; u_logistic (n, H, W, C) is the logistic
    draw. Channels are clamped one at a time, so the AR coefficients see clamped values.
    """
    logits, means, log_scales, coeffs = _dmol_unpack(params, channels, num_mixtures)
    k = torch.argmax(logits - torch.log(-torch.log(u_mix)), dim=-1)  # (n, H, W)
    idx = k[..., None, None].expand(*k.shape, channels, 1)  # (n, H, W, C, 1)
    mean = means.gather(-1, idx).squeeze(-1)  # (n, H, W, C)
    log_s = log_scales.gather(-1, idx).squeeze(-1)
    x = mean + torch.exp(log_s) * (torch.log(u_logistic) - torch.log(1.0 - u_logistic))
    if channels != 3:
        return x.clamp(-1.0, 1.0)
    coef = coeffs.gather(-1, idx).squeeze(-1)  # (n, H, W, 3)
    x0 = x[..., 0].clamp(-1.0, 1.0)
    x1 = (x[..., 1] + coef[..., 0] * x0).clamp(-1.0, 1.0)
    x2 = (x[..., 2] + coef[..., 1] * x0 + coef[..., 2] * x1).clamp(-1.0, 1.0)
    return torch.stack([x0, x1, x2], dim=-1)


def to_uint8(x: torch.Tensor, round_: bool = False) -> torch.Tensor:
    """[-1, 1] -> uint8. The official DMoL conversion truncates; pass round_=True to round."""
    x = (x.float() + 1.0) * 127.5
    if round_:
        x = x.round()
    return x.clamp(0.0, 255.0).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# Gaussian output layer (Luhman & Luhman 2022): per-pixel mean and log-variance
# --------------------------------------------------------------------------------------------


def gaussian_output_loss(
    x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, sigma_q: float
) -> torch.Tensor:
    """Training distortion: KL(N(x, sigma_q^2) || N(mean, e^logvar)) per dim, shape (n,).

    The fixed data width sigma_q stops the model from being rewarded for sub-sigma_q detail; the
    optimum variance is sigma_q^2 + (x - mean)^2.
    """
    var_q = sigma_q**2
    kl = 0.5 * (logvar - math.log(var_q)) + 0.5 * (var_q + (x - mean) ** 2) * torch.exp(-logvar) - 0.5
    return kl.flatten(1).mean(dim=1)


def _approx_std_normal_cdf(y: torch.Tensor) -> torch.Tensor:
    # The tanh approximation used by DDPM's discretized Gaussian; monotone from 0 to 1, so the
    # 256 bins still sum to exactly one.
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (y + 0.044715 * y.pow(3))))


def discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """NLL of 8-bit images under the discretized Gaussian in nats/dim, shape (n,) (for bits/dim)."""
    inv_std = torch.exp(-0.5 * logvar)
    centered = x - mean
    cdf_plus = _approx_std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_probs = torch.where(
        x < -0.999,
        torch.log(cdf_plus.clamp(min=1e-12)),
        torch.where(
            x > 0.999,
            torch.log((1.0 - cdf_min).clamp(min=1e-12)),
            torch.log((cdf_plus - cdf_min).clamp(min=1e-12)),
        ),
    )
    return -log_probs.flatten(1).mean(dim=1)
