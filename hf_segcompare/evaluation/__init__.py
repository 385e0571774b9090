"""Scoring: the evaluation protocols (`protocol`), the streaming mean IoU with evaluate's semantics
(`metrics`, `evaluate_modules`), inference on images (`inference`) and its cost (`cost`)."""
