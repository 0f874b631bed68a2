"""Diversified mini-batches for SGD: a k-DPP over the data set as a ``torch`` batch sampler.

Each batch is a draw of the k-DPP with ``L = Phi Phi^T`` over all ``N`` items, ``Phi`` the
(row-normalised, optionally quality-weighted) features: inputs, one-hot labels, random
Fourier features of either, or a model's high layer refreshed every few steps (Zhang,
Kjellstrom & Mandt 2017; Huang, Xu & Oppermann 2019). The low-rank (dual) k-DPP sampler
costs ``O(N d^2)`` per refresh and ``O(N k^2)`` per batch, so tens of thousands of items
are cheap. ``weights`` holds the Horvitz-Thompson weights ``1 / (N pi_i)`` from the exact
k-DPP inclusion probabilities: ``sum_{i in batch} w_i loss_i`` is then an unbiased estimate
of the mean loss over the data set (for uniform batches ``w_i = 1 / k``).

References:
    Zhang, Kjellstrom & Mandt (2017). Determinantal point processes for mini-batch
    diversification. UAI.
    Huang, Xu & Oppermann (2019). Efficient diversified mini-batch selection using
    variable high-layer features. ACML.
    Horvitz & Thompson (1952). A generalization of sampling without replacement from a
    finite universe. JASA 47(260).
    Rahimi & Recht (2007). Random features for large-scale kernel machines. NeurIPS.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler

from bayestorch.dpp.dpp import check_features
from bayestorch.dpp.kdpp import KDPP
from bayestorch.utils import distributed as collectives
from bayestorch.utils.random import check_generator_device, rand_open01

__all__ = ["DPPBatchSampler", "random_fourier_features"]

FeaturesLike = Tensor | Callable[[], Tensor]


def random_fourier_features(
    x: Tensor,
    num_features: int,
    lengthscale: float | Tensor = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Features ``Phi`` with ``Phi Phi^T ≈ exp(-|x_i - x_j|^2 / (2 lengthscale^2))``.

    ``Phi = sqrt(2 / D) cos(x W / lengthscale + b)``, ``W ~ N(0, I)``, ``b ~ U(0, 2 pi)``:
    a rank-``D`` RBF kernel for the dual DPP samplers.

    Shape:
        ``x``: ``(N, p)`` -> ``(N, num_features)``.

    References:
        Rahimi & Recht (2007).
    """
    check_features("x", x)
    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}")
    check_generator_device(generator, x.device)
    w = torch.randn(x.shape[-1], num_features, generator=generator, device=x.device, dtype=x.dtype)
    b = 2 * math.pi * torch.rand(num_features, generator=generator, device=x.device, dtype=x.dtype)
    return math.sqrt(2.0 / num_features) * torch.cos(x @ w / lengthscale + b)


class DPPBatchSampler(Sampler[list[int]]):
    """Batch sampler yielding k-DPP-diversified mini-batches of indices (for ``DataLoader``).

    Use as ``DataLoader(dataset, batch_sampler=DPPBatchSampler(features, batch_size))``.
    Every batch has exactly ``batch_size`` distinct indices. Under ``torch.distributed``
    (``rank``, ``world_size``), every rank draws the *same* k-DPP sample of size
    ``batch_size * world_size`` (same seed on all ranks), randomly split into disjoint
    per-rank batches; each rank's ``weights`` then use its own inclusion probabilities
    ``pi_i / world_size``, so the gradient averaged over ranks is unbiased. Under an
    initialised process group (e.g. ``torchrun``) ``rank`` and ``world_size`` default to
    the group's, and each epoch's iteration first checks (one small ``all_gather``) that
    every rank holds the same seed and epoch (or generator state): ranks that disagree
    would draw different k-DPP samples and overlapping batches, so they raise instead.

    Args:
        features: ``Phi`` of shape ``(N, d)``, or a callable returning it (e.g. a model's
            high layer on the whole data set, under ``torch.no_grad()``); ``d`` must be
            ``>= batch_size * world_size`` (random Fourier features raise ``d`` cheaply).
        batch_size: items per batch (per rank).
        num_batches: batches per epoch; default ``N // (batch_size * world_size)``.
        quality: optional per-item quality ``q_i > 0`` (``(N,)`` or a callable), giving
            ``L_ij = q_i <phi_i, phi_j> q_j``.
        normalize: scale each feature row to unit norm first (so only ``quality``
            favours items, not the feature norm).
        refresh_every: with callable features (or quality), call them again every this
            many batches (``None``: once, then on :meth:`refresh`).
        generator: source of randomness, used statefully across epochs; if ``None``, each
            epoch uses a fresh generator seeded with ``seed + epoch`` (see
            :meth:`set_epoch`), which is what distributed training needs.
        seed: see ``generator``.
        rank: this process's rank (default: ``torch.distributed.get_rank()`` when a process
            group is initialised, else 0).
        world_size: the number of processes (default: from ``torch.distributed`` likewise,
            else 1).
        chunk_size: how many batches are drawn at once (one batched projection phase);
            never across a refresh.

    Shape:
        ``features``: ``(N, d)``; ``weights``, ``inclusion_probs``: ``(N,)``.

    References:
        Zhang, Kjellstrom & Mandt (2017); Huang, Xu & Oppermann (2019); Horvitz & Thompson
        (1952).
    """

    def __init__(
        self,
        features: FeaturesLike,
        batch_size: int,
        *,
        num_batches: int | None = None,
        quality: FeaturesLike | None = None,
        normalize: bool = True,
        refresh_every: int | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        chunk_size: int = 16,
    ) -> None:
        if world_size is None:
            world_size = collectives.world_size()
        if rank is None:
            rank = collectives.rank()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not (isinstance(world_size, int) and world_size >= 1):
            raise ValueError(f"world_size must be a positive int, got {world_size!r}")
        if not (isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"rank must be an int in [0, world_size={world_size}), got {rank!r}")
        if refresh_every is not None and refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1 or None, got {refresh_every}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self._features_source = features
        self._quality_source = quality
        self.batch_size = batch_size
        self.normalize = normalize
        self.refresh_every = refresh_every
        self.generator = generator
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.chunk_size = chunk_size
        self.epoch = 0
        self.kdpp: KDPP | None = None
        self._since_refresh = 0
        self.refresh()
        n = self.num_items
        total = batch_size * world_size
        if total > n:
            raise ValueError(f"batch_size * world_size = {total} exceeds the N={n} items")
        self.num_batches = n // total if num_batches is None else int(num_batches)
        if self.num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")

    # ----------------------------------------------------------------- features
    def refresh(self) -> None:
        """Re-read the features (and quality) and rebuild the k-DPP (its SVD, ``O(N d^2)``)."""
        source = self._features_source
        phi = source() if callable(source) else source
        check_features("features", phi)
        if phi.dim() != 2:
            raise ValueError(f"features must have shape (N, d), got {tuple(phi.shape)}")
        phi = phi.detach()
        if self.normalize:
            phi = phi / phi.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(phi.dtype).tiny)
        if self._quality_source is not None:
            q = self._quality_source() if callable(self._quality_source) else self._quality_source
            q = q.detach().to(phi)
            if (
                q.shape != phi.shape[:1]
                or bool((q <= 0).any())
                or not bool(torch.isfinite(q).all())
            ):
                raise ValueError(
                    f"quality must be finite, positive, of shape ({phi.shape[0]},), got "
                    f"{tuple(q.shape)}"
                )
            phi = phi * q.unsqueeze(-1)
        k = self.batch_size * self.world_size
        if phi.shape[-1] < k:
            raise ValueError(
                f"features have d={phi.shape[-1]} columns but a k-DPP of size batch_size * "
                f"world_size = {k} needs rank >= k; use more features (e.g. "
                "random_fourier_features) or a smaller batch"
            )
        self.kdpp = KDPP(k=k, features=phi)
        # cached: the k-DPP inclusion probabilities cost O(N R + k R) per refresh
        self._inclusion_probs = self.kdpp.inclusion_probs / self.world_size
        tiny = torch.finfo(phi.dtype).tiny
        self._weights = 1.0 / (phi.shape[0] * self._inclusion_probs.clamp_min(tiny))
        self._since_refresh = 0

    @property
    def num_items(self) -> int:
        return self.kdpp.num_items

    @property
    def inclusion_probs(self) -> Tensor:
        """This rank's ``P(i in batch)`` (the k-DPP's, divided by ``world_size``); ``(N,)``."""
        return self._inclusion_probs

    @property
    def weights(self) -> Tensor:
        """Horvitz-Thompson weights ``1 / (N pi_i)`` for the current features; ``(N,)``."""
        return self._weights

    # ------------------------------------------------------------------ iteration
    def set_epoch(self, epoch: int) -> None:
        """Epoch number used for the seed when no ``generator`` was given."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def _due(self) -> int:
        """Batches that may still be drawn before the next refresh."""
        if self.refresh_every is None:
            return self.chunk_size
        return self.refresh_every - self._since_refresh

    def _check_ranks_agree(self, generator: torch.Generator) -> None:
        if not (self.world_size > 1 and collectives.world_size() == self.world_size):
            return
        fingerprint = zlib.crc32(generator.get_state().cpu().numpy().tobytes())
        if len(set(collectives.gather_objects(fingerprint))) > 1:
            raise ValueError(
                "DPPBatchSampler: the ranks' generators differ (different seed, epoch or "
                "generator state), so their batches would overlap; give every rank the same "
                "seed and call set_epoch(epoch) on every rank"
            )

    def __iter__(self) -> Iterator[list[int]]:
        device = self.kdpp._param.device
        generator = self.generator
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(self.seed + self.epoch)
        self._check_ranks_agree(generator)
        k = self.batch_size
        remaining = self.num_batches
        while remaining > 0:
            if self.refresh_every is not None and self._since_refresh >= self.refresh_every:
                self.refresh()
            chunk = min(self.chunk_size, remaining, self._due())
            masks = self.kdpp.sample((chunk,), generator=generator)
            # Random order inside each draw, so the per-rank split is a uniform partition.
            keys = rand_open01(masks.shape, generator=generator, device=device)
            keys = torch.where(masks, keys, 2.0)
            order = keys.argsort(dim=-1)[:, self.rank * k : (self.rank + 1) * k]
            yield from order.tolist()
            self._since_refresh += chunk
            remaining -= chunk
