"""Evaluating and using a trained run: scoring modes, candidate layouts, fusion with the
encoder, comparisons, the HTML report and recommendations."""
