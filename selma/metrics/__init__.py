"""Model-based scorers with the official conventions, on transformers."""
