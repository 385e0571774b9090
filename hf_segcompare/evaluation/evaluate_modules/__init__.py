"""`evaluate` modules shipped with hf_segcompare (load them by file path)."""
