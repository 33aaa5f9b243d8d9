"""The HTTP API and the reviewers' web UI (issue 5 and later); depends on scanner only."""
