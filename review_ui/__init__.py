"""The HTTP API and the reviewers' web UI; built on the service package."""
