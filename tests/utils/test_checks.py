from __future__ import annotations

import pytest
import torch

from bayestorch.utils import check_finite, check_last_dim


def test_check_last_dim():
    check_last_dim("x", torch.zeros(2, 3), 3)
    with pytest.raises(
        ValueError, match=r"x must have shape \(\.\.\., 4\) with at least 2 dim\(s\), got \(3,\)"
    ):
        check_last_dim("x", torch.zeros(3), 4, min_ndim=2)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        check_last_dim("x", [1.0], 1)


def test_check_finite(device):
    check_finite("log_prob", torch.zeros(3, device=device))
    bad = torch.tensor([0.0, float("nan"), float("inf")], device=device)
    with pytest.raises(
        ValueError, match=r"log_prob has 2 non-finite value\(s\) \(NaN or inf\) of 3"
    ):
        check_finite("log_prob", bad)
