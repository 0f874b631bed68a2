"""The segmentation models moved from bayestorch.mcmc to bayestorch.segmentation; the old
import paths keep working for one release and warn (DeprecationWarning) on every use."""

from __future__ import annotations

import importlib

import pytest

import bayestorch.mcmc as mcmc
import bayestorch.segmentation as segmentation

OLD_MODULES = {
    "bayestorch.mcmc.generalised_sw": "bayestorch.segmentation.generalised_sw",
    "bayestorch.mcmc.partitions": "bayestorch.segmentation.partitions",
    "bayestorch.mcmc.conjugate": "bayestorch.segmentation.conjugate",
    "bayestorch.mcmc.partition_estimates": "bayestorch.segmentation.partition_estimates",
}


@pytest.mark.parametrize("old", sorted(OLD_MODULES))
def test_old_module_paths_warn_and_forward(old):
    new = importlib.import_module(OLD_MODULES[old])
    stub = importlib.import_module(old)
    for name in new.__all__:
        with pytest.warns(DeprecationWarning, match=f"{old}.{name} moved to"):
            assert getattr(stub, name) is getattr(new, name)
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        stub.missing  # noqa: B018


def test_from_import_of_an_old_path_warns_each_time():
    for _ in range(2):  # not only on the first import: the module is cached after it
        with pytest.warns(DeprecationWarning, match="bayestorch.segmentation"):
            from bayestorch.mcmc.generalised_sw import GeneralisedSwendsenWang
        assert GeneralisedSwendsenWang is segmentation.GeneralisedSwendsenWang


def test_moved_names_of_the_mcmc_package_warn_and_forward():
    for name in segmentation.__all__:
        assert name not in mcmc.__all__
        with pytest.warns(DeprecationWarning, match=f"bayestorch.mcmc.{name} moved"):
            assert getattr(mcmc, name) is getattr(segmentation, name)
    with pytest.raises(AttributeError):
        mcmc.NotAName  # noqa: B018


def test_swendsen_wang_module_keeps_the_generic_kernels_and_forwards_the_model():
    from bayestorch.mcmc import swendsen_wang
    from bayestorch.segmentation import potts

    assert "SwendsenWang" in swendsen_wang.__all__ and "PottsGibbs" in swendsen_wang.__all__
    for name in potts.__all__:
        assert name not in swendsen_wang.__all__
        with pytest.warns(DeprecationWarning, match="bayestorch.segmentation.potts"):
            assert getattr(swendsen_wang, name) is getattr(potts, name)
    with pytest.raises(AttributeError):
        swendsen_wang.NotAName  # noqa: B018
