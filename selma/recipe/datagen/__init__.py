"""Stage 1: skill-specific prompts written by an LLM from in-context examples (SELMA §3.1)."""
