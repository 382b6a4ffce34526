"""Auto-Switch routing: exemplar features and the k-NN router (T-Switch §3.4, Eq. 8)."""

from .knn import METRICS, KNNRouter, RouteResult, diagnostics

__all__ = ["METRICS", "KNNRouter", "RouteResult", "diagnostics"]
