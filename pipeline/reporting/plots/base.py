"""What the figures share: the trial states they tell apart, the colours and the zoom margin."""

from __future__ import annotations

FINISHED, PRUNED = "FINISHED", "PRUNED"
BEST_COLOR = "tab:red"
PAD = 0.08
"""Room left above and below a zoomed range, as a share of its span."""
SEQUENTIAL = "viridis"
"""The colour map of trial numbers (slices) and of row counts (hexbin densities): every end of viridis stands
out on white, where Blues starts white and hides the early trials and the lone rows."""
