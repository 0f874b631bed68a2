"""The reparameterisation table: each family drawn as a differentiable transform of
parameter-free noise from an explicit ``generator``.

torch's own ``rsample`` implements the same transforms for these families (and its tests pass
against them too), but takes no generator; the functions here do, so that every draw in
bayestorch is reproducible from a ``torch.Generator``. :func:`rsample` dispatches a torch
distribution object to its row of the table.

References:
    Kingma & Welling (2014), section 2.4 (the three classes of reparameterisable families);
    Box & Muller (1958). A note on the generation of random normal deviates;
    Devroye (1986). Non-Uniform Random Variate Generation (inverse-CDF transforms);
    Figurnov, Mohamed & Mnih (2018). Implicit reparameterization gradients (Gamma, hence
    InverseGamma).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import (
    Cauchy,
    Distribution,
    Exponential,
    Gumbel,
    InverseGamma,
    Laplace,
    LogNormal,
    MultivariateNormal,
    Normal,
)
from torch.distributions.utils import broadcast_all

from bayestorch.distributions.rademacher import Rademacher
from bayestorch.utils.random import check_generator_device, rand_open01

__all__ = [
    "REPARAMETERIZATION_TABLE",
    "ReparameterizationEntry",
    "cauchy_rsample",
    "exponential_rsample",
    "gumbel_rsample",
    "inverse_gamma_rsample",
    "laplace_rsample",
    "log_normal_rsample",
    "multivariate_normal_rsample",
    "normal_box_muller",
    "rsample",
]


def _uniform(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    check_generator_device(generator, like.device)
    return rand_open01(shape, generator=generator, device=like.device, dtype=like.dtype)


def _shape(sample_shape: Sequence[int], *params: Tensor) -> torch.Size:
    return torch.Size(sample_shape) + torch.broadcast_shapes(*(p.shape for p in params))


def _float_params(*params) -> tuple[Tensor, ...]:
    tensors = broadcast_all(*params)
    return tuple(t if t.is_floating_point() else t.to(torch.get_default_dtype()) for t in tensors)


def exponential_rsample(
    rate: Tensor | float, sample_shape: Sequence[int] = (), *, generator=None
) -> Tensor:
    """``-log(u) / rate`` (inverse CDF), ``u`` uniform on (0, 1).

    Shape:
        ``sample_shape + rate.shape``.

    References:
        Devroye (1986), chapter II.2.
    """
    (rate,) = _float_params(rate)
    return -torch.log(_uniform(_shape(sample_shape, rate), rate, generator)) / rate


def cauchy_rsample(
    loc: Tensor | float, scale: Tensor | float, sample_shape: Sequence[int] = (), *, generator=None
) -> Tensor:
    """``loc + scale * tan(pi (u - 1/2))`` (inverse CDF).

    Shape:
        ``sample_shape + broadcast(loc, scale).shape``.

    References:
        Devroye (1986), chapter II.2.
    """
    loc, scale = _float_params(loc, scale)
    u = _uniform(_shape(sample_shape, loc, scale), loc, generator)
    return loc + scale * torch.tan(math.pi * (u - 0.5))


def laplace_rsample(
    loc: Tensor | float, scale: Tensor | float, sample_shape: Sequence[int] = (), *, generator=None
) -> Tensor:
    """``loc - scale * sign(v) * log(1 - |v|)``, ``v = 2u - 1`` uniform on (-1, 1).

    Shape:
        ``sample_shape + broadcast(loc, scale).shape``.

    References:
        Devroye (1986), chapter II.2 (inverse CDF of the double exponential).
    """
    loc, scale = _float_params(loc, scale)
    v = 2.0 * _uniform(_shape(sample_shape, loc, scale), loc, generator) - 1.0
    v = v.clamp(-1.0 + torch.finfo(v.dtype).eps, 1.0 - torch.finfo(v.dtype).eps)
    return loc - scale * torch.sign(v) * torch.log1p(-v.abs())


def normal_box_muller(
    loc: Tensor | float, scale: Tensor | float, sample_shape: Sequence[int] = (), *, generator=None
) -> Tensor:
    """``loc + scale * z`` with ``z`` from the Box–Muller transform.

    Each pair of uniforms ``(u1, u2)`` gives two independent standard normals
    ``sqrt(-2 log u1) (cos 2 pi u2, sin 2 pi u2)``; both are used.

    Shape:
        ``sample_shape + broadcast(loc, scale).shape``.

    References:
        Box & Muller (1958). Annals of Mathematical Statistics 29(2).
    """
    loc, scale = _float_params(loc, scale)
    shape = _shape(sample_shape, loc, scale)
    n = shape.numel()
    half = (n + 1) // 2
    u = _uniform((2, half), loc, generator)
    radius = torch.sqrt(-2.0 * torch.log(u[0]))
    angle = (2.0 * math.pi) * u[1]
    z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])[:n].reshape(shape)
    return loc + scale * z


def multivariate_normal_rsample(
    loc: Tensor,
    scale_tril: Tensor,
    sample_shape: Sequence[int] = (),
    *,
    generator=None,
) -> Tensor:
    """``loc + L eps`` with ``L`` the Cholesky factor of the covariance, ``eps ~ N(0, I)``.

    Shape:
        ``loc``: ``(*batch, d)``, ``scale_tril``: ``(*batch, d, d)`` ->
        ``sample_shape + batch + (d,)``.

    References:
        Kingma & Welling (2014), section 2.4 (location-scale families).
    """
    if (
        loc.dim() < 1
        or scale_tril.dim() < 2
        or scale_tril.shape[-2:] != (loc.shape[-1], loc.shape[-1])
    ):
        raise ValueError(
            f"loc (..., n) and scale_tril (..., n, n) must share n, got shapes "
            f"{tuple(loc.shape)} and {tuple(scale_tril.shape)}"
        )
    batch = torch.broadcast_shapes(loc.shape[:-1], scale_tril.shape[:-2])
    shape = torch.Size(sample_shape) + batch + loc.shape[-1:]
    check_generator_device(generator, loc.device)
    eps = torch.randn(shape, generator=generator, device=loc.device, dtype=loc.dtype)
    return loc + (scale_tril @ eps.unsqueeze(-1)).squeeze(-1)


def log_normal_rsample(
    loc: Tensor | float, scale: Tensor | float, sample_shape: Sequence[int] = (), *, generator=None
) -> Tensor:
    """``exp(loc + scale * eps)``, ``eps ~ N(0, 1)``.

    Shape:
        ``sample_shape + broadcast(loc, scale).shape``.

    References:
        Kingma & Welling (2014), section 2.4 (compositions of transforms).
    """
    loc, scale = _float_params(loc, scale)
    check_generator_device(generator, loc.device)
    eps = torch.randn(
        _shape(sample_shape, loc, scale), generator=generator, device=loc.device, dtype=loc.dtype
    )
    return torch.exp(loc + scale * eps)


def inverse_gamma_rsample(
    concentration: Tensor | float,
    rate: Tensor | float,
    sample_shape: Sequence[int] = (),
    *,
    generator=None,
) -> Tensor:
    """``rate / X``, ``X ~ Gamma(concentration, 1)`` with implicit reparameterisation gradients.

    Shape:
        ``sample_shape + broadcast(concentration, rate).shape``.

    References:
        Figurnov, Mohamed & Mnih (2018). Implicit reparameterization gradients. NeurIPS.
    """
    concentration, rate = _float_params(concentration, rate)
    shape = _shape(sample_shape, concentration, rate)
    check_generator_device(generator, concentration.device)
    gamma = torch._standard_gamma(concentration.expand(shape), generator=generator)
    tiny = torch.finfo(gamma.dtype).tiny  # a Gamma draw can underflow to 0 for small shapes
    return rate / gamma.clamp(min=tiny)


def gumbel_rsample(
    loc: Tensor | float, scale: Tensor | float, sample_shape: Sequence[int] = (), *, generator=None
) -> Tensor:
    """``loc - scale * log(-log u)`` (inverse CDF).

    Shape:
        ``sample_shape + broadcast(loc, scale).shape``.

    References:
        Gumbel (1954).
    """
    loc, scale = _float_params(loc, scale)
    u = _uniform(_shape(sample_shape, loc, scale), loc, generator)
    return loc - scale * torch.log(-torch.log(u))


class ReparameterizationEntry(NamedTuple):
    """One row of the table: the torch family, the transform in words, our sampler."""

    family: type[Distribution]
    transform: str
    sampler: Callable[..., Tensor]
    params: tuple[str, ...]


REPARAMETERIZATION_TABLE: dict[str, ReparameterizationEntry] = {
    "Exponential": ReparameterizationEntry(
        Exponential, "-log(u) / rate", exponential_rsample, ("rate",)
    ),
    "Cauchy": ReparameterizationEntry(
        Cauchy, "loc + scale * tan(pi (u - 1/2))", cauchy_rsample, ("loc", "scale")
    ),
    "Laplace": ReparameterizationEntry(
        Laplace,
        "loc - scale * sign(v) log(1 - |v|), v = 2u - 1",
        laplace_rsample,
        ("loc", "scale"),
    ),
    "Normal": ReparameterizationEntry(
        Normal,
        "loc + scale * sqrt(-2 log u1) cos(2 pi u2) (Box-Muller)",
        normal_box_muller,
        ("loc", "scale"),
    ),
    "MultivariateNormal": ReparameterizationEntry(
        MultivariateNormal,
        "loc + L eps, L L^T = covariance (Cholesky), eps ~ N(0, I)",
        multivariate_normal_rsample,
        ("loc", "scale_tril"),
    ),
    "LogNormal": ReparameterizationEntry(
        LogNormal, "exp(loc + scale * eps)", log_normal_rsample, ("loc", "scale")
    ),
    "InverseGamma": ReparameterizationEntry(
        InverseGamma,
        "rate / Gamma(concentration, 1) (implicit gradient of the Gamma)",
        inverse_gamma_rsample,
        ("concentration", "rate"),
    ),
    "Gumbel": ReparameterizationEntry(
        Gumbel, "loc - scale * log(-log u)", gumbel_rsample, ("loc", "scale")
    ),
    "Rademacher": ReparameterizationEntry(
        Rademacher,
        "2 * 1[u < probs] - 1 (discrete: score-function gradients only)",
        lambda probs, sample_shape=(), *, generator=None: Rademacher(probs).sample(
            sample_shape, generator=generator
        ),
        ("probs",),
    ),
}
"""The reparameterisation table: for each family, the transform of parameter-free noise
that draws it and bayestorch's sampler (``rsample`` draws through it)."""


def rsample(
    distribution: Distribution,
    sample_shape: Sequence[int] = (),
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample a family of the table through its transform, with an explicit generator.

    Args:
        distribution: an instance of a family in :data:`REPARAMETERIZATION_TABLE` (exact type;
            subclasses are not matched, since they may change the law).
        sample_shape: leading sample dimensions.
        generator: the source of randomness.

    Raises:
        NotImplementedError: naming the families of the table, for any other family.

    Shape:
        ``sample_shape + batch_shape + event_shape``.

    References:
        Kingma & Welling (2014), section 2.4.
    """
    for entry in REPARAMETERIZATION_TABLE.values():
        if type(distribution) is entry.family:
            params = [getattr(distribution, name) for name in entry.params]
            return entry.sampler(*params, sample_shape, generator=generator)
    raise NotImplementedError(
        f"no reparameterisation for {type(distribution).__name__}; the table has "
        f"{', '.join(REPARAMETERIZATION_TABLE)}"
    )
