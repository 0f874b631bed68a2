"""Infinite-width networks as kernels: the NNGP and the neural tangent kernel (NTK).

Talk section "Gaussian processes: infinitely wide networks". A fully connected network with
``depth`` hidden layers, weights ``N(0, weight_var / fan_in)`` and biases ``N(0, bias_var)``
converges, as the widths grow, to a Gaussian process whose kernel follows the layer map

    K^0(x, x') = bias_var + weight_var * x . x' / d_in
    K^l(x, x') = bias_var + weight_var * E[phi(u) phi(v)],   (u, v) ~ N(0, K^{l-1} on {x, x'})

and the output kernel is ``K^depth``. Trained by gradient flow in the NTK parameterisation,
its outputs follow the tangent kernel

    Theta^0 = K^0,   Theta^l = K^l + weight_var * E[phi'(u) phi'(v)] * Theta^{l-1}.

The Gaussian expectations have closed forms for ReLU (the arc-cosine kernel) and erf; for any
other activation given as a callable they are computed by Gauss-Legendre quadrature on the
two-dimensional Gaussian, split at the activation's kinks so ReLU-like functions still
converge exponentially fast.

References:
    Neal (1996). Bayesian Learning for Neural Networks, chapter 2.
    Williams (1997). Computing with infinite networks. NIPS (the erf kernel).
    Cho & Saul (2009). Kernel methods for deep learning. NIPS (the arc-cosine kernel).
    Lee, Bahri, Novak, Schoenholz, Pennington & Sohl-Dickstein (2018). Deep neural networks
    as Gaussian processes. ICLR.
    Jacot, Gabriel & Hongler (2018). Neural tangent kernel. NeurIPS.
    Arora, Du, Hu, Li, Salakhutdinov & Wang (2019). On exact computation with an infinitely
    wide neural net. NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bayestorch.gp.kernels import Kernel, _as_hyperparameter, _as_inputs, safe_sqrt

__all__ = [
    "NNGPKernel",
    "NNGPNetwork",
    "NTKKernel",
    "empirical_ntk",
    "erf_expectations",
    "gaussian_expectation",
    "nngp_recursion",
    "relu_expectations",
]

Activation = str | Callable[[Tensor], Tensor]
_CLOSED_FORMS = ("relu", "erf")


# --------------------------------------------------------------------- closed forms


def relu_expectations(k11: Tensor, k22: Tensor, k12: Tensor) -> tuple[Tensor, Tensor]:
    """``E[relu(u) relu(v)]`` and ``E[step(u) step(v)]`` for ``(u, v) ~ N(0, [[k11, k12],
    [k12, k22]])``: the arc-cosine kernels of degree 1 and 0.

    With ``theta`` the angle between ``u`` and ``v``, ``E[relu relu] = (sqrt(k11 k22 - k12^2)
    + (pi - theta) k12) / (2 pi)`` and ``E[step step] = (pi - theta) / (2 pi)``. The angle is
    ``atan2(sqrt(max(k11 k22 - k12^2, 0)), k12)`` with a square root whose derivative is 0 at 0,
    so gradients stay finite on the diagonal, where ``theta = 0``.

    Shape:
        broadcastable inputs; outputs of the broadcast shape.

    References:
        Cho & Saul (2009), eq. 6 with n = 1 and n = 0.
    """
    sine = safe_sqrt(k11 * k22 - k12.square())  # sqrt(k11 k22) sin(theta)
    theta = torch.atan2(sine, k12)
    value = (sine + (math.pi - theta) * k12) / (2.0 * math.pi)
    return value, (math.pi - theta) / (2.0 * math.pi)


def erf_expectations(k11: Tensor, k22: Tensor, k12: Tensor) -> tuple[Tensor, Tensor]:
    """``E[erf(u) erf(v)]`` and ``E[erf'(u) erf'(v)]`` for ``(u, v) ~ N(0, [[k11, k12],
    [k12, k22]])``.

    ``E[erf erf] = (2 / pi) asin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22)))`` (Williams 1997) and,
    with ``erf'(z) = 2 exp(-z^2) / sqrt(pi)``, ``E[erf' erf'] = (4 / pi) det(I + 2 K)^(-1/2)``.

    Shape:
        broadcastable inputs; outputs of the broadcast shape.

    References:
        Williams (1997). Computing with infinite networks, eq. 11.
    """
    a, b = 1.0 + 2.0 * k11, 1.0 + 2.0 * k22
    value = (2.0 / math.pi) * torch.asin(2.0 * k12 * torch.rsqrt(a * b))
    derivative = (4.0 / math.pi) * torch.rsqrt(a * b - 4.0 * k12.square())
    return value, derivative


# ----------------------------------------------------------------------- quadrature

_TAIL = 10.0  # integrate the standard normal over [-10, 10]: the mass outside is 1.5e-23


def _legendre(num_points: int, like: Tensor) -> tuple[Tensor, Tensor]:
    nodes, weights = np.polynomial.legendre.leggauss(num_points)
    return (
        torch.as_tensor(nodes, dtype=like.dtype, device=like.device),
        torch.as_tensor(weights, dtype=like.dtype, device=like.device),
    )


def _pieces(breaks: Tensor, nodes: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and N(0, 1)-weighted weights on ``[-T, b_1, ..., b_k, T]``.

    ``breaks``: ``(..., k)`` split points; returns ``(..., (k + 2) m)`` nodes and weights.
    """
    # The fixed cut at 0 keeps nodes dense where the Gaussian weight is: one Gauss-Legendre
    # panel over all of [-10, 10] would be inaccurate when no kink cuts it.
    limit = breaks.new_full((*breaks.shape[:-1], 1), _TAIL)
    edges = torch.cat([-limit, torch.zeros_like(limit), breaks.clamp(-_TAIL, _TAIL), limit], -1)
    edges = edges.sort(dim=-1).values
    lower, upper = edges[..., :-1, None], edges[..., 1:, None]
    half = 0.5 * (upper - lower)
    z = (lower + half + half * nodes).flatten(-2)
    w = (half * weights).flatten(-2) * torch.exp(-0.5 * z.square()) / math.sqrt(2.0 * math.pi)
    return z, w


def gaussian_expectation(
    fn: Callable[[Tensor], Tensor],
    k11: Tensor,
    k22: Tensor,
    k12: Tensor,
    *,
    fn2: Callable[[Tensor], Tensor] | None = None,
    num_points: int = 32,
    kinks: Sequence[float] = (0.0,),
    chunk_size: int = 2**21,
) -> Tensor:
    """``E[fn(u) fn2(v)]`` for ``(u, v) ~ N(0, [[k11, k12], [k12, k22]])`` by quadrature.

    Writes ``u = sqrt(k11) z1``, ``v = sqrt(k22) (rho z1 + sqrt(1 - rho^2) z2)`` with
    independent standard normals and integrates over ``z1``, then ``z2`` given ``z1``, each
    on ``[-10, 10]`` cut at 0 and at the points where ``u`` (resp. ``v``) crosses one of
    ``kinks``, with ``num_points`` Gauss-Legendre nodes per piece. Between kinks the
    integrand is smooth, so the rule converges exponentially even for ReLU, leaky ReLU or
    step functions. Fully
    differentiable in ``k11, k22, k12`` (and through ``fn``).

    Args:
        fn: elementwise function of a tensor.
        k11, k22, k12: variances and covariance (broadcastable; ``k11, k22 > 0``).
        fn2: the function of ``v`` (default ``fn``).
        num_points: Gauss-Legendre nodes per piece and dimension.
        kinks: points where ``fn`` (or ``fn2``) may be non-smooth.
        chunk_size: bound on the number of integrand evaluations held at once.

    Shape:
        broadcastable inputs; returns the broadcast shape. Costs ``((len(kinks) + 2)
        num_points)^2`` evaluations of each function per entry.

    References:
        Golub & Welsch (1969). Calculation of Gauss quadrature rules. Math. Comp. 23.
    """
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be a positive int, got {num_points!r}")
    fn2 = fn if fn2 is None else fn2
    k11, k22, k12 = torch.broadcast_tensors(k11, k22, k12)
    shape = k11.shape
    k11, k22, k12 = k11.reshape(-1), k22.reshape(-1), k12.reshape(-1)
    nodes, weights = _legendre(num_points, k11)
    kink = torch.as_tensor(list(kinks), dtype=k11.dtype, device=k11.device)
    per_entry = ((kink.numel() + 2) * num_points) ** 2
    step = max(1, chunk_size // per_entry)
    out = []
    for start in range(0, k11.numel(), step):
        a = k11[start : start + step]
        b = k22[start : start + step]
        c = k12[start : start + step]
        su, sv = a.sqrt(), b.sqrt()
        rho = (c / (su * sv)).clamp(-1.0, 1.0)
        cond_sd = sv * safe_sqrt(1.0 - rho.square())
        z1, w1 = _pieces(kink / su[:, None], nodes, weights)  # (E, Q)
        cond_mean = (sv * rho)[:, None] * z1  # mean of v given z1
        # Where v is (nearly) a deterministic function of z1 the split points run off to
        # +-inf; the clamp in _pieces puts them at the ends of the interval.
        denominator = cond_sd.clamp_min(torch.finfo(a.dtype).tiny)[:, None, None]
        z2, w2 = _pieces((kink - cond_mean[..., None]) / denominator, nodes, weights)  # (E, Q, R)
        v = cond_mean[..., None] + cond_sd[:, None, None] * z2
        inner = (w2 * fn2(v)).sum(-1)
        out.append((w1 * fn(su[:, None] * z1) * inner).sum(-1))
    return torch.cat(out).reshape(shape) if out else k11.new_zeros(shape)  # no entries


def _derivative(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``phi'`` by autograd, keeping the graph when the input carries one."""

    def derivative(z: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = not z.requires_grad
            z_in = z.detach().requires_grad_(True) if leaf else z
            (grad,) = torch.autograd.grad(fn(z_in).sum(), z_in, create_graph=not leaf)
        return grad

    return derivative


# ------------------------------------------------------------------------ recursion


def _resolve_activation(activation: Activation) -> Callable[[Tensor], Tensor]:
    if activation == "relu":
        return torch.relu
    if activation == "erf":
        return torch.erf
    if callable(activation):
        return activation
    raise ValueError(f"activation must be 'relu', 'erf' or a callable, got {activation!r}")


def _expectations(
    activation: Activation,
    num_points: int,
    kinks: Sequence[float],
    derivative_fn: Callable[[Tensor], Tensor] | None,
) -> Callable[[Tensor, Tensor, Tensor, bool], tuple[Tensor, Tensor | None]]:
    if activation == "relu":
        return lambda a, b, c, need: relu_expectations(a, b, c)
    if activation == "erf":
        return lambda a, b, c, need: erf_expectations(a, b, c)
    fn = _resolve_activation(activation)
    dfn = derivative_fn if derivative_fn is not None else _derivative(fn)

    def expectations(a: Tensor, b: Tensor, c: Tensor, need: bool) -> tuple[Tensor, Tensor | None]:
        value = gaussian_expectation(fn, a, b, c, num_points=num_points, kinks=kinks)
        if not need:
            return value, None
        return value, gaussian_expectation(dfn, a, b, c, num_points=num_points, kinks=kinks)

    return expectations


def nngp_recursion(
    x1: Tensor,
    x2: Tensor | None,
    *,
    depth: int,
    activation: Activation = "relu",
    weight_var: Tensor | float = 1.0,
    bias_var: Tensor | float = 0.0,
    diag: bool = False,
    ntk: bool = False,
    num_points: int = 32,
    kinks: Sequence[float] = (0.0,),
    derivative_fn: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The NNGP kernel ``K^depth`` and, with ``ntk=True``, the tangent kernel ``Theta^depth``.

    Args:
        x1, x2: inputs (``x2=None`` means ``x1``, and the diagonal is then exact).
        depth: number of hidden layers (0 gives the linear kernel ``K^0``).
        activation: ``"relu"``, ``"erf"`` (closed forms) or a callable (quadrature).
        weight_var, bias_var: ``sigma_w^2`` and ``sigma_b^2`` (tensors keep their gradients).
        diag: return only ``k(x1_i, x2_i)``.
        ntk: also return the tangent kernel.
        num_points, kinks: quadrature settings (callable activations only).
        derivative_fn: ``phi'`` for a callable activation (default: autograd).

    Shape:
        ``x1``: ``(..., n1, d)``, ``x2``: ``(..., n2, d)``; returns ``(..., n1, n2)`` twice
        (or ``(..., n1)`` with ``diag=True``; the second is ``None`` without ``ntk``).

    References:
        Lee et al. (2018), eq. 4; Jacot et al. (2018), theorem 1; Arora et al. (2019), eq. 9.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative int (hidden layers), got {depth!r}")
    if x2 is not None and x1.shape[-1:] != x2.shape[-1:]:
        raise ValueError(f"x1 and x2 must have the same last dim, got {x1.shape} and {x2.shape}")
    expect = _expectations(activation, num_points, kinks, derivative_fn)
    same = x2 is None or x2 is x1
    x2 = x1 if x2 is None else x2
    # Python numbers reach float64 inputs at float64 precision (not the default dtype's).
    weight_var = (
        weight_var.to(x1)
        if isinstance(weight_var, Tensor)
        else _as_hyperparameter(weight_var).to(x1)
    )
    bias_var = (
        bias_var.to(x1) if isinstance(bias_var, Tensor) else _as_hyperparameter(bias_var).to(x1)
    )
    d_in = x1.shape[-1]

    k11 = bias_var + weight_var * x1.square().sum(-1) / d_in
    k22 = k11 if same else bias_var + weight_var * x2.square().sum(-1) / d_in
    if diag:
        k12 = k11 if same else bias_var + weight_var * (x1 * x2).sum(-1) / d_in
        row, col = k11, k22
    else:
        k12 = bias_var + weight_var * (x1 @ x2.mT) / d_in
        if same:  # make the diagonal exactly the variances: angle 0, no round-off
            eye = torch.eye(k12.shape[-1], dtype=torch.bool, device=k12.device)
            k12 = torch.where(eye, k11[..., :, None].expand_as(k12), k12)
        row, col = k11[..., :, None], k22[..., None, :]
    theta = k12 if ntk else None
    for _ in range(depth):
        e12, d12 = expect(row, col, k12, ntk)
        if ntk:
            theta = bias_var + weight_var * e12 + weight_var * d12 * theta
        k12 = bias_var + weight_var * e12
        k11 = bias_var + weight_var * expect(k11, k11, k11, False)[0]
        k22 = k11 if same else bias_var + weight_var * expect(k22, k22, k22, False)[0]
        row, col = (k11, k22) if diag else (k11[..., :, None], k22[..., None, :])
    return k12, theta


class NNGPKernel(Kernel):
    """Kernel of an infinitely wide fully connected network at initialisation (NNGP).

    Args:
        depth: number of hidden layers; the input layer gives ``K^0 = bias_var +
            weight_var * x . x' / d_in``.
        activation: ``"relu"`` or ``"erf"`` (closed forms) or any elementwise callable
            (Gauss-Legendre quadrature, see :func:`gaussian_expectation`).
        weight_var: ``sigma_w^2`` > 0, learnable.
        bias_var: ``sigma_b^2`` > 0, learnable; or exactly 0, a network without biases (then
            a fixed buffer: a softplus-constrained parameter cannot reach 0).
        num_points: quadrature nodes per piece and dimension (callables only).
        kinks: points where a callable activation may be non-smooth.
        derivative_fn: the activation's derivative, for :class:`NTKKernel` (default: autograd).

    Shape:
        as :class:`~bayestorch.gp.kernels.Kernel`.

    Example::

        >>> k = NNGPKernel(depth=3, activation="relu", weight_var=2.0, bias_var=0.1)
        >>> k(torch.randn(5, 4), torch.randn(3, 4)).shape
        torch.Size([5, 3])

    References:
        Lee et al. (2018). Deep neural networks as Gaussian processes. ICLR.
        Cho & Saul (2009); Williams (1997).
    """

    _ntk = False

    def __init__(
        self,
        depth: int,
        activation: Activation = "relu",
        weight_var: float | Tensor = 1.0,
        bias_var: float | Tensor = 0.1,
        *,
        num_points: int = 32,
        kinks: Sequence[float] = (0.0,),
        derivative_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be a non-negative int (hidden layers), got {depth!r}")
        _resolve_activation(activation)
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        self.depth = depth
        self.activation = activation
        self.num_points = int(num_points)
        self.kinks = tuple(float(k) for k in kinks)
        self.derivative_fn = derivative_fn
        self.register_positive("weight_var", weight_var)
        zero = _as_hyperparameter(bias_var)
        if zero.numel() == 1 and float(zero) < 0.0:
            raise ValueError(
                f"bias_var must be positive (or exactly 0: a network without biases), got "
                f"{bias_var!r}"
            )
        if zero.numel() == 1 and float(zero) == 0.0:
            self.register_buffer("fixed_bias_var", zero)  # no biases: not learnable
        else:
            self.fixed_bias_var = None
            self.register_positive("bias_var", bias_var)

    @property
    def weight_var(self) -> Tensor:
        return self.positive("weight_var")

    @property
    def bias_var(self) -> Tensor:
        if self.fixed_bias_var is not None:
            return self.fixed_bias_var
        return self.positive("bias_var")

    def _both(self, x1: Tensor, x2: Tensor, diag: bool) -> tuple[Tensor, Tensor | None]:
        return nngp_recursion(
            x1,
            x2,
            depth=self.depth,
            activation=self.activation,
            weight_var=self.weight_var,
            bias_var=self.bias_var,
            diag=diag,
            ntk=self._ntk,
            num_points=self.num_points,
            kinks=self.kinks,
            derivative_fn=self.derivative_fn,
        )

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        return self._both(x1, x2, diag)[0]

    def extra_repr(self) -> str:
        name = self.activation if isinstance(self.activation, str) else "callable"
        return f"depth={self.depth}, activation={name}"


class NTKKernel(NNGPKernel):
    """Neural tangent kernel of an infinitely wide fully connected network (NTK
    parameterisation): the kernel of gradient-flow training, ``Theta^depth``.

    Same arguments as :class:`NNGPKernel`.

    Shape:
        as :class:`~bayestorch.gp.kernels.Kernel`.

    References:
        Jacot, Gabriel & Hongler (2018). Neural tangent kernel. NeurIPS.
        Arora et al. (2019). On exact computation with an infinitely wide neural net.
    """

    _ntk = True

    def compute(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        return self._both(x1, x2, diag)[1]


# ------------------------------------------------------------------ finite networks


class NNGPNetwork(nn.Module):
    """A finite fully connected network whose infinite-width limit is :class:`NNGPKernel`.

    ``depth`` hidden layers of ``width`` units, then a linear readout. Weights are
    ``N(0, weight_var / fan_in)`` and biases ``N(0, bias_var)``. With
    ``parameterization="standard"`` these are the parameters themselves (the NNGP setting,
    trained like any MLP); with ``"ntk"`` the parameters are standard normals scaled in the
    forward pass (``sqrt(weight_var / fan_in) W h + sqrt(bias_var) b``), whose tangent kernel
    converges to :class:`NTKKernel`. Both give the same function distribution at
    initialisation.

    Args:
        in_features, width, depth, out_features: layer sizes.
        activation: ``"relu"``, ``"erf"`` or a callable.
        weight_var, bias_var: the prior variances (floats; not learnable here).
        parameterization: ``"standard"`` or ``"ntk"``.
        num_networks: if given, an ensemble of that many independent networks evaluated in
            one batched pass (parameters get a leading ``num_networks`` dim).
        generator: draws the initial parameters.

    Shape:
        input ``(..., n, in_features)``, output ``(..., n, out_features)``; with
        ``num_networks`` the input is ``(n, in_features)`` and the output
        ``(num_networks, n, out_features)``.

    References:
        Lee et al. (2018), section 2; Jacot et al. (2018), section 2.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        out_features: int = 1,
        activation: Activation = "relu",
        weight_var: float = 1.0,
        bias_var: float = 0.1,
        *,
        parameterization: str = "standard",
        num_networks: int | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if parameterization not in ("standard", "ntk"):
            raise ValueError(
                f"parameterization must be 'standard' or 'ntk', got {parameterization!r}"
            )
        for name, value in (("in_features", in_features), ("width", width)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if depth < 0 or out_features < 1:
            raise ValueError(f"need depth >= 0 and out_features >= 1, got {depth}, {out_features}")
        if not weight_var > 0 or not bias_var >= 0:
            raise ValueError(
                f"weight_var must be > 0 and bias_var >= 0, got {weight_var}, {bias_var}"
            )
        self.activation = _resolve_activation(activation)
        self.weight_var, self.bias_var = float(weight_var), float(bias_var)
        self.parameterization = parameterization
        if num_networks is not None and num_networks < 1:
            raise ValueError(f"num_networks must be >= 1 or None, got {num_networks}")
        self.num_networks = num_networks
        lead = () if num_networks is None else (num_networks,)
        sizes = [in_features] + [width] * depth + [out_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            self.weights.append(
                nn.Parameter(torch.empty(*lead, fan_out, fan_in, dtype=dtype, device=device))
            )
            self.biases.append(
                nn.Parameter(torch.empty(*lead, fan_out, dtype=dtype, device=device))
            )
        self.reset_parameters(generator=generator)

    def _scales(self, fan_in: int) -> tuple[float, float]:
        return math.sqrt(self.weight_var / fan_in), math.sqrt(self.bias_var)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Redraw every weight and bias from the prior."""
        for weight, bias in zip(self.weights, self.biases):
            weight.copy_(
                torch.randn(
                    weight.shape, generator=generator, dtype=weight.dtype, device=weight.device
                )
            )
            bias.copy_(
                torch.randn(bias.shape, generator=generator, dtype=bias.dtype, device=bias.device)
            )
            if self.parameterization == "standard":
                w_scale, b_scale = self._scales(weight.shape[-1])
                weight.mul_(w_scale)
                bias.mul_(b_scale)

    def _layer(self, index: int, h: Tensor) -> Tensor:
        weight, bias = self.weights[index], self.biases[index]
        if self.num_networks is not None:
            bias = bias.unsqueeze(-2)  # (networks, 1, out): broadcasts over the points
        if self.parameterization == "standard":
            return h @ weight.mT + bias
        w_scale, b_scale = self._scales(weight.shape[-1])
        return w_scale * (h @ weight.mT) + b_scale * bias

    def features(self, x: Tensor) -> Tensor:
        """Post-activations of the last hidden layer (the input itself when ``depth = 0``)."""
        h = x
        for index in range(len(self.weights) - 1):
            h = self.activation(self._layer(index, h))
        return h

    def forward(self, x: Tensor) -> Tensor:
        return self._layer(len(self.weights) - 1, self.features(x))

    def empirical_nngp(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        """The readout's conditional output covariance ``bias_var + weight_var h(x1).h(x2) /
        width``: the covariance over infinitely many readout units of this network, which
        converges to the NNGP kernel as the width grows.

        Shape:
            ``x1``: ``(n1, d)``, ``x2``: ``(n2, d)``; returns ``(n1, n2)`` (with a leading
            ``num_networks`` dim for an ensemble).
        """
        h1 = self.features(x1)
        h2 = h1 if x2 is None else self.features(x2)
        return self.bias_var + self.weight_var * (h1 @ h2.mT) / h1.shape[-1]


def empirical_ntk(network: nn.Module, x1: Tensor, x2: Tensor | None = None) -> Tensor:
    """Empirical tangent kernel ``J(x1) J(x2)^T / out_features`` of any network.

    ``J`` is the Jacobian of the outputs with respect to all parameters (``torch.func``);
    outputs are averaged, so a network with ``m`` i.i.d. readouts gives an ``(n1, n2)``
    matrix. For :class:`NNGPNetwork` use ``parameterization="ntk"``: its value converges
    to :class:`NTKKernel` as the width grows.

    Shape:
        ``x1``: ``(n1, d)``, ``x2``: ``(n2, d)``; returns ``(n1, n2)``.

    References:
        Jacot et al. (2018), section 3.
    """
    from torch.func import functional_call, jacrev

    x1 = _as_inputs("x1", x1)
    x2 = x1 if x2 is None else _as_inputs("x2", x2)
    if x1.shape[-1] != x2.shape[-1]:
        raise ValueError(f"x1 and x2 must have the same last dim, got {x1.shape} and {x2.shape}")
    params = {name: p.detach() for name, p in network.named_parameters()}

    def jacobian(x: Tensor) -> dict[str, Tensor]:
        return jacrev(lambda p: functional_call(network, p, (x,)))(params)

    j1 = jacobian(x1)
    j2 = j1 if x2 is x1 else jacobian(x2)
    total = None
    for name in params:
        a = j1[name].flatten(2)  # (n1, out, P)
        b = j2[name].flatten(2)
        term = torch.einsum("iop,jop->ij", a, b)
        total = term if total is None else total + term
    out_features = next(iter(j1.values())).shape[1]
    return total / out_features
