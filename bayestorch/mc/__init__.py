"""Monte Carlo: rejection, adaptive rejection, importance sampling and resampling schemes.

Talk section "Monte Carlo". Exact i.i.d. samplers (:func:`rejection_sample`,
:class:`AdaptiveRejectionSampler`), weighted draws (:func:`importance_sample`), and the
resampling schemes shared by SMC and the particle filter.
"""

from __future__ import annotations

from bayestorch.mc.adaptive_rejection import AdaptiveRejectionSampler, NotLogConcaveError
from bayestorch.mc.importance import (
    ImportanceResult,
    as_proposal,
    importance_ess,
    importance_sample,
    log_normalizer_estimate,
)
from bayestorch.mc.rejection import EnvelopeViolationWarning, RejectionResult, rejection_sample
from bayestorch.mc.resampling import (
    RESAMPLING_SCHEMES,
    multinomial,
    resample,
    residual,
    stratified,
    systematic,
)

__all__ = [
    "RESAMPLING_SCHEMES",
    "AdaptiveRejectionSampler",
    "EnvelopeViolationWarning",
    "ImportanceResult",
    "NotLogConcaveError",
    "RejectionResult",
    "as_proposal",
    "importance_ess",
    "importance_sample",
    "log_normalizer_estimate",
    "multinomial",
    "rejection_sample",
    "resample",
    "residual",
    "stratified",
    "systematic",
]
