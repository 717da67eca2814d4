"""Studies: a YAML names a base model, the SELMA variants to build, suites and metrics.

``selma-bench study FILE`` builds whatever is missing — skill prompts, base-model images, one LoRA
per skill, the multi-skill LoRA, ground-truth and weak-to-strong LoRAs, merges — then runs every
variant on every suite (``run``: generation and scores cached by hash) and writes one comparison
table. Every cell is an idempotent unit keyed by the hash of its inputs, so an interrupted study
restarts where it stopped and a finished one is a cache hit.

The package is split along its jobs: :mod:`~.config` (the YAML, validated), :mod:`~.layout` (where
outputs go, which units the variants need), :mod:`~.units` (each unit's work), :mod:`~.launch` (here
or on a cluster), :mod:`~.selection` (checkpoint selection) and :mod:`~.run` (the stages in order);
its tables are :mod:`selma.reporting.study_tables`.
"""

from selma.orchestration.study.config import (
    DataFilter,
    DatagenSection,
    DataRecipe,
    GtSource,
    MergeSection,
    SelectionSection,
    StudyConfig,
    load_study,
)
from selma.orchestration.study.launch import execute
from selma.orchestration.study.layout import StudyUnits, filtered_dir, image_dir, study_units, training_data
from selma.orchestration.study.run import run_study
from selma.orchestration.study.units import cell_request, evaluate_cell, plan_study

__all__ = [
    "DataFilter",
    "DataRecipe",
    "DatagenSection",
    "GtSource",
    "MergeSection",
    "SelectionSection",
    "StudyConfig",
    "StudyUnits",
    "cell_request",
    "evaluate_cell",
    "execute",
    "filtered_dir",
    "image_dir",
    "load_study",
    "plan_study",
    "run_study",
    "study_units",
    "training_data",
]
