"""Explicit randomness: every draw in bayestorch goes through a ``torch.Generator``.

torch's distributions take no generator in ``sample``/``rsample``; :func:`draw` adds one,
with direct reparameterised paths for the Gaussian families (the hot path of VI) and a
seeded fallback for any other family.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

__all__ = [
    "check_generator_device",
    "counter_uniforms",
    "draw",
    "make_generator",
    "rand_key",
    "rand_open01",
]


def make_generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (CPU by default) seeded with ``seed``."""
    return torch.Generator(device=torch.device(device or "cpu")).manual_seed(int(seed))


def rand_open01(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Uniform draws on the open interval (0, 1).

    ``torch.rand`` can return exactly 0, and ``1 - u`` can round to 1 in float32; both make
    ``log(-log u)`` infinite. The draws are clamped to ``[tiny, 1 - eps/2]`` of the dtype.

    Shape:
        ``shape``.
    """
    if device is None and generator is not None:
        device = generator.device
    u = torch.rand(tuple(shape), generator=generator, device=device, dtype=dtype)
    info = torch.finfo(u.dtype)
    return u.clamp(min=info.tiny, max=1.0 - info.eps / 2)


def _to_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _to_int64(0x9E3779B97F4A7C15)
_MIX1 = _to_int64(0xBF58476D1CE4E5B9)
_MIX2 = _to_int64(0x94D049BB133111EB)


_MANTISSA_BITS = {torch.float64: 52, torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}


def _shift_right(z: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 bit patterns (``>>`` on int64 is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def rand_key(
    generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> Tensor:
    """One 62-bit key ``()`` (int64) for ``counter_uniforms``, drawn from ``generator``."""
    if device is None and generator is not None:
        device = generator.device
    return torch.randint(0, 1 << 62, (), generator=generator, device=device, dtype=torch.int64)


def counter_uniforms(key: Tensor, counter: Tensor, dtype: torch.dtype) -> Tensor:
    """Uniforms on the open interval (0, 1), a pure function of ``key`` and ``counter``.

    SplitMix64's output function of ``key + counter * golden`` (Steele, Lea & Flood, 2014),
    i.e. a counter-based generator: the same ``(key, counter)`` gives the same bits in eager
    code, under ``torch.compile`` and on any device, and draws can be made inside a compiled
    loop (whose shape cannot depend on how many it needs). The top ``nmant`` bits of the hash
    give ``(m + 1/2) 2^-nmant``, exact in ``dtype`` and never 0 or 1.

    Shape: ``key`` ``()`` int64, ``counter`` any shape, int64; returns ``counter``'s shape.
    """
    z = key + counter * _GOLDEN  # int64 arithmetic wraps modulo 2^64
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    z = z ^ _shift_right(z, 31)
    bits = _MANTISSA_BITS[dtype]
    return (_shift_right(z, 64 - bits).to(dtype) + 0.5) * 2.0**-bits


def check_generator_device(generator: torch.Generator | None, device: torch.device) -> None:
    """Raise ``ValueError`` naming both devices when ``generator`` cannot draw on ``device``."""
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the distribution's parameters are on "
            f"{device}; create the generator on the same device "
            f"(bayestorch.utils.make_generator(seed, device))"
        )


def _standard_normal(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def draw(
    distribution: Distribution,
    sample_shape: Sequence[int] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample ``distribution`` with an explicit generator, reparameterised where possible.

    Normal, Independent(Normal) and MultivariateNormal are drawn directly as
    ``loc + scale * eps`` with ``eps`` from ``generator``, so gradients flow to their
    parameters. Any other family is drawn by its own ``rsample`` (or ``sample`` when it has
    no reparameterisation) under a private copy of the global RNG seeded from
    ``generator``: the result depends on ``generator`` only, and the global RNG is left
    untouched.

    Shape:
        ``sample_shape + batch_shape + event_shape``.
    """
    sample_shape = torch.Size(sample_shape)
    if generator is None:
        return (
            distribution.rsample(sample_shape)
            if distribution.has_rsample
            else distribution.sample(sample_shape)
        )
    base = distribution.base_dist if isinstance(distribution, Independent) else distribution
    if isinstance(base, Normal):
        check_generator_device(generator, base.loc.device)
        shape = distribution._extended_shape(sample_shape)
        return base.loc + base.scale * _standard_normal(shape, base.loc, generator)
    if isinstance(distribution, MultivariateNormal):
        check_generator_device(generator, distribution.loc.device)
        shape = distribution._extended_shape(sample_shape)
        eps = _standard_normal(shape, distribution.loc, generator)
        return distribution.loc + (
            distribution._unbroadcasted_scale_tril @ eps.unsqueeze(-1)
        ).squeeze(-1)
    return _draw_with_forked_rng(distribution, sample_shape, generator)


def _draw_with_forked_rng(
    distribution: Distribution, sample_shape: torch.Size, generator: torch.Generator
) -> Tensor:
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    device = generator.device
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
        if device.type == "cuda":
            torch.cuda.default_generators[device.index or 0].manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)
        if distribution.has_rsample:
            return distribution.rsample(sample_shape)
        return distribution.sample(sample_shape)
