"""The shapes world as a plugin (:mod:`selma.plugins`): its models, suites, suite format, exact answerer,
``shapes-dsg`` metric, ``world`` prompt writer and skills, registered into the harness's and the
recipe's registries, which never import the world themselves. Everything heavy is a lazy entry.
"""

from __future__ import annotations

from pathlib import Path

from selma.harness.metrics.vqa import VQASpec, vqa_models
from selma.harness.suites import suite_files
from selma.harness.suites.loaders import loaders
from selma.harness.suites.spec import GENERATED_FORMATS
from selma.models import model_files
from selma.recipe.datagen.backends import backends
from selma.recipe.datagen.skills import Skill, load_skills, skill_files

HERE = Path(__file__).parent
SUITES = HERE / "suites.yaml"
SKILLS = HERE / "skills.yaml"
MODELS = HERE / "models.yaml"

model_files.add("shapes-world", MODELS)
suite_files.add("shapes-world", SUITES)
skill_files.add("shapes-world", SKILLS)
GENERATED_FORMATS.add("shapes_world")
loaders.add_lazy("shapes_world", "selma.world.suite:load_shapes_world")
backends.add_lazy("world", "selma.world.prompt_writer:WorldWriter")
vqa_models.add(
    "shapes-exact",
    VQASpec(
        "shapes-exact",
        "custom",
        "",
        notes="the shapes world's exact evaluator",
        factory="selma.world.evaluator:ShapesAnswerer",
    ),
)
import selma.world.metric  # noqa: E402, F401  (registers shapes-dsg)


def world_skills() -> dict[str, Skill]:
    """The shapes world's skills, by name."""
    return load_skills(SKILLS)
