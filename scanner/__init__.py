"""Gatehouse's analysis: intake, the manifest contract, stages, policy and reports.

Imports nothing of the service, Flask or Celery (tests/test_layout.py keeps it so).
"""

# The one version string: pyproject.toml reads it (setuptools dynamic version).
__version__ = "0.2.0"
