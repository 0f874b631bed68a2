"""The Rademacher distribution on {-1, +1} (torch has none).

``P(+1) = probs``; ``probs = 1/2`` is the symmetric sign used by Hutchinson's trace estimator
and by sign-flip (antithetic) perturbations. Parameterised like torch's Bernoulli, by ``probs``
or ``logits`` (``P(+1) = sigmoid(logits)``), so ``log_prob(x) = logsigmoid(x * logits)``.

References:
    Rademacher (1922). Einige Sätze über Reihen von allgemeinen Orthogonalfunktionen.
    Hutchinson (1990). A stochastic estimator of the trace of the influence matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all, lazy_property, logits_to_probs, probs_to_logits

from bayestorch.utils.random import check_generator_device

__all__ = ["Rademacher", "plus_minus_one"]


class _PlusMinusOne(constraints.Constraint):
    """The two-point set {-1, +1}."""

    is_discrete = True
    event_dim = 0

    def check(self, value: Tensor) -> Tensor:
        return (value == 1) | (value == -1)

    def __repr__(self) -> str:
        return "plus_minus_one()"


plus_minus_one = _PlusMinusOne()
"""The constraint ``{-1, +1}``: the support of :class:`Rademacher`."""


class Rademacher(Distribution):
    """Rademacher distribution: ``+1`` with probability ``probs``, ``-1`` otherwise.

    Exactly one of ``probs`` and ``logits`` is given. Samples are floats in the parameter's
    dtype. ``sample`` takes an optional ``generator`` (a superset of torch's signature).
    Discrete, so there is no ``rsample``: gradients of expectations go through the score
    function (``d/dp log P(x) = x / P(x)``) or the closed form ``d/dp E[f] = f(1) - f(-1)``.

    Args:
        probs: ``P(+1)`` in [0, 1].
        logits: ``log P(+1) - log P(-1)``.
        validate_args: as in torch.

    Shape:
        batch shape: the broadcast shape of the parameter; event shape ``()``;
        ``sample(sample_shape)``: ``sample_shape + batch_shape``.

    References:
        Rademacher (1922); Hutchinson (1990).

    Example::

        >>> d = Rademacher(torch.tensor([0.5, 0.9]))
        >>> d.sample((3,), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """

    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = plus_minus_one
    has_enumerate_support = True
    has_rsample = False

    def __init__(
        self,
        probs: Tensor | float | None = None,
        logits: Tensor | float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("Rademacher takes exactly one of probs or logits")
        if probs is not None:
            (self.probs,) = broadcast_all(probs)
            param = self.probs
        else:
            (self.logits,) = broadcast_all(logits)
            param = self.logits
        self._param = param
        super().__init__(param.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Rademacher, _instance)
        batch_shape = torch.Size(batch_shape)
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(batch_shape)
            new._param = new.probs
        if "logits" in self.__dict__:
            new.logits = self.logits.expand(batch_shape)
            new._param = new.logits
        super(Rademacher, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @lazy_property
    def logits(self) -> Tensor:
        return probs_to_logits(self.probs, is_binary=True)

    @lazy_property
    def probs(self) -> Tensor:
        return logits_to_probs(self.logits, is_binary=True)

    @property
    def param_shape(self) -> torch.Size:
        return self._param.shape

    @property
    def mean(self) -> Tensor:
        return 2.0 * self.probs - 1.0

    @property
    def mode(self) -> Tensor:
        return torch.where(self.probs >= 0.5, 1.0, -1.0).to(self._param.dtype)

    @property
    def variance(self) -> Tensor:
        return 4.0 * self.probs * (1.0 - self.probs)

    def sample(
        self, sample_shape: torch.Size | tuple = (), generator: torch.Generator | None = None
    ) -> Tensor:
        """``2 * 1[u < probs] - 1`` with ``u ~ U[0, 1)`` from ``generator``.

        Shape:
            ``sample_shape + batch_shape``.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        probs = self.probs.detach()
        check_generator_device(generator, probs.device)
        u = torch.rand(shape, generator=generator, device=probs.device, dtype=probs.dtype)
        return torch.where(u < probs, 1.0, -1.0).to(probs.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.logits, value)
        return F.logsigmoid(value * logits)

    def entropy(self) -> Tensor:
        # -p log p - (1 - p) log(1 - p) with 0 log 0 = 0 (probs 0 or 1: entropy 0, not NaN)
        p = self.probs
        return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))

    def enumerate_support(self, expand: bool = True) -> Tensor:
        values = torch.tensor([-1.0, 1.0], dtype=self._param.dtype, device=self._param.device)
        values = values.view((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = values.expand((-1,) + self.batch_shape)
        return values
