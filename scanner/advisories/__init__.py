"""The offline advisory database: import, storage, version semantics and lookup."""
