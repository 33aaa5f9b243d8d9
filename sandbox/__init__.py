"""Runtime analysis of untrusted bundles in headless Chromium; imports nothing of Gatehouse."""
