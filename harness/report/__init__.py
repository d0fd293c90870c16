"""Figures and reports built from the run records (never from the sweep)."""
