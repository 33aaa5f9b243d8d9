"""JavaScript analysis on a tree-sitter syntax tree, with rules kept as data."""
