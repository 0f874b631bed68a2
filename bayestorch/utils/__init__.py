"""Small shared helpers: explicit randomness and input checks."""

from bayestorch.utils.checks import check_finite, check_last_dim
from bayestorch.utils.random import draw, make_generator, rand_open01

__all__ = ["check_finite", "check_last_dim", "draw", "make_generator", "rand_open01"]
