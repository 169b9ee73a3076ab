"""NextBest."""
