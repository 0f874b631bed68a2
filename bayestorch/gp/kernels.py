"""Covariance functions as ``nn.Module``s: RBF, Matérn, rational quadratic, periodic, linear,
and their sums, products and scalings.

Talk section "Gaussian processes". Every kernel implements ``forward(x1, x2=None, diag=False)``
on inputs ``(..., n, d)``; positive hyperparameters are stored unconstrained (``raw_<name>``)
and mapped through a softplus, so any optimiser step keeps them positive.

Precision: a hyperparameter given as a Python number is stored in float64 (the number's own
precision, whatever ``torch.get_default_dtype()`` is) and cast to the inputs' dtype where it
is used, so a kernel is float64-accurate on float64 inputs and float32 on float32 ones. A
hyperparameter given as a tensor keeps that tensor's dtype; ``kernel.float()`` /
``kernel.double()`` cast all of them, as for any module.

References:
    Rasmussen & Williams (2006). Gaussian Processes for Machine Learning, chapter 4.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "RBF",
    "Kernel",
    "Linear",
    "Matern",
    "Periodic",
    "Product",
    "RationalQuadratic",
    "Scale",
    "Sum",
    "inverse_softplus",
    "safe_sqrt",
]


def inverse_softplus(value: Tensor) -> Tensor:
    """``log(exp(v) - 1)``, computed stably: the raw value whose softplus is ``value``."""
    return value + torch.log(-torch.expm1(-value))


def safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(max(x, 0))`` whose derivative is 0 (not inf or NaN) where ``x <= 0``.

    Distances and the ``sqrt(K11 K22 - K12^2)`` of the arc-cosine kernel vanish on the
    diagonal; a plain ``sqrt`` would give an infinite gradient there.
    """
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), 0.0)


def _as_hyperparameter(value: float | Tensor) -> Tensor:
    """A detached copy of ``value``: a floating tensor keeps its dtype; a Python number (or an
    integer tensor) becomes float64, so no precision is lost before it meets the inputs."""
    if not isinstance(value, Tensor):
        return torch.as_tensor(value, dtype=torch.float64)
    tensor = value.detach().clone()
    return tensor if tensor.is_floating_point() else tensor.to(torch.float64)


def _as_positive_tensor(name: str, value: float | Tensor) -> Tensor:
    tensor = _as_hyperparameter(value)
    if not bool(torch.isfinite(tensor).all()) or not bool((tensor > 0).all()):
        raise ValueError(
            f"{name} must be positive and finite, got {value!r} "
            f"(shape {tuple(tensor.shape)}); it is stored behind a softplus constraint"
        )
    return tensor


def _as_inputs(name: str, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 1:  # (n,) -> (n, 1): one-dimensional inputs
        x = x.unsqueeze(-1)
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (..., n, d) or (n,), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} of shape {tuple(x.shape)} holds NaN or inf")
    return x


class Kernel(nn.Module):
    """Base class: a positive semi-definite covariance function ``k(x1, x2)``.

    Subclasses implement :meth:`compute` (inputs already checked, ``x2`` given) and register
    positive hyperparameters with :meth:`register_positive`. ``k1 + k2``, ``k1 * k2`` and
    ``c * k`` build :class:`Sum`, :class:`Product` and :class:`Scale`.

    Shape:
        ``x1``: ``(..., n1, d)`` (or ``(n1,)`` for ``d = 1``), ``x2``: ``(..., n2, d)``;
        returns ``(..., n1, n2)``, or ``(..., n1)`` with ``diag=True`` (then ``n1 = n2``).

    References:
        Rasmussen & Williams (2006), chapter 4.
    """

    def register_positive(self, name: str, value: float | Tensor) -> None:
        """Store ``value`` (> 0) as the parameter ``raw_<name>`` with ``name = softplus(raw)``."""
        tensor = _as_positive_tensor(name, value)
        self.register_parameter(f"raw_{name}", nn.Parameter(inverse_softplus(tensor)))

    def positive(self, name: str) -> Tensor:
        """The constrained value ``softplus(raw_<name>)``."""
        return F.softplus(getattr(self, f"raw_{name}"))

    def set_positive(self, name: str, value: float | Tensor) -> None:
        """Overwrite hyperparameter ``name`` in place (keeps the same ``nn.Parameter``)."""
        raw = getattr(self, f"raw_{name}")
        tensor = _as_positive_tensor(name, value).to(raw)
        with torch.no_grad():
            raw.copy_(inverse_softplus(tensor).expand_as(raw))

    def forward(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        """Kernel matrix (or its diagonal) between ``x1`` and ``x2`` (default ``x1``)."""
        x1 = _as_inputs("x1", x1)
        x2 = x1 if x2 is None else _as_inputs("x2", x2)
        if x1.shape[-1] != x2.shape[-1]:
            raise ValueError(
                f"x1 and x2 must have the same last dim (input dimension), got shapes "
                f"{tuple(x1.shape)} and {tuple(x2.shape)}"
            )
        if diag and x1.shape[-2] != x2.shape[-2]:
            raise ValueError(
                f"diag=True needs as many points in x1 as in x2, got shapes "
                f"{tuple(x1.shape)} and {tuple(x2.shape)}"
            )
        return self.compute(x1, x2, diag)

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        raise NotImplementedError

    def __add__(self, other: Kernel) -> Sum:
        if not isinstance(other, Kernel):
            return NotImplemented
        return Sum(self, other)

    def __mul__(self, other: Kernel | float) -> Kernel:
        if isinstance(other, Kernel):
            return Product(self, other)
        if isinstance(other, (int, float, Tensor)):
            return Scale(self, other)
        return NotImplemented

    __rmul__ = __mul__


def _squared_distance(x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
    """``|x1_i - x2_j|^2``, exact zeros where ``x1`` is ``x2`` on the diagonal."""
    if diag:
        return (x1 - x2).square().sum(-1)
    if x1.shape[-1] == 1:  # direct differences: exact and cheap in one dimension
        return (x1 - x2.transpose(-1, -2)).square()
    # |a|^2 + |b|^2 - 2 a.b on centred inputs (less cancellation). Its round-off is about
    # (d + 2) eps (|a|^2 + |b|^2): a value below that bound is indistinguishable from 0 and
    # is set to 0, so equal points (x and x.clone()) are at distance exactly 0, as the
    # direct differences give, rather than sqrt(round-off) in the Matérn kernels.
    centre = x1.mean(-2, keepdim=True)
    a, b = x1 - centre, x2 - centre
    norms = a.square().sum(-1)[..., :, None] + b.square().sum(-1)[..., None, :]
    d2 = norms - 2.0 * a @ b.mT
    resolution = (x1.shape[-1] + 2) * torch.finfo(d2.dtype).eps * norms
    d2 = torch.where(d2 <= resolution, 0.0, d2)
    if x1 is x2:
        eye = torch.eye(d2.shape[-1], dtype=torch.bool, device=d2.device)
        d2 = d2.masked_fill(eye, 0.0)
    return d2


class _Stationary(Kernel):
    """Kernels of the scaled distance ``r = |x1 - x2| / lengthscale``.

    ``lengthscale`` may be a scalar or one value per input dimension (ARD).
    """

    def __init__(self, lengthscale: float | Tensor = 1.0) -> None:
        super().__init__()
        self.register_positive("lengthscale", lengthscale)

    @property
    def lengthscale(self) -> Tensor:
        return self.positive("lengthscale")

    def scaled_squared_distance(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        ell = self.lengthscale
        if ell.dim() > 0 and ell.shape[-1] not in (1, x1.shape[-1]):
            raise ValueError(
                f"lengthscale has shape {tuple(ell.shape)} but the inputs have "
                f"{x1.shape[-1]} dimension(s); use a scalar or one value per dimension"
            )
        ell = ell.to(x1)
        same = x1 is x2
        x1 = x1 / ell
        x2 = x1 if same else x2 / ell
        return _squared_distance(x1, x2, diag)


class RBF(_Stationary):
    """Squared exponential kernel ``exp(-r^2 / 2)``, ``r = |x1 - x2| / lengthscale``.

    Args:
        lengthscale: positive scalar, or ``(d,)`` for one per input dimension.

    Shape:
        as :class:`Kernel`.

    References:
        Rasmussen & Williams (2006), eq. 4.9.
    """

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        return torch.exp(-0.5 * self.scaled_squared_distance(x1, x2, diag))


class Matern(_Stationary):
    """Matérn kernel with smoothness ``nu`` in {1/2, 3/2, 5/2}.

    ``nu = 1/2``: ``exp(-r)``; ``3/2``: ``(1 + sqrt3 r) exp(-sqrt3 r)``;
    ``5/2``: ``(1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r)``.

    Args:
        nu: 0.5, 1.5 or 2.5.
        lengthscale: positive scalar or ``(d,)``.

    Shape:
        as :class:`Kernel`.

    References:
        Rasmussen & Williams (2006), eqs. 4.14-4.17.
    """

    def __init__(self, nu: float = 2.5, lengthscale: float | Tensor = 1.0) -> None:
        if nu not in (0.5, 1.5, 2.5):
            raise ValueError(f"nu must be 0.5, 1.5 or 2.5, got {nu!r}")
        super().__init__(lengthscale)
        self.nu = float(nu)

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        d2 = self.scaled_squared_distance(x1, x2, diag)
        r = safe_sqrt(d2)  # zero gradient at r = 0, where the Matérn kernels are flat or kinked
        if self.nu == 0.5:
            return torch.exp(-r)
        if self.nu == 1.5:
            s = math.sqrt(3.0) * r
            return (1.0 + s) * torch.exp(-s)
        s = math.sqrt(5.0) * r
        return (1.0 + s + (5.0 / 3.0) * d2) * torch.exp(-s)

    def extra_repr(self) -> str:
        return f"nu={self.nu}"


class RationalQuadratic(_Stationary):
    """Rational quadratic kernel ``(1 + r^2 / (2 alpha))^(-alpha)``: a scale mixture of RBFs.

    Args:
        lengthscale: positive scalar or ``(d,)``.
        alpha: positive shape parameter (RBF as ``alpha -> inf``).

    Shape:
        as :class:`Kernel`.

    References:
        Rasmussen & Williams (2006), eq. 4.19.
    """

    def __init__(self, lengthscale: float | Tensor = 1.0, alpha: float | Tensor = 1.0) -> None:
        super().__init__(lengthscale)
        self.register_positive("alpha", alpha)

    @property
    def alpha(self) -> Tensor:
        return self.positive("alpha")

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        alpha = self.alpha.to(x1)
        d2 = self.scaled_squared_distance(x1, x2, diag)
        return torch.exp(-alpha * torch.log1p(d2 / (2.0 * alpha)))


class Periodic(Kernel):
    """Periodic (exp-sine-squared) kernel ``exp(-2 sum_k sin^2(pi (x1_k - x2_k) / period)
    / lengthscale^2)``.

    In one dimension this is MacKay's periodic kernel (scikit-learn's ``ExpSineSquared``);
    in several it is the product over dimensions, which keeps the gradient smooth at 0.

    Args:
        lengthscale: positive scalar.
        period: positive scalar.

    Shape:
        as :class:`Kernel`.

    References:
        MacKay (1998). Introduction to Gaussian processes. Rasmussen & Williams (2006), eq. 4.31.
    """

    def __init__(self, lengthscale: float | Tensor = 1.0, period: float | Tensor = 1.0) -> None:
        super().__init__()
        self.register_positive("lengthscale", lengthscale)
        self.register_positive("period", period)

    @property
    def lengthscale(self) -> Tensor:
        return self.positive("lengthscale")

    @property
    def period(self) -> Tensor:
        return self.positive("period")

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        diff = x1 - x2 if diag else x1[..., :, None, :] - x2[..., None, :, :]
        sines = torch.sin(math.pi * diff / self.period.to(x1)).square().sum(-1)
        return torch.exp(-2.0 * sines / self.lengthscale.to(x1).square())


class Linear(Kernel):
    """Linear (dot-product) kernel ``variance * x1 . x2``: Bayesian linear regression.

    Args:
        variance: positive prior variance of the weights.

    Shape:
        as :class:`Kernel`.

    References:
        Rasmussen & Williams (2006), eq. 4.22.
    """

    def __init__(self, variance: float | Tensor = 1.0) -> None:
        super().__init__()
        self.register_positive("variance", variance)

    @property
    def variance(self) -> Tensor:
        return self.positive("variance")

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        dots = (x1 * x2).sum(-1) if diag else x1 @ x2.mT
        return self.variance.to(x1) * dots


class _Combination(Kernel):
    """Two or more kernels combined elementwise by ``_combine`` (``+`` or ``*``)."""

    _combine: Callable[[Tensor, Tensor], Tensor]

    def __init__(self, *kernels: Kernel) -> None:
        super().__init__()
        if len(kernels) < 2 or not all(isinstance(k, Kernel) for k in kernels):
            raise TypeError(f"{type(self).__name__} needs two or more Kernel instances")
        self.kernels = nn.ModuleList(kernels)

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        total = self.kernels[0].compute(x1, x2, diag)
        for kernel in self.kernels[1:]:
            total = type(self)._combine(total, kernel.compute(x1, x2, diag))
        return total


class Sum(_Combination):
    """``k1 + k2`` (also written with ``+``).

    Shape:
        as :class:`Kernel`.

    References:
        Rasmussen & Williams (2006), section 4.2.4.
    """

    _combine = staticmethod(torch.add)


class Product(_Combination):
    """``k1 * k2`` elementwise (also written with ``*``).

    Shape:
        as :class:`Kernel`.

    References:
        Rasmussen & Williams (2006), section 4.2.4.
    """

    _combine = staticmethod(torch.mul)


class Scale(Kernel):
    """``variance * k`` with a learnable positive ``variance`` (also written ``c * k``).

    Args:
        kernel: the base kernel.
        variance: positive initial output variance.

    Shape:
        as :class:`Kernel`.

    References:
        Rasmussen & Williams (2006), section 4.2.4.
    """

    def __init__(self, kernel: Kernel, variance: float | Tensor = 1.0) -> None:
        super().__init__()
        if not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be a Kernel, got {type(kernel).__name__}")
        self.kernel = kernel
        self.register_positive("variance", variance)

    @property
    def variance(self) -> Tensor:
        return self.positive("variance")

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        return self.variance.to(x1) * self.kernel.compute(x1, x2, diag)
