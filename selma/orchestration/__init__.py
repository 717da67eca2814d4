"""Whole jobs: one variant on one suite (pipeline), studies of many variants and their launchers, the demo."""
