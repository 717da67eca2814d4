"""Typed result files: a summary JSON with provenance beside per-sample JSONL records."""
