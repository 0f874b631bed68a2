import pytest
import torch

from bayestorch.utils import NotPSDError, safe_cholesky


def test_plain_pd_matrix_needs_no_jitter(generator):
    a = torch.randn(3, 5, 5, dtype=torch.float64, generator=generator)
    m = a @ a.mT + 5 * torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(safe_cholesky(m), torch.linalg.cholesky(m))


def test_singular_psd_gets_jitter_with_warning():
    v = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    m = v @ v.T  # rank one
    with pytest.warns(RuntimeWarning, match="jitter"):
        factor = safe_cholesky(m, name="K")
    assert torch.allclose(factor @ factor.T, m, atol=1e-5)


def test_only_failing_batch_elements_are_jittered():
    good = torch.eye(2, dtype=torch.float64) * 4
    bad = torch.ones(2, 2, dtype=torch.float64)
    with pytest.warns(RuntimeWarning):
        factor = safe_cholesky(torch.stack([good, bad]))
    torch.testing.assert_close(factor[0], torch.eye(2, dtype=torch.float64) * 2)


def test_indefinite_matrix_raises_naming_it():
    m = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    with pytest.raises(NotPSDError, match="kernel matrix.*smallest eigenvalue"):
        safe_cholesky(m, name="kernel matrix")


def test_nan_and_non_square_raise():
    with pytest.raises(NotPSDError, match="NaN"):
        safe_cholesky(torch.full((2, 2), float("nan")))
    with pytest.raises(ValueError, match="square"):
        safe_cholesky(torch.ones(2, 3))
