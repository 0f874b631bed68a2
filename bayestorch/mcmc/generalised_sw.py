"""Deprecated path: moved to :mod:`bayestorch.segmentation.generalised_sw` (removed in 0.3)."""

from bayestorch._deprecation import moved_attributes

__getattr__ = moved_attributes(__name__, "bayestorch.segmentation.generalised_sw")
