"""Adaptive rejection sampling (Gilks & Wild 1992) for log-concave 1-d densities.

Talk section "Monte Carlo": for a log-concave ``h = log p~``, tangents at abscissae
``x_1 < ... < x_k`` bound ``h`` from above (a piecewise-exponential envelope that is
sampled exactly) and chords bound it from below (the squeeze). A proposal under the
squeeze is accepted without evaluating ``h``; every evaluation of ``h`` adds its point to
the hull, so the envelope tightens and the acceptance rate rises toward 1.

Derivatives come from autograd. Proposals are drawn in batches from the current hull
(batch sizes doubling with the number of proposals made), so early on the hull is
refined almost after every proposal, as in the paper, and later draws are vectorised.
Every batch is an exact rejection sampler for its (fixed) envelope, so the accepted draws
are exact; the hull only decides how often one is rejected.

References:
    Gilks, Wild (1992). Adaptive rejection sampling for Gibbs sampling. Journal of the
    Royal Statistical Society C 41(2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from bayestorch.utils.autograd import log_prob_and_grad
from bayestorch.utils.random import rand_open01

__all__ = ["AdaptiveRejectionSampler", "NotLogConcaveError"]

# The hull is kept in float64: tangent intersections of nearly parallel tangents cancel
# catastrophically in float32. Concavity checks allow this relative slack for rounding.
_REL_TOL = 1e-8
# Slope * width below which a segment of the envelope is treated as flat.
_FLAT = 1e-12
_MAX_SEARCH = 60


class NotLogConcaveError(ValueError):
    """The density was seen not to be log-concave (a tangent or chord bound failed)."""


class AdaptiveRejectionSampler:
    """Exact draws of a log-concave density on an interval, by adaptive rejection.

    Args:
        log_p: unnormalised log density, mapping ``(n,)`` float64 points to ``(n,)``;
            differentiable by autograd, finite inside ``domain``, log-concave.
        domain: ``(lower, upper)``, either end may be infinite.
        initial_points: starting abscissae inside ``domain`` (at least one); more points
            are added automatically until the envelope is integrable (a positive slope
            on the left and a negative one on the right of an unbounded domain). Default:
            three points around 0 (or around the middle of a bounded domain).
        dtype: dtype of the returned draws (default: that of ``initial_points`` when it
            is a floating tensor, else torch's default dtype).
        device: device of the hull and the draws (default: that of ``initial_points``).

    Attributes:
        num_evaluations: how many times ``log_p`` was evaluated at a point.
        num_proposals: how many envelope draws were proposed by :meth:`sample`.
        points: the current abscissae ``(k,)``.

    Raises:
        NotLogConcaveError: when the density is seen not to be log-concave, at
            construction or during sampling.

    Shape:
        ``sample(n)`` returns ``(n,)``.

    References:
        Gilks, Wild (1992). Applied Statistics 41(2).

    Example::

        >>> ars = AdaptiveRejectionSampler(lambda x: -0.5 * x**2)
        >>> x = ars.sample(5000, generator=torch.Generator().manual_seed(0))
        >>> x.shape
        torch.Size([5000])
    """

    def __init__(
        self,
        log_p: Callable[[Tensor], Tensor],
        domain: tuple[float, float] = (-math.inf, math.inf),
        initial_points: Sequence[float] | Tensor | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not callable(log_p):
            raise TypeError(f"log_p must be callable, got {type(log_p).__name__}")
        self.log_p = log_p
        lower, upper = (float(b) for b in domain)
        if math.isnan(lower) or math.isnan(upper) or not lower < upper:
            raise ValueError(f"domain must be (lower, upper) with lower < upper, got {domain}")
        self.lower, self.upper = lower, upper
        if isinstance(initial_points, Tensor):
            device = device if device is not None else initial_points.device
            if dtype is None and initial_points.is_floating_point():
                dtype = initial_points.dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype or torch.get_default_dtype()
        self.num_evaluations = 0
        self.num_proposals = 0
        self._accepted: list[Tensor] = []

        if initial_points is None:
            if math.isfinite(lower) and math.isfinite(upper):
                initial_points = [lower + f * (upper - lower) for f in (0.25, 0.5, 0.75)]
            elif math.isfinite(lower):
                initial_points = [lower + 0.5, lower + 1.0, lower + 2.0]
            elif math.isfinite(upper):
                initial_points = [upper - 2.0, upper - 1.0, upper - 0.5]
            else:
                initial_points = [-1.0, 0.0, 1.0]
        x0 = torch.as_tensor(initial_points, dtype=torch.float64, device=self.device).flatten()
        if x0.numel() == 0:
            raise ValueError("initial_points must hold at least one point")
        if not bool(((x0 > lower) & (x0 < upper)).all()):
            raise ValueError(
                f"initial_points must lie strictly inside domain {domain}, got {x0.tolist()}"
            )
        self._x = torch.empty(0, dtype=torch.float64, device=self.device)
        self._h = torch.empty_like(self._x)
        self._dh = torch.empty_like(self._x)
        self._insert(x0, *self._evaluate(x0))
        self._make_integrable()

    # -- hull bookkeeping ---------------------------------------------------------------
    @property
    def points(self) -> Tensor:
        return self._x.to(self.dtype)

    def _evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, dh = log_prob_and_grad(lambda z: self.log_p(z[:, 0]), x[:, None])
        h, dh = h.to(torch.float64), dh[:, 0].to(torch.float64)
        self.num_evaluations += x.numel()
        bad = ~(torch.isfinite(h) & torch.isfinite(dh))
        if bool(bad.any()):
            where = x[bad][:5].tolist()
            raise ValueError(
                f"log_p or its derivative is not finite at {where} inside domain "
                f"({self.lower}, {self.upper}); a log-concave density must be finite on the "
                "interior of its domain: pass the support as domain"
            )
        return h, dh

    def _insert(self, x: Tensor, h: Tensor, dh: Tensor) -> None:
        xs = torch.cat([self._x, x])
        order = torch.argsort(xs)
        xs, hs, dhs = xs[order], torch.cat([self._h, h])[order], torch.cat([self._dh, dh])[order]
        keep = torch.ones_like(xs, dtype=torch.bool)
        keep[1:] = xs[1:] > xs[:-1]  # drop duplicate abscissae
        self._x, self._h, self._dh = xs[keep], hs[keep], dhs[keep]
        self._check_concave()
        self._build_hull()

    def _check_concave(self) -> None:
        x, h, dh = self._x, self._h, self._dh
        if x.numel() < 2:
            return
        slack = _REL_TOL * (1.0 + dh.abs())
        chord = (h[1:] - h[:-1]) / (x[1:] - x[:-1])
        chord_slack = _REL_TOL * (1.0 + chord.abs()) + _REL_TOL * (
            1.0 + torch.maximum(h[1:].abs(), h[:-1].abs())
        ) / (x[1:] - x[:-1])
        bad = (dh[1:] > dh[:-1] + slack[:-1]) | (chord > dh[:-1] + slack[:-1] + chord_slack)
        bad |= chord < dh[1:] - slack[1:] - chord_slack
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise NotLogConcaveError(
                f"log_p is not log-concave: between x={x[i].item():.6g} and "
                f"x={x[i + 1].item():.6g} the derivative goes from {dh[i].item():.6g} to "
                f"{dh[i + 1].item():.6g} with chord slope {chord[i].item():.6g} (a concave "
                "function's slopes decrease); adaptive rejection sampling needs a "
                "log-concave density: use rejection_sample or an MCMC kernel"
            )

    def _make_integrable(self) -> None:
        """Add points until the envelope's outer pieces decay on unbounded ends."""
        step = max(1.0, float(self._x[-1] - self._x[0]))
        for _ in range(_MAX_SEARCH):
            if not (math.isinf(self.lower) and bool(self._dh[0] <= 0)):
                break
            x = self._x[:1] - step
            self._insert(x, *self._evaluate(x))
            step *= 2.0
        else:
            raise ValueError(
                "log_p does not increase anywhere on the left of the points tried (down to "
                f"{self._x[0].item():.3g}): it is not integrable on (-inf, ...); bound the domain"
            )
        step = max(1.0, float(self._x[-1] - self._x[0]))
        for _ in range(_MAX_SEARCH):
            if not (math.isinf(self.upper) and bool(self._dh[-1] >= 0)):
                break
            x = self._x[-1:] + step
            self._insert(x, *self._evaluate(x))
            step *= 2.0
        else:
            raise ValueError(
                "log_p does not decrease anywhere on the right of the points tried (up to "
                f"{self._x[-1].item():.3g}): it is not integrable on (..., inf); bound the domain"
            )

    def _build_hull(self) -> None:
        """Tangent intersections ``z`` and the log mass of each envelope piece."""
        x, h, dh = self._x, self._h, self._dh
        # z_j = intersection of the tangents at x_j and x_{j+1}; the midpoint when they are
        # parallel (a log-linear stretch, where both tangents coincide).
        num = h[1:] - h[:-1] - x[1:] * dh[1:] + x[:-1] * dh[:-1]
        den = dh[:-1] - dh[1:]
        parallel = den.abs() <= _REL_TOL * (1.0 + dh[:-1].abs())
        z_inner = torch.where(parallel, 0.5 * (x[:-1] + x[1:]), num / torch.where(parallel, 1, den))
        z_inner = torch.minimum(torch.maximum(z_inner, x[:-1]), x[1:])
        bounds = x.new_tensor([self.lower]), x.new_tensor([self.upper])
        z = torch.cat([bounds[0], z_inner, bounds[1]])
        left, right = z[:-1], z[1:]
        width = right - left
        u_left = h + dh * (left - x)
        u_right = h + dh * (right - x)
        flat = (dh * width).abs() < _FLAT
        safe_dh = torch.where(flat, 1.0, dh)
        increasing = u_right + torch.log1p(-torch.exp(u_left - u_right)) - safe_dh.abs().log()
        decreasing = u_left + torch.log1p(-torch.exp(u_right - u_left)) - safe_dh.abs().log()
        log_mass = torch.where(dh > 0, increasing, decreasing)
        log_mass = torch.where(flat, h + dh * (0.5 * (left + right) - x) + width.log(), log_mass)
        self._z = z
        self._log_mass = log_mass
        self._cdf = torch.softmax(log_mass, 0).cumsum(0)

    def _upper(self, x: Tensor, piece: Tensor) -> Tensor:
        return self._h[piece] + self._dh[piece] * (x - self._x[piece])

    def _lower(self, x: Tensor) -> Tensor:
        xs, h = self._x, self._h
        inside = (x >= xs[0]) & (x <= xs[-1])
        if xs.numel() < 2:
            return torch.where(x == xs[0], h[0], -math.inf)
        j = torch.searchsorted(xs, x).clamp(1, xs.numel() - 1)
        t = (x - xs[j - 1]) / (xs[j] - xs[j - 1])
        chord = (1.0 - t) * h[j - 1] + t * h[j]
        return torch.where(inside, chord, -math.inf)

    def _sample_hull(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``n`` exact draws of the piecewise-exponential envelope and their pieces."""
        u = rand_open01((2, n), generator=generator, device=self.device, dtype=torch.float64)
        piece = torch.searchsorted(self._cdf, u[0] * self._cdf[-1]).clamp(max=self._x.numel() - 1)
        a = self._dh[piece]
        left, right = self._z[piece], self._z[piece + 1]
        width = right - left
        flat = (a * width).abs() < _FLAT
        safe_a = torch.where(flat, 1.0, a)
        # Invert the CDF of exp(a t) from the end where the piece is largest, so infinite
        # ends (where the envelope decays) are never the reference point.
        span = -torch.expm1(-(safe_a * width).abs())
        offset = torch.log1p(-u[1] * span) / safe_a
        x = torch.where(a > 0, right + offset, left + offset)
        x = torch.where(flat, left + u[1] * torch.where(flat, width, 0.0), x)
        return torch.minimum(torch.maximum(x, left), right), piece

    # -- sampling -------------------------------------------------------------------------
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num_samples`` exact draws; the hull keeps refining across calls.

        Shape:
            ``(num_samples,)`` in ``self.dtype`` on ``self.device``.
        """
        if not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be a non-negative integer, got {num_samples!r}")
        out: list[Tensor] = []
        num_accepted = 0
        while num_accepted < num_samples:
            remaining = num_samples - num_accepted
            # Doubling batches: the hull is refined after 1, 2, 4, ... proposals; once it is
            # tight (acceptance near 1) a batch is about what is still needed.
            size = max(1, min(self.num_proposals, math.ceil(1.05 * remaining) + 2))
            x, piece = self._sample_hull(size, generator)
            log_u = rand_open01(
                (size,), generator=generator, device=self.device, dtype=torch.float64
            ).log()
            upper = self._upper(x, piece)
            lower = self._lower(x)
            accept = log_u < lower - upper  # squeeze test: no evaluation of log_p
            todo = ~accept
            if bool(todo.any()):
                xe = x[todo]
                h, dh = self._evaluate(xe)
                slack = _REL_TOL * (1.0 + h.abs())
                above = h > upper[todo] + slack
                below = h < lower[todo] - slack
                if bool((above | below).any()):
                    i = int((above | below).nonzero()[0])
                    side = "above a tangent" if bool(above[i]) else "below a chord"
                    raise NotLogConcaveError(
                        f"log_p is not log-concave: at x={xe[i].item():.6g} its value "
                        f"{h[i].item():.6g} lies {side} of the hull; adaptive rejection "
                        "sampling needs a log-concave density"
                    )
                accept[todo] = log_u[todo] < h - upper[todo]
                self._insert(xe, h, dh)
            self.num_proposals += size
            self._accepted.append(accept)
            kept = x[accept][:remaining]
            out.append(kept)
            num_accepted += kept.numel()
        if not out:
            return torch.empty(0, dtype=self.dtype, device=self.device)
        return torch.cat(out).to(self.dtype)

    def acceptance_rates(self, boundaries: Sequence[int] = (10, 100, 1000)) -> list[float]:
        """Acceptance rates over the proposal windows ``[0, b1), [b1, b2), ..., [bk, end)``.

        Windows with no proposals give NaN.
        """
        flags = torch.cat(self._accepted) if self._accepted else torch.zeros(0, dtype=torch.bool)
        edges = [0, *boundaries, flags.numel()]
        rates = []
        for a, b in zip(edges[:-1], edges[1:]):
            window = flags[a:b]
            rates.append(float(window.double().mean()) if window.numel() else math.nan)
        return rates
