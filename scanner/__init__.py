"""Gatehouse scanning core: intake, stages, policy and reports."""

__version__ = "0.1.0"
