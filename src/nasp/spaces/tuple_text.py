"""DARTS tuple text, the way the DARTS repository writes genotypes: ``[NAME =] Genotype(field=
literal, ...)``, read with :mod:`ast` and never evaluated; and the short value formats the
genotype error messages of the DARTS-style spaces share.

The CNN cell (``Genotype(normal=[...], normal_concat=[...], reduce=..., reduce_concat=...)``) and
the recurrent cell (``Genotype(recurrent=[...], concat=range(1, 9))``) are both written so; each
space's genotype type names its fields and checks the values.
"""

from __future__ import annotations

import ast
import contextlib
import numbers
import reprlib
from collections.abc import Sequence
from typing import Any

from nasp.errors import GenotypeError

__all__ = ["is_int", "one_line", "read_genotype_call", "short", "show"]


def short(value: object) -> str:
    """Short ``repr`` of ``value`` for error messages (never fails, never spans lines)."""
    try:
        return reprlib.repr(value)
    except ValueError:  # an int too long to convert to decimal
        return "<huge>"


def show(value: object) -> str:
    """Short ``repr`` of ``value`` with its type, for error messages."""
    return f"{short(value)} ({type(value).__name__})"


def one_line(err: BaseException) -> str:
    """``str(err)`` on one line (a parser's message may span several)."""
    return " ".join(str(err).split())


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (Python or NumPy) and not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def read_genotype_call(text: object, fields: Sequence[str], example: str) -> dict[str, Any]:
    """The literal keyword arguments of the text ``[NAME =] Genotype(field=..., ...)``, exactly
    ``fields``; ``example`` shows the format in error messages.

    Lists or tuples, constants, negated ints and ``range(a, b)`` are read; anything else, and
    every syntax problem, is a :class:`GenotypeError`; nothing else is raised.
    """
    if not isinstance(text, str):
        raise GenotypeError(f"genotype text must be a str, got {show(text)}")
    try:
        module = ast.parse(text.strip(), mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise GenotypeError(f"cannot parse genotype text: {one_line(err)}") from None
    try:
        return _call_arguments(_genotype_call(module, example), fields)
    except RecursionError:
        raise GenotypeError("genotype text is nested too deeply") from None


def _genotype_call(module: ast.Module, example: str) -> ast.Call:
    """The ``Genotype(...)`` call of a module holding just ``[NAME =] Genotype(...)``."""
    if len(module.body) != 1:
        raise GenotypeError(
            f"genotype text must hold a single Genotype(...) expression, "
            f"found {len(module.body)} statements")
    statement = module.body[0]
    named = (isinstance(statement, ast.Assign) and len(statement.targets) == 1
             and isinstance(statement.targets[0], ast.Name))
    if not (named or isinstance(statement, ast.Expr)):
        raise GenotypeError(f"genotype text must look like {example}")
    call = statement.value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == "Genotype"):
        raise GenotypeError(f"genotype text must be a call like {example}")
    return call


def _call_arguments(call: ast.Call, fields: Sequence[str]) -> dict[str, Any]:
    """The literal keyword arguments of a ``Genotype(...)`` call, checked by name."""
    if call.args:
        raise GenotypeError(
            f"Genotype(...) takes keyword arguments only ({', '.join(fields)})")
    arguments: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg not in fields:
            name = "**" if keyword.arg is None else keyword.arg
            raise GenotypeError(
                f"Genotype(...) got unexpected argument {name}; expected {', '.join(fields)}")
        if keyword.arg in arguments:
            raise GenotypeError(f"Genotype(...) got argument {keyword.arg} twice")
        arguments[keyword.arg] = _literal(keyword.value)
    missing = [field for field in fields if field not in arguments]
    if missing:
        raise GenotypeError(f"Genotype(...) is missing argument(s) {', '.join(missing)}")
    return arguments


def _literal(node: ast.expr) -> Any:
    """Value of a constant, a negated number, a list or tuple of literals, or ``range(...)``."""
    if isinstance(node, ast.Constant):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant) and is_int(node.operand.value)):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(element) for element in node.elts]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "range" and not node.keywords and 1 <= len(node.args) <= 3):
        bounds = [_literal(argument) for argument in node.args]
        if all(is_int(bound) for bound in bounds):
            with contextlib.suppress(ValueError):  # range(a, b, 0)
                return range(*bounds)
    raise GenotypeError(
        f"genotype text, line {node.lineno} column {node.col_offset + 1}: "
        f"{reprlib.repr(ast.unparse(node))} is not allowed; only literal lists or tuples of "
        "(op name, input index) pairs and range(a, b) with int literals are")
