"""The reviewers' desk as a workflow: accounts, the queue, claims, decisions, the risk
delta, finding marks, allowlists, trust levels and auto-approval (no Flask here)."""
