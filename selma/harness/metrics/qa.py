"""The question-answer metrics: a suite's questions answered by a VQA model, scored by a named convention."""

from __future__ import annotations

from selma.harness.metrics.base import MetricInfo, register_qa_metric

DSG = register_qa_metric(
    MetricInfo(
        name="dsg",
        display_name="DSG",
        convention="DSG's questions answered by a VQA model; see the dsg conventions (default: DSG's own)",
        checkpoints={"vqa": "instructblip-vicuna-7b"},
        reference="j-min/DSG @ 7330119",
        kind="qa",
    )
)
TIFA = register_qa_metric(
    MetricInfo(
        name="tifa",
        display_name="TIFA",
        convention="TIFA's multiple-choice questions answered by a VQA model; see the tifa conventions "
        "(default: TIFA's own)",
        checkpoints={"vqa": "blip2-flant5-xl", "matcher": "sentence-transformers/all-mpnet-base-v2"},
        reference="Yushi-Hu/tifa @ 8e37050",
        kind="qa",
        show_choices=True,
    )
)
