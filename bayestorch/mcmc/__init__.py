"""Markov chain Monte Carlo: kernels, adaptation, diagnostics and the sampling runner."""

from __future__ import annotations

from bayestorch.mcmc.diagnostics import effective_sample_size, mcse_mean

__all__ = ["effective_sample_size", "mcse_mean"]
