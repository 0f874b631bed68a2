"""Stochastic-gradient Hamiltonian Monte Carlo as a ``torch.optim.Optimizer``.

Talk section "Bayesian deep learning / SG-MCMC". Chen, Fox & Guestrin (2014), eq. (15), in
its "SGD with momentum" form, for the energy ``U(theta) = num_data * loss(theta) +
|theta|^2 / (2 prior_std^2)`` where ``loss`` is the *mean* negative log-likelihood of a
mini-batch (what ``loss.backward()`` differentiates)::

    v     <- (1 - alpha) v - eta * grad U~(theta) + N(0, 2 (alpha - beta_hat) eta T)
    theta <- theta + v

with ``eta = lr / num_data`` (so ``lr`` is on the scale of an SGD learning rate on the mean
loss), friction ``alpha``, temperature ``T`` (1: the posterior; 0: momentum SGD, no noise).

Chen et al.'s symbols and this class's arguments (error messages quote the arguments as
passed, never the derived symbols)::

    paper (eq. 15)                          here
    eta      step size on U                 lr / num_data    (so lr = eta * N)
    alpha    friction (1 - momentum)        friction
    beta_hat gradient-noise estimate        0, or eta * B_hat / 2 with noise_estimate="bhat"
    N        data set size                  num_data
    U        -sum_i log p(x_i | theta)      num_data * loss(theta)
               - log p(theta)                 + |theta|^2 / (2 prior_std^2)

For example the paper's ``eta = 2e-6`` on ``N = 50,000`` examples is ``lr = 0.1``; an
``lr`` taken from an SGD recipe on the mean loss carries over unchanged.

Mini-batch noise (DESIGN.md, "SGHMC"). The stochastic gradient ``grad U~`` carries noise of
covariance ``B``, which adds ``eta^2 B`` to the injected ``2 alpha eta`` per step; uncorrected
it inflates the posterior spread by about ``eta B / (4 alpha)``. Two choices:

* ``noise_estimate="none"`` (default): ``beta_hat = 0``; correct when ``eta B << alpha``,
  i.e. a step small enough that the gradient noise is negligible. The tests show it so on a
  Bayesian linear regression with i.i.d. mini-batches.
* ``noise_estimate="bhat"``: ``beta_hat = eta B_hat / 2`` per coordinate, with ``B_hat`` a
  running (exponential moving) variance of ``grad U~`` over steps, and the injected noise
  reduced to ``2 eta (alpha - beta_hat)`` (floored at 0; where ``beta_hat > alpha`` the step is
  too large for the friction). The running variance also contains the drift of the true
  gradient as ``theta`` moves, so it overestimates ``B`` and errs on the side of less
  injected noise; it is a heuristic (Chen et al. suggest ``B_hat = 0`` or the empirical
  Fisher). Measured on the tests' Bayesian linear regression at 10x their step: without it the
  variance is ~10 % too large (detected), with it ~8 % too small (also detected).

State (momentum and the ``B_hat`` moments) lives in the optimizer's ``state`` like any torch
optimizer, so ``state_dict()`` resumes a chain exactly. Noise is drawn with ``generator=``.

References:
    Chen, Fox & Guestrin (2014). Stochastic Gradient Hamiltonian Monte Carlo. ICML.
    Springenberg, Klein, Falkner & Hutter (2016). Bayesian Optimization with Robust Bayesian
    Neural Networks. NeurIPS (scale-adapted SGHMC).
    Saatchi & Wilson (2017). Bayesian GAN. NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from bayestorch.utils.random import check_generator_device

__all__ = ["SGHMC"]

_NOISE_ESTIMATES = ("none", "bhat")


def _check_nonnegative(name: str, value, positive: bool = False) -> float:
    """``float(value)`` after checking it; errors quote ``value`` as the user passed it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        rule = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be finite and {rule}, got {value!r}")
    return float(value)


class SGHMC(torch.optim.Optimizer):
    """SGHMC sampler over any parameters: ``loss.backward(); sampler.step(generator=g)``.

    After a burn-in, the parameters after each step are (approximate, for small ``lr``)
    draws from ``p(theta | data) ∝ exp(-num_data * loss - |theta|^2 / (2 prior_std^2))``.

    Args:
        params: parameters or parameter groups (as any torch optimizer).
        lr: step size on the mean loss; Chen et al.'s step is ``eta = lr / num_data``
            (the table in the module docstring converts).
        friction: ``alpha`` in (0, 1]: momentum decay per step (``1 - alpha`` is SGD's
            momentum).
        num_data: ``N``, the size of the data set the mean loss is taken over.
        prior_std: standard deviation of an isotropic Gaussian prior on the parameters
            (``None``: flat prior, nothing added).
        temperature: ``T``; 1 samples the posterior, 0 is momentum SGD (no noise).
        noise_estimate: ``"none"`` or ``"bhat"`` (see the module docstring).
        bhat_decay: the moving-average decay of the ``"bhat"`` gradient moments.
        preconditioner: ``None`` (identity mass) or ``"rmsprop"``: a diagonal inverse mass
            ``G = 1 / (sqrt(E[g^2]) + precond_eps)`` from a running mean of the squared
            mean-loss gradient (Springenberg et al. 2016; Li et al. 2016), so one ``lr`` suits
            parameters of very different scales (what makes SGHMC train GANs).
        precond_decay, precond_eps: the running mean's decay and the floor of ``G``'s
            denominator.

    Preconditioning: with ``G`` fixed the update is exact SGHMC with mass ``G^-1`` (in the
    coordinates ``G^(-1/2) theta`` it is the plain update)::

        v <- (1 - alpha) v - lr G grad(loss + |theta|^2 / (2 N prior_std^2))
             + N(0, 2 alpha (lr / N) G T)

    While ``G`` adapts, the sampler ignores the drift correction ``Gamma(theta)`` of a
    position-dependent metric (as pSGLD does): adapt during burn-in, then call
    :meth:`freeze_preconditioner` to sample exactly.

    Shape:
        any parameter shapes; a parameter of shape ``(chains, dim)`` with a loss summed over
        chains runs independent chains.

    References:
        Chen, Fox & Guestrin (2014), eq. (15) and section 3.3.
        Springenberg, Klein, Falkner & Hutter (2016), section 4 (scale adaptation).
        Li, Chen, Carlson & Carin (2016). Preconditioned Stochastic Gradient Langevin
        Dynamics for Deep Neural Networks. AAAI.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        friction: float = 0.05,
        num_data: int = 1,
        prior_std: float | None = None,
        temperature: float = 1.0,
        noise_estimate: str = "none",
        bhat_decay: float = 0.95,
        preconditioner: str | None = None,
        precond_decay: float = 0.99,
        precond_eps: float = 1e-8,
    ):
        _check_nonnegative("lr", lr, positive=True)
        if _check_nonnegative("friction", friction, positive=True) > 1:
            raise ValueError(f"friction must be in (0, 1], got {friction!r}")
        if isinstance(num_data, bool) or not isinstance(num_data, int) or num_data < 1:
            raise ValueError(f"num_data must be a positive integer, got {num_data!r}")
        if prior_std is not None:
            _check_nonnegative("prior_std", prior_std, positive=True)
        _check_nonnegative("temperature", temperature)
        if noise_estimate not in _NOISE_ESTIMATES:
            raise ValueError(
                f"noise_estimate must be one of {_NOISE_ESTIMATES}, got {noise_estimate!r}"
            )
        if not 0 <= bhat_decay < 1:
            raise ValueError(f"bhat_decay must be in [0, 1), got {bhat_decay!r}")
        if preconditioner not in (None, "rmsprop"):
            raise ValueError(f"preconditioner must be None or 'rmsprop', got {preconditioner!r}")
        if not 0 <= precond_decay < 1:
            raise ValueError(f"precond_decay must be in [0, 1), got {precond_decay!r}")
        _check_nonnegative("precond_eps", precond_eps, positive=True)
        defaults = dict(
            preconditioner=preconditioner,
            precond_decay=precond_decay,
            precond_eps=precond_eps,
            adapt_preconditioner=True,
            lr=lr,
            friction=friction,
            num_data=num_data,
            prior_std=prior_std,
            temperature=temperature,
            noise_estimate=noise_estimate,
            bhat_decay=bhat_decay,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(
        self, closure: Callable[[], Tensor] | None = None, generator: torch.Generator | None = None
    ) -> Tensor | None:
        """One SGHMC step from the gradients in ``.grad`` (of the mean mini-batch loss).

        Args:
            closure: optional, re-evaluates the loss (as for torch optimizers).
            generator: the source of the injected noise (on the parameters' device).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            num_data, alpha = group["num_data"], group["friction"]
            eta = group["lr"] / num_data
            temperature = group["temperature"]
            prior_precision = 0.0 if group["prior_std"] is None else group["prior_std"] ** -2
            for p in group["params"]:
                if p.grad is None:
                    continue
                check_generator_device(generator, p.device)
                state = self.state[p]
                if not state:
                    state["momentum"] = torch.zeros_like(p)
                v = state["momentum"]
                if group["preconditioner"] is None:
                    inverse_mass = None
                    # v <- (1 - alpha) v - eta grad U~, grad U~ = N grad(loss) + theta / s^2
                    v.mul_(1 - alpha).add_(p.grad, alpha=-eta * num_data)
                    if prior_precision:
                        v.add_(p, alpha=-eta * prior_precision)
                else:
                    # the mean-loss-scale gradient grad U~ / N, preconditioned by G
                    grad = p.grad.add(p, alpha=prior_precision / num_data)
                    inverse_mass = self._inverse_mass(state, grad, group)
                    v.mul_(1 - alpha).addcmul_(inverse_mass, grad, value=-group["lr"])
                if temperature > 0:
                    noise = torch.randn(
                        p.shape, generator=generator, device=p.device, dtype=p.dtype
                    )
                    if group["noise_estimate"] == "bhat" or inverse_mass is not None:
                        variance = self._noise_variance(
                            state, p, inverse_mass, eta, alpha, prior_precision, group
                        )
                        v.addcmul_(noise, variance.mul_(temperature).sqrt_())
                    else:
                        v.add_(noise, alpha=math.sqrt(2.0 * alpha * eta * temperature))
                p.add_(v)
        return loss

    def freeze_preconditioner(self, frozen: bool = True) -> None:
        """Stop (or resume) adapting the ``"rmsprop"`` preconditioner: with it fixed, the
        sampler is exact SGHMC with that mass matrix (as the step size goes to 0)."""
        for group in self.param_groups:
            group["adapt_preconditioner"] = not frozen

    @staticmethod
    def _inverse_mass(state: dict, grad: Tensor, group: dict) -> Tensor:
        """``G = 1 / (sqrt(running mean of grad^2) + eps)``, updated while adapting."""
        if "square_avg" not in state:
            state["square_avg"] = grad.square()
        elif group["adapt_preconditioner"]:
            decay = group["precond_decay"]
            state["square_avg"].mul_(decay).addcmul_(grad, grad, value=1 - decay)
        return state["square_avg"].sqrt().add_(group["precond_eps"]).reciprocal_()

    @staticmethod
    def _noise_variance(
        state: dict,
        p: Tensor,
        inverse_mass: Tensor | None,
        eta: float,
        alpha: float,
        prior_precision: float,
        group: dict,
    ) -> Tensor:
        """``2 eta alpha G - eta^2 G^2 B_hat`` floored at 0 (``B_hat = 0`` unless "bhat").

        ``B_hat`` is a running (exponentially weighted) variance of ``grad U~`` over steps.
        """
        g = torch.ones_like(p) if inverse_mass is None else inverse_mass
        variance = g.mul(2.0 * alpha * eta)
        if group["noise_estimate"] != "bhat":
            return variance
        grad_u = p.grad.mul(group["num_data"]).add_(p, alpha=prior_precision)
        decay = group["bhat_decay"]
        if "grad_mean" not in state:
            state["grad_mean"] = grad_u.clone()
            state["grad_var"] = torch.zeros_like(grad_u)
        mean, var = state["grad_mean"], state["grad_var"]
        diff = grad_u - mean
        # Exponentially weighted mean and variance (West 1979's incremental form).
        mean.add_(diff, alpha=1 - decay)
        var.mul_(decay).addcmul_(diff, diff, value=decay * (1 - decay))
        # 2 eta G (alpha - eta G B / 2): Chen et al.'s beta_hat in the preconditioned frame
        return variance.sub_(g.square().mul_(var), alpha=eta * eta).clamp_min_(0.0)
