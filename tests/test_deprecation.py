"""bayestorch._deprecation.moved_attributes: old import paths forward and warn."""

from __future__ import annotations

import types

import pytest

from bayestorch._deprecation import moved_attributes


def test_a_moved_name_warns_and_forwards():
    getter = moved_attributes("old.place", "bayestorch.segmentation")
    with pytest.warns(
        DeprecationWarning,
        match="old.place.adjusted_rand_index moved to bayestorch.segmentation.adjusted_rand_index",
    ):
        function = getter("adjusted_rand_index")
    import bayestorch.segmentation as new

    assert function is new.adjusted_rand_index


def test_names_that_never_lived_there_raise_attribute_error():
    getter = moved_attributes("old.place", {"kept_elsewhere": "bayestorch.segmentation"})
    with pytest.raises(AttributeError, match="'old.place' has no attribute 'other'"):
        getter("other")
    with pytest.raises(AttributeError, match="has no attribute '__wrapped__'"):
        moved_attributes("old.place", "bayestorch.segmentation")("__wrapped__")
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        moved_attributes("old.place", "bayestorch.segmentation")("not_a_name")


def test_the_old_mcmc_path_still_works():
    import bayestorch.mcmc

    assert isinstance(bayestorch.mcmc, types.ModuleType)
    with pytest.warns(DeprecationWarning, match="bayestorch.mcmc.GeneralisedSwendsenWang"):
        from bayestorch.mcmc import GeneralisedSwendsenWang  # noqa: F401
    with pytest.raises(AttributeError):
        bayestorch.mcmc.no_such_name  # noqa: B018
