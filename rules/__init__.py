"""Data only: the policy, YARA, ClamAV, JS and secret rules, and the advisory snapshot.

A package so the rules ship inside the wheel and are found with importlib.resources;
nothing here is code, and GATEHOUSE_RULES_DIR points the scanner at another tree.
"""
