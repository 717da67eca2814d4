"""Which VQA model answers a metric's questions, as one typed value instead of checkpoint roles.

On the command line and in studies a QA metric (DSG, TIFA) or VQAScore takes its answerer as the
checkpoint roles ``vqa=NAME`` (a registered VQA model, ``selma-bench metrics``) and ``model=PATH`` (its
weights elsewhere). :func:`answerer_choice` reads them once, with the defaults in order: the roles given,
then the suite's own answerer (the shapes world's exact evaluator), then the scoring convention's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from selma.errors import SelmaError
from selma.harness.metrics.vqa import VQASpec, vqa_spec

if TYPE_CHECKING:
    from selma.harness.scoring.conventions import QAConvention
    from selma.harness.suites import Suite

ANSWERER_ROLES = ("vqa", "model")
"""The checkpoint roles that choose the answerer (the others are a metric's own, e.g. TIFA's matcher)."""


@dataclass(frozen=True)
class AnswererChoice:
    """A registered VQA model and the weights it loads (``None``: its registered checkpoint)."""

    spec: VQASpec
    model: str | None = None

    @property
    def checkpoint(self) -> str | None:
        """The weights loaded: the override, else the registered checkpoint (none for an exact evaluator)."""
        return self.model or self.spec.checkpoint or None

    @property
    def weights(self) -> dict[str, str]:
        """What ``run`` checks is on disk before it renders: ``{"VQA model (<name>)": checkpoint}``, or nothing
        for an answerer without weights.
        """
        if self.spec.factory is not None or not self.checkpoint:
            return {}
        return {f"VQA model ({self.spec.name})": self.checkpoint}


def answerer_choice(
    roles: Mapping[str, str],
    suite: Suite | None = None,
    convention: QAConvention | None = None,
    default: str | None = None,
) -> AnswererChoice:
    """The answerer that ``roles`` name, else ``suite``'s, else ``convention``'s, else ``default``; an unknown
    or unported name is an error saying what to do.
    """
    name = roles.get("vqa") or (suite.spec.options.get("vqa") if suite is not None else None)
    name = name or (convention.vqa if convention is not None else None) or default
    if not name:
        raise SelmaError("no VQA model chosen (give --vqa NAME or the checkpoint role vqa=NAME)")
    return AnswererChoice(vqa_spec(str(name)), roles.get("model") or None)


def other_roles(roles: Mapping[str, str]) -> dict[str, str]:
    """``roles`` without the answerer's."""
    return {k: v for k, v in roles.items() if k not in ANSWERER_ROLES}
