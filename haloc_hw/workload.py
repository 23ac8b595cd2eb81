"""Layer shapes: from a torch model to Timeloop problems, and Tucker-2 triples.

A :class:`ConvShape` is one dense (optionally grouped) convolution in Timeloop's problem
dimensions. Everything downstream (cost models, tables, the search) sees only these.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBLEM_DIMS: tuple[str, ...] = ("C", "M", "R", "S", "N", "P", "Q")
GROUPED_PROBLEM_DIMS: tuple[str, ...] = ("G", "C", "M", "R", "S", "N", "P", "Q")


@dataclass(frozen=True, order=True)
class ConvShape:
    """One convolution in Timeloop's terms.

    ``C``/``M`` are input/output channels *per group*; ``G`` is the number of groups
    (depthwise: ``G`` = channels, ``C = M = 1``). ``P``/``Q`` are output width/height,
    ``R``/``S`` kernel width/height. Padding is implicit (Timeloop models the input extent
    ``(P-1)*stride + (R-1)*dilation + 1``).
    """

    C: int
    M: int
    R: int
    S: int
    P: int
    Q: int
    N: int = 1
    G: int = 1
    Wstride: int = 1
    Hstride: int = 1
    Wdilation: int = 1
    Hdilation: int = 1

    @property
    def dims(self) -> dict[str, int]:
        """Problem dimension bounds; ``G`` only when grouped."""
        base = {"C": self.C, "M": self.M, "R": self.R, "S": self.S, "N": self.N, "P": self.P, "Q": self.Q}
        return {"G": self.G, **base} if self.G > 1 else base

    @property
    def macs(self) -> int:
        return self.G * self.C * self.M * self.R * self.S * self.N * self.P * self.Q

    @property
    def weights(self) -> int:
        return self.G * self.C * self.M * self.R * self.S
