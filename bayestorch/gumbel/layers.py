"""The Gumbel-softmax layer with a temperature schedule (Jang, Gu & Poole 2017, section 3).

Jang et al. anneal the temperature as ``tau = max(tau_min, tau_0 exp(-r t))``, updated every
``N`` training steps (they use ``tau_0 = 1``, ``tau_min = 0.5``, ``N = 500`` and ``r`` of order
``1e-5``..``1e-4``). The layer keeps its step count as a buffer, so ``state_dict()`` resumes the
schedule, and a Python mirror of it, so that computing ``tau`` never synchronises with the device.

References:
    Jang, Gu & Poole (2017). Categorical Reparameterization with Gumbel-Softmax. ICLR.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bayestorch.gumbel.functional import _check_tau, gumbel_softmax

__all__ = ["GumbelSoftmax", "exponential_anneal"]


def exponential_anneal(
    step: int, initial: float, rate: float, minimum: float, every: int = 1
) -> float:
    """``max(minimum, initial * exp(-rate * every * floor(step / every)))``.

    Shape:
        scalars (Python numbers).

    References:
        Jang, Gu & Poole (2017), section 3 (the annealing schedule of their experiments).
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive int, got {every!r}")
    held = (int(step) // every) * every
    return max(float(minimum), float(initial) * math.exp(-rate * held))


class GumbelSoftmax(nn.Module):
    """Gumbel-softmax layer: ``logits -> softmax((logits + g) / tau)``, straight-through if hard.

    Args:
        tau: the (initial) temperature, > 0.
        hard: return exact one-hots with the relaxed gradient (straight-through).
        anneal: ``None`` for a constant temperature; a rate ``r >= 0`` for Jang et al.'s
            exponential schedule ``max(min_tau, tau exp(-r t))``; or a callable
            ``step -> tau``.
        min_tau: the floor of the exponential schedule (> 0).
        anneal_every: the schedule is updated every this many steps.
        dim: the category dimension.

    Call :meth:`advance` once per optimiser step to move the schedule on; the step count is
    the buffer ``step`` (saved in ``state_dict``).

    Shape:
        ``logits``: ``(..., num_categories)`` -> same shape.

    References:
        Jang, Gu & Poole (2017); Maddison, Mnih & Teh (2017).

    Example::

        >>> layer = GumbelSoftmax(tau=1.0, anneal=1e-3, min_tau=0.5)
        >>> y = layer(torch.randn(8, 10), generator=torch.Generator().manual_seed(0))
        >>> layer.advance()
    """

    def __init__(
        self,
        tau: float = 1.0,
        hard: bool = False,
        anneal: float | Callable[[int], float] | None = None,
        *,
        min_tau: float = 0.5,
        anneal_every: int = 1,
        dim: int = -1,
    ) -> None:
        super().__init__()
        self.initial_tau = _check_tau(tau)
        self.hard = bool(hard)
        self.dim = int(dim)
        if anneal is not None and not callable(anneal):
            if not (math.isfinite(anneal) and anneal >= 0):
                raise ValueError(f"anneal (the rate r) must be finite and >= 0, got {anneal}")
            if not (isinstance(min_tau, (int, float)) and 0 < min_tau < math.inf):
                raise ValueError(f"min_tau must be a finite temperature > 0, got {min_tau!r}")
            if min_tau > tau:
                raise ValueError(f"min_tau={min_tau} must not exceed the initial tau={tau}")
        if int(anneal_every) < 1:
            raise ValueError(f"anneal_every must be a positive integer, got {anneal_every}")
        self.anneal = anneal
        self.min_tau = float(min_tau)
        self.anneal_every = int(anneal_every)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._step = 0
        self.register_load_state_dict_post_hook(_sync_step)

    @property
    def tau(self) -> float:
        """The current temperature."""
        if self.anneal is None:
            return self.initial_tau
        if callable(self.anneal):
            return _check_tau(self.anneal(self._step))
        return exponential_anneal(
            self._step, self.initial_tau, self.anneal, self.min_tau, self.anneal_every
        )

    def advance(self, num_steps: int = 1) -> None:
        """Move the temperature schedule on by ``num_steps`` steps."""
        self._step += int(num_steps)
        self.step.fill_(self._step)

    def forward(self, logits: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """A relaxed (or straight-through one-hot) sample at the current temperature."""
        return gumbel_softmax(logits, self.tau, self.hard, dim=self.dim, generator=generator)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g}, hard={self.hard}, anneal={self.anneal}, step={self._step}"


def _sync_step(module: GumbelSoftmax, incompatible_keys) -> None:  # noqa: ARG001 - hook signature
    # The one synchronisation: when a state_dict is loaded, not on every forward.
    module._step = int(module.step)
