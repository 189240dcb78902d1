"""Generate clay_core/models/satclip_analytic_basis.npz: SatCLIP's "analytic" spherical-harmonic basis as a
table of numbers that clay_core/models/satclip.py evaluates in float64 without sympy.

Why: the released SatCLIP checkpoints were trained with sympy-generated closed-form expressions whose
constants were printed with 15 significant digits (spec/satclip.md A.2). For L = 40 that rounding moves
high-latitude features by up to ~0.6 from the exact basis, so reproducing official embeddings needs the
same rounded numbers *and* the same order of float64 operations. This script rebuilds each expression with
sympy from the formula in the spec (its quirks included: sqrt((2l+1)/4*pi) for m = 0, i.e. π times the
orthonormal value; sympy's assoc_legendre, which carries (−1)^m, times another (−1)^m; √2 for m ≠ 0),
prints it with evalf() (15 digits), parses the printed Python expression and records its structure:

    feature = factor_1 * factor_2 * ...   (multiplied left to right, as Python evaluates the printed text)
    factor  = constant | (1 - x²)^p | polynomial Σ c_k x^k (summed left to right, in printed order)
              | cos(kφ) | sin(kφ)
    x = cos θ

Run (needs sympy, e.g. Debian's python3-sympy seen through the venv's system site-packages):
    .venv/bin/python scripts/generate_satclip_basis.py [--degrees 40] [--output PATH]
"""

from __future__ import annotations

import argparse
import ast
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "clay_core" / "models" / "satclip_analytic_basis.npz"

# Factor kinds; clay_core/models/satclip.py reads the same codes.
CONSTANT, SINE_POWER, POLYNOMIAL, COS_PHI, SIN_PHI = range(5)


def printed_expression(degree: int, order: int) -> str:
    """The Python text sympy prints for SatCLIP's (degree, order >= 0) harmonic, evalf() at 15 digits."""
    from sympy import Symbol, assoc_legendre, cos, factorial, pi, sqrt

    theta, phi = Symbol("theta"), Symbol("phi")
    if order == 0:
        # (2l+1)/4 is a Python float and pi multiplies it: the missing parentheses the checkpoints were trained with.
        return str((sqrt((2 * degree + 1) / 4 * pi) * assoc_legendre(degree, 0, cos(theta))).evalf())
    if order < 0:
        raise ValueError("m < 0 is derived from m > 0 (see build_table)")
    # assoc_legendre carries the Condon–Shortley (−1)^m; the extra (−1)^m cancels it.
    normalisation = sqrt(((2 * degree + 1) / (4 * pi)) * (factorial(degree - order) / factorial(degree + order)))
    expression = (-1) ** order * sqrt(2) * normalisation * assoc_legendre(degree, order, cos(theta)) * cos(order * phi)
    return str(expression.evalf())


@dataclass
class Feature:
    kinds: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    polynomials: list[list[tuple[float, int]]] = field(default_factory=list)


def _number(node: ast.expr) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        return None if inner is None else -inner
    return None


def _is_call(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _is_cos_theta(node: ast.expr) -> bool:
    return _is_call(node, "cos") and isinstance(node.args[0], ast.Name) and node.args[0].id == "theta"


def _monomial(node: ast.expr) -> tuple[float, int] | None:
    """c*cos(theta)**k, cos(theta)**k, c*cos(theta), cos(theta), or a bare number -> (c, k)."""
    if (number := _number(node)) is not None:
        return number, 0
    if _is_cos_theta(node):
        return 1.0, 1
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and _is_cos_theta(node.left):
        power = _number(node.right)
        if power is not None and power == int(power):
            return 1.0, int(power)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        coefficient, rest = _number(node.left), _monomial(node.right)
        if coefficient is not None and rest is not None and rest[0] == 1.0:
            return coefficient, rest[1]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and (inner := _monomial(node.operand)):
        return -inner[0], inner[1]
    return None


def _polynomial(node: ast.expr) -> list[tuple[float, int]] | None:
    """a ± b ± c ... (left-assoc in the AST) -> signed terms in evaluation order; a - b == a + (-b) exactly."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        head = _polynomial(node.left)
        tail = _monomial(node.right)
        if head is None or tail is None:
            return None
        sign = -1.0 if isinstance(node.op, ast.Sub) else 1.0
        return [*head, (sign * tail[0], tail[1])]
    single = _monomial(node)
    return None if single is None else [single]


def _is_one_minus_x2(node: ast.expr) -> bool:
    terms = _polynomial(node)
    return terms == [(1.0, 0), (-1.0, 2)]


def _factor(node: ast.expr, feature: Feature) -> None:
    if (number := _number(node)) is not None:
        feature.kinds.append(CONSTANT)
        feature.values.append(number)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and _is_one_minus_x2(node.left):
        feature.kinds.append(SINE_POWER)
        feature.values.append(float(_require(_number(node.right), node)))
    elif _is_one_minus_x2(node):  # (1 - x²) printed without an exponent
        feature.kinds.append(SINE_POWER)
        feature.values.append(1.0)
    elif _is_call(node, "cos") or _is_call(node, "sin"):
        argument = node.args[0]
        if isinstance(argument, ast.Name) and argument.id == "phi":
            multiple = 1.0
        elif (
            isinstance(argument, ast.BinOp)
            and isinstance(argument.op, ast.Mult)
            and isinstance(argument.right, ast.Name)
            and argument.right.id == "phi"
        ):
            multiple = float(_require(_number(argument.left), node))
        else:
            multiple = None
        if multiple is not None:
            feature.kinds.append(COS_PHI if node.func.id == "cos" else SIN_PHI)
            feature.values.append(multiple)
            return
        _polynomial_factor(node, feature)
    else:
        _polynomial_factor(node, feature)


def _polynomial_factor(node: ast.expr, feature: Feature) -> None:
    terms = _require(_polynomial(node), node)
    feature.kinds.append(POLYNOMIAL)
    feature.values.append(float(len(feature.polynomials)))
    feature.polynomials.append(terms)


def _require(value, node: ast.expr):
    if value is None:
        raise ValueError(f"unexpected sympy output: {ast.unparse(node)[:200]}")
    return value


def parse_feature(text: str) -> Feature:
    """Split the printed expression into its left-to-right product of factors."""
    node = ast.parse(text, mode="eval").body
    factors: list[ast.expr] = []
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and _monomial(node) is None:
        factors.append(node.right)
        node = node.left
    factors.append(node)
    feature = Feature()
    for factor in reversed(factors):
        _factor(factor, feature)
    return feature


def build_table(degrees: int) -> dict[str, np.ndarray]:
    feature_start, kinds, values = [0], [], []
    poly_start, coefficients, powers = [0], [], []
    for degree in range(degrees):
        parsed = {order: parse_feature(printed_expression(degree, order)) for order in range(degree + 1)}
        for order in range(-degree, degree + 1):
            feature = parsed[abs(order)]
            # m < 0 is the m > 0 text with sin(|m|φ) for cos(|m|φ): the formula is the same up to that factor,
            # and SatCLIP's generated file prints identical constants for ±m. Recent sympy evaluates the
            # m < 0 product in another order and differs in the 15th digit for a few (l, m) (e.g. (12, −11)).
            signed_kinds = [SIN_PHI if order < 0 and kind == COS_PHI else kind for kind in feature.kinds]
            offset = len(poly_start) - 1
            for kind, value in zip(signed_kinds, feature.values, strict=True):
                kinds.append(kind)
                values.append(value + offset if kind == POLYNOMIAL else value)
            for terms in feature.polynomials:
                coefficients.extend(c for c, _ in terms)
                powers.extend(k for _, k in terms)
                poly_start.append(len(coefficients))
            feature_start.append(len(kinds))
    return {
        "degrees": np.array(degrees, dtype=np.int32),
        "feature_start": np.array(feature_start, dtype=np.int32),
        "factor_kind": np.array(kinds, dtype=np.uint8),
        "factor_value": np.array(values, dtype=np.float64),
        "poly_start": np.array(poly_start, dtype=np.int32),
        "poly_coefficient": np.array(coefficients, dtype=np.float64),
        "poly_power": np.array(powers, dtype=np.int16),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--degrees", type=int, default=40, help="L: degrees 0..L-1 (default 40)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    import sympy

    started = time.perf_counter()
    table = build_table(args.degrees)
    table["sympy_version"] = np.array(sympy.__version__)
    tmp = args.output.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **table)
    tmp.replace(args.output)
    print(
        f"{args.degrees**2} features, {len(table['poly_coefficient'])} coefficients, "
        f"{time.perf_counter() - started:.1f} s, {args.output.stat().st_size} bytes -> {args.output}"
    )


if __name__ == "__main__":
    main()
