"""The Gumbel family: Gumbel noise, Gumbel-max, Gumbel-softmax, Gumbel-top-k, the truncated
Gumbel and stochastic beam search.

Talk section "the Gumbel family". Every sampling function takes ``generator=``.

References:
    Jang, Gu & Poole (2017); Maddison, Mnih & Teh (2017); Maddison, Tarlow & Minka (2014);
    Kool, van Hoof & Welling (2019).
"""

from bayestorch.gumbel.beam import (
    StochasticBeamResult,
    stochastic_beam_log_weights,
    stochastic_beam_search,
)
from bayestorch.gumbel.functional import (
    gumbel_max,
    gumbel_noise,
    gumbel_softmax,
    gumbel_top_k,
    log1mexp,
    shift_gumbels_to_max,
    truncated_gumbel,
)
from bayestorch.gumbel.layers import GumbelSoftmax, exponential_anneal

__all__ = [
    "GumbelSoftmax",
    "StochasticBeamResult",
    "exponential_anneal",
    "gumbel_max",
    "gumbel_noise",
    "gumbel_softmax",
    "gumbel_top_k",
    "log1mexp",
    "shift_gumbels_to_max",
    "stochastic_beam_log_weights",
    "stochastic_beam_search",
    "truncated_gumbel",
]
