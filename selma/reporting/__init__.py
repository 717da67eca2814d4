"""Scores -> tables: paired comparisons, reports, leaderboards and the paper's numbers beside measured ones."""
