"""Tucker-2 (partial Tucker on the two channel modes) of a convolution weight.

A weight ``W[M, C, kh, kw]`` is approximated as ``W ≈ core ×₀ U_out ×₁ U_in`` with
``core[r1, r2, kh, kw]``, ``U_out[M, r1]`` and ``U_in[C, r2]`` having orthonormal columns:
``W[m, c, i, j] ≈ Σ_ab U_out[m, a] · core[a, b, i, j] · U_in[c, b]``. The spatial modes are
left whole, so the result is three convolutions (1×1 C→r2, kh×kw r2→r1, 1×1 r1→M).

Method: HOSVD (leading left singular vectors of the mode-0 and mode-1 unfoldings), then
``n_iter`` rounds of HOOI (higher-order orthogonal iteration: re-fit each factor to the
weight projected on the other factor). HOOI never increases the error of its starting
point, and at full rank (r1 = M, r2 = C) both are exact. Work is done in float64 and the
result is returned in the weight's dtype and device.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict

import torch

from haloc_hw.errors import HalocError
from haloc_hw.workload import check_rank

log = logging.getLogger(__name__)

DEFAULT_HOOI_ITERATIONS = 2

# The HOSVD bases of recently decomposed weights. The search initialises every rank
# candidate of a layer from the same weight; the eigendecompositions (the only costly step)
# are shared instead of recomputed per candidate. Keyed by the weight's bytes.
_BASIS_CACHE: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
_BASIS_CACHE_SIZE = 16
_BASIS_LOCK = threading.Lock()


def _left_singular_vectors(matrix: torch.Tensor) -> torch.Tensor:
    """All left singular vectors of ``matrix`` (rows × cols), as columns by decreasing singular value.

    Uses the eigen-decomposition of the (small) Gram matrix ``A Aᵀ``: the rows are channel
    counts (≤ a few thousand) while the columns can be large, so this is far cheaper than a
    full SVD and exact enough in float64.
    """
    _, vectors = torch.linalg.eigh(matrix @ matrix.T)  # ascending eigenvalues
    return vectors.flip(-1).contiguous()


def _hosvd_bases(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full mode-0 and mode-1 bases of a float64 weight (cached by content)."""
    digest = hashlib.blake2b(w.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).hexdigest()
    key = (tuple(w.shape), str(w.device), digest)
    with _BASIS_LOCK:
        if key in _BASIS_CACHE:
            _BASIS_CACHE.move_to_end(key)
            return _BASIS_CACHE[key]
    out_ch, in_ch = w.shape[0], w.shape[1]
    bases = (
        _left_singular_vectors(w.reshape(out_ch, -1)),
        _left_singular_vectors(w.transpose(0, 1).reshape(in_ch, -1)),
    )
    with _BASIS_LOCK:
        _BASIS_CACHE[key] = bases
        while len(_BASIS_CACHE) > _BASIS_CACHE_SIZE:
            _BASIS_CACHE.popitem(last=False)
    return bases


def check_ranks(weight_shape: tuple[int, ...], r1: int, r2: int) -> tuple[int, int]:
    """Validate ``(r1, r2)`` against ``weight_shape = (M, C, kh, kw)``; :class:`HalocError` if bad."""
    return (check_rank("r1", r1, int(weight_shape[0]), "output channels"),
            check_rank("r2", r2, int(weight_shape[1]), "input channels"))


def tucker2(
    weight: torch.Tensor, r1: int, r2: int, n_iter: int = DEFAULT_HOOI_ITERATIONS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tucker-2 of ``weight[M, C, kh, kw]`` with output rank ``r1`` and input rank ``r2``.

    Returns ``(core[r1, r2, kh, kw], U_out[M, r1], U_in[C, r2])``. ``n_iter`` HOOI rounds
    follow the HOSVD start (0 = plain HOSVD, which is what a fast initialisation of many
    candidates wants).
    """
    if weight.dim() != 4:
        raise HalocError(f"expected a conv weight [M, C, kh, kw], got shape {tuple(weight.shape)}", key="weight")
    r1, r2 = check_ranks(tuple(weight.shape), r1, r2)
    if n_iter < 0:
        raise HalocError(f"n_iter must be >= 0, got {n_iter}", key="n_iter")
    dtype, device = weight.dtype, weight.device
    w = weight.detach().to(torch.float64)
    out_ch, in_ch, kh, kw = w.shape
    basis_out, basis_in = _hosvd_bases(w)  # mode-0 (M × C·kh·kw) and mode-1 (C × M·kh·kw) unfoldings
    u_out, u_in = basis_out[:, :r1].clone(), basis_in[:, :r2].clone()  # never hand out cache views
    full = r1 == out_ch and r2 == in_ch
    for _ in range(0 if full else n_iter):
        # fit U_out to W projected on U_in, then U_in to W projected on U_out
        w_in = torch.einsum("mcij,cb->mbij", w, u_in)
        u_out = _left_singular_vectors(w_in.reshape(out_ch, -1))[:, :r1].contiguous()
        w_out = torch.einsum("mcij,ma->acij", w, u_out)
        u_in = _left_singular_vectors(w_out.transpose(0, 1).reshape(in_ch, -1))[:, :r2].contiguous()
    core = torch.einsum("mcij,ma,cb->abij", w, u_out, u_in)
    return core.to(dtype=dtype, device=device), u_out.to(dtype=dtype, device=device), u_in.to(dtype=dtype, device=device)


def tucker2_reconstruct(core: torch.Tensor, u_out: torch.Tensor, u_in: torch.Tensor) -> torch.Tensor:
    """The weight ``core ×₀ U_out ×₁ U_in`` (shape ``[M, C, kh, kw]``)."""
    return torch.einsum("abij,ma,cb->mcij", core, u_out, u_in)


def relative_error(weight: torch.Tensor, r1: int, r2: int, n_iter: int = DEFAULT_HOOI_ITERATIONS) -> float:
    """``‖W − Ŵ‖ / ‖W‖`` of the rank-(r1, r2) Tucker-2 approximation (a rank-allocation signal)."""
    w = weight.detach().to(torch.float64)
    approx = tucker2_reconstruct(*tucker2(w, r1, r2, n_iter))
    norm = torch.linalg.vector_norm(w)
    return float(torch.linalg.vector_norm(w - approx) / norm) if norm > 0 else 0.0
