"""The search space of a user's own model with ``nasp.nn`` choices (not in the ``--space``
registry: it is built from the model by :func:`nasp.search`)."""

from nasp.spaces.user_model.genotype import ModuleArch
from nasp.spaces.user_model.space import ModuleSpace, ModuleSupernet

__all__ = ["ModuleArch", "ModuleSpace", "ModuleSupernet"]
