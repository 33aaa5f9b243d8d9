"""Runtime analysis of untrusted bundles in headless Chromium (issue 4); a leaf package."""
