"""Small shared helpers: explicit randomness, input checks, safe linear algebra."""

from bayestorch.utils.autograd import CompiledLogProb, LogProbFn, log_prob_and_grad
from bayestorch.utils.checks import check_finite, check_last_dim
from bayestorch.utils.linalg import NotPSDError, safe_cholesky, symmetrize
from bayestorch.utils.random import draw, make_generator, rand_open01

__all__ = [
    "CompiledLogProb",
    "LogProbFn",
    "log_prob_and_grad",
    "NotPSDError",
    "check_finite",
    "check_last_dim",
    "draw",
    "make_generator",
    "rand_open01",
    "safe_cholesky",
    "symmetrize",
]
