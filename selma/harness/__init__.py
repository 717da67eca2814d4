"""The evaluation harness: suites, metrics, VQA answering and scoring conventions (images -> answers -> scores)."""
