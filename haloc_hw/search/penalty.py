"""The hardware factor of the architecture loss, ``CE * eta * f(E / epsilon)``, by name.

``E`` is the expected whole-model cost under p and ``epsilon`` the budget. A penalty maps
the ratio ``E / epsilon`` (a differentiable scalar tensor) and the exponent ``theta`` to the
factor ``f``:

* ``paper`` (HALOC): ``(E / epsilon)^theta``. Its gradient always points towards cheaper
  ranks, so a search that has the budget in hand keeps pushing p below it;
* ``hinge``: ``max(1, E / epsilon)^theta``, the same factor above the budget and 1 within
  it, so the search spends the budget rather than undercutting it.

New penalties are added with :func:`register_penalty`; :class:`~haloc_hw.search.search.SearchConfig`
accepts every registered name. Nothing here imports torch (the functions only call tensor
methods), so the command line can list the names without it.
"""

from __future__ import annotations

from typing import Any, Callable

from haloc_hw.errors import HalocError

#: ``f(ratio, theta) -> factor`` on tensors.
Penalty = Callable[[Any, float], Any]

_REGISTRY: dict[str, Penalty] = {}


def register_penalty(name: str) -> Callable[[Penalty], Penalty]:
    """Decorator: make ``fn`` the penalty called ``name``."""

    def add(fn: Penalty) -> Penalty:
        if name in _REGISTRY:
            raise ValueError(f"penalty '{name}' is registered twice")
        _REGISTRY[name] = fn
        return fn

    return add


@register_penalty("paper")
def paper(ratio: Any, theta: float) -> Any:
    """``(E / epsilon)^theta``, as in the HALOC paper."""
    return ratio ** theta


@register_penalty("hinge")
def hinge(ratio: Any, theta: float) -> Any:
    """``max(1, E / epsilon)^theta``: no push towards cheaper ranks once within the budget."""
    return ratio.clamp(min=1.0) ** theta


def penalty_names() -> tuple[str, ...]:
    """The registered penalties, in registration order."""
    return tuple(_REGISTRY)


def get_penalty(name: str) -> Penalty:
    """The penalty called ``name``; an unknown name raises :class:`HalocError`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise HalocError(f"unknown penalty '{name}'", key="penalty", fix=f"use one of {', '.join(_REGISTRY)}") from None
