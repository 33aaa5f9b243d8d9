"""Finding what a bundle depends on: npm, Python, and libraries vendored into its code."""
