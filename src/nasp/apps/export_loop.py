"""The scripted time loop of a TorchScript language model (:mod:`nasp.apps.export_text`): a
traced one-step model run over every step of a window, so the exported model takes windows of
any length. Kept apart, without postponed annotations, because TorchScript compiles its source."""

import torch
from torch import nn

__all__ = ["script_windows"]


class _Windows(nn.Module):
    """``(tokens (T, B), hidden) -> (log_probs (T * B, vocab), new_hidden)`` from a one-step
    ``step(tokens (1, B), hidden)``."""

    def __init__(self, step: nn.Module):
        super().__init__()
        self.step = step

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        outputs: list[torch.Tensor] = []
        for t in range(tokens.size(0)):
            log_probs, hidden = self.step(tokens[t:t + 1], hidden)
            outputs.append(log_probs)
        return torch.cat(outputs), hidden


def script_windows(step: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """The scripted loop around the traced one-step model ``step``."""
    return torch.jit.script(_Windows(step))
