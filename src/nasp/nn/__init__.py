"""Search spaces written in plain PyTorch: put :class:`Choice` and :class:`InputChoice` modules
inside any ``nn.Module``, search it with :func:`nasp.search`, and :func:`fix` the architecture
found into an ordinary network (docs/user-spaces.md)."""

from nasp.nn.choice import Choice, ChoiceError, InputChoice
from nasp.nn.fix import SumInputs, check_arch, fix
from nasp.nn.labels import Decision, decisions_of

__all__ = ["Choice", "ChoiceError", "Decision", "InputChoice", "SumInputs", "check_arch",
           "decisions_of", "fix"]
