"""Optional dependencies: import them on demand, or say in one paragraph how to install them.

Features such as ONNX export, plots and TensorBoard logging live in optional extras of the
``torch-nasp`` package (``pip install "torch-nasp[export]"`` and so on), declared in
``pyproject.toml``; the core never needs them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from nasp.errors import MissingExtraError

__all__ = ["MissingExtraError", "require"]


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the ``extra`` that has it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{feature} needs the Python package {module.split('.')[0]}, which is not installed "
            f"({err}); install it with: pip install \"torch-nasp[{extra}]\"") from None
