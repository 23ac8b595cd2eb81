"""The files users keep: ``model.pt`` (rebuildable weights) and ``model.onnx``.

``model.pt`` holds the ``state_dict`` together with everything needed to rebuild the module
without any search code: the model name and constructor arguments for
:func:`haloc_hw.models.build_model`, and the Tucker-2 ranks for
:func:`haloc_hw.decompose.decompose_model`. :func:`load_compressed` does exactly that and
then loads the weights, so a compressed model is usable by anyone with haloc-hw installed.
The file is loaded with ``torch.load(weights_only=True)``: it contains only tensors, numbers,
strings, lists and dicts.

``model.onnx`` is written with PyTorch's TorchScript-based exporter (``dynamo=False``): the
``torch.export``-based exporter needs ``onnxscript``, which haloc-hw does not depend on.
An ONNX failure is logged as a warning and never loses ``model.pt``.
"""

from __future__ import annotations

import copy
import logging
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from haloc_hw.errors import HalocError
from haloc_hw.fileio import atomic_path

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
ONNX_FILE = "model.onnx"
MODEL_FORMAT = "haloc-hw-model"
MODEL_FORMAT_VERSION = 1
ONNX_OPSET = 17

BuildFn = Callable[[str, int, int], nn.Module]


def _model_path(run: str | Path) -> Path:
    run = Path(run)
    return run / MODEL_FILE if run.is_dir() or run.suffix != ".pt" else run


def save_run_model(
    run_dir: str | Path,
    model: nn.Module,
    *,
    model_name: str,
    num_classes: int,
    in_channels: int,
    input_size: Sequence[int],
    ranks: Mapping[str, Sequence[int]],
    extra: Mapping[str, Any] | None = None,
    onnx: bool = True,
) -> dict[str, Path | None]:
    """Write ``run_dir/model.pt`` and (best effort) ``run_dir/model.onnx``.

    ``input_size`` is the per-sample ``(C, H, W)`` (a leading batch dim is dropped); ``ranks``
    maps conv names to ``(r1, r2)`` (``{}`` for an uncompressed model); ``extra`` is stored as
    is (plain JSON-like values only, e.g. top-1 or the cost budget). Returns the written paths
    (``"onnx"`` is ``None`` when ONNX export failed or was skipped; a ``model.onnx`` from an
    earlier save is then removed, as it no longer matches ``model.pt``).
    """
    run_dir = Path(run_dir)
    size = [int(v) for v in input_size]
    if len(size) == 4:
        size = size[1:]
    if len(size) != 3:
        raise HalocError(f"input_size must be (C, H, W), got {tuple(input_size)}", key="input_size")
    clean_ranks: dict[str, list[int]] = {}
    for name, pair in ranks.items():
        if len(pair) != 2:
            raise HalocError(f"ranks for '{name}' must be a pair (r1, r2), got {pair!r}", key="ranks")
        clean_ranks[str(name)] = [int(pair[0]), int(pair[1])]
    from haloc_hw import __version__

    payload = {
        "format": MODEL_FORMAT,
        "version": MODEL_FORMAT_VERSION,
        "haloc_hw_version": __version__,
        "model_name": str(model_name),
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "input_size": size,
        "ranks": clean_ranks,
        "extra": dict(extra or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    pt_path = run_dir / MODEL_FILE
    with atomic_path(pt_path) as tmp:
        torch.save(payload, tmp)
    onnx_path = export_onnx(model, run_dir / ONNX_FILE, size) if onnx else None
    stale = run_dir / ONNX_FILE
    if onnx_path is None and stale.exists():  # left by an earlier save: it would not match model.pt
        stale.unlink()
        log.warning("removed %s: it was exported from an earlier model than %s", stale, pt_path)
    return {"model": pt_path, "onnx": onnx_path}


def export_onnx(model: nn.Module, path: str | Path, input_size: Sequence[int],
                opset: int = ONNX_OPSET) -> Path | None:
    """Export a float32 CPU copy of ``model`` to ONNX with a dynamic batch dimension.

    Returns the path, or ``None`` after logging a warning when the export fails (the
    caller's other outputs stay valid).
    """
    path = Path(path)
    try:
        cpu_model = copy.deepcopy(model).to("cpu", torch.float32).eval()
        dummy = torch.zeros((1, *[int(v) for v in input_size][-3:]))
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                cpu_model, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
            import onnx as onnx_lib

            onnx_lib.checker.check_model(str(tmp))
    except Exception as err:  # noqa: BLE001 - ONNX is a convenience output; any failure is only a warning
        log.warning("ONNX export to %s failed (%s: %s); model.pt is complete and load_compressed() works",
                    path, err.__class__.__name__, str(err).splitlines()[0] if str(err) else "")
        return None
    return path


def read_model_file(run: str | Path) -> dict[str, Any]:
    """Load and validate ``model.pt`` (a run directory or the file itself); returns its dict."""
    path = _model_path(run)
    if not path.is_file():
        raise HalocError("no exported model here", file=path,
                         fix="pass a run directory written by `haloc-hw train` / `haloc-hw search`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise HalocError(f"cannot read model file ({err.__class__.__name__}: {str(err)[:200]})", file=path,
                         fix="the file is truncated or not a torch file; export the model again") from None
    if isinstance(payload, dict) and payload.get("format") == "haloc-hw-checkpoint":
        raise HalocError("this is a training checkpoint, not an exported model", file=path,
                         fix=f"load {MODEL_FILE} from the same run directory instead")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise HalocError("not a haloc-hw model file (no 'format: haloc-hw-model')", file=path,
                         fix="write it with haloc_hw.export.save_run_model")
    if int(payload.get("version", 0)) > MODEL_FORMAT_VERSION:
        raise HalocError(f"model file version {payload['version']} is newer than this haloc-hw understands "
                         f"({MODEL_FORMAT_VERSION})", file=path, key="version", fix="upgrade haloc-hw")
    for key in ("model_name", "num_classes", "in_channels", "input_size", "ranks", "state_dict"):
        if key not in payload:
            raise HalocError("model file lacks a required entry", file=path, key=key,
                             fix="export the model again with save_run_model")
    payload["path"] = str(path)
    return payload


def _default_build(name: str, num_classes: int, in_channels: int) -> nn.Module:
    from haloc_hw.models import build_model

    return build_model(name, num_classes=num_classes, in_channels=in_channels)


def load_compressed(
    run: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    build_fn: BuildFn | None = None,
) -> nn.Module:
    """Rebuild the (compressed) model saved in ``run`` (a run directory or its ``model.pt``).

    The module is built by ``haloc_hw.models.build_model`` (or ``build_fn(name, num_classes,
    in_channels)`` for a model outside haloc-hw), decomposed with the saved ranks, loaded with
    the saved weights and returned in eval mode. Metadata is available as
    ``model.haloc_info`` (name, ranks, input size, extra). Weights that do not fit the named
    model raise :class:`HalocError`.
    """
    payload = read_model_file(run)
    path = Path(payload["path"])
    name = payload["model_name"]
    ranks = {k: (int(v[0]), int(v[1])) for k, v in payload["ranks"].items()}
    build = build_fn or _default_build
    try:
        model = build(name, int(payload["num_classes"]), int(payload["in_channels"]))
        if ranks:
            from haloc_hw.decompose import decompose_model

            # The saved weights replace the factors, so skip the HOOI refinement.
            model = decompose_model(model, ranks, n_iter=0)
    except HalocError as err:
        raise HalocError(f"cannot rebuild model '{name}': {err.message}", file=path, key=err.key,
                         fix=err.fix) from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:3]) if len(lines) > 1 else lines[0] if lines else ""
        raise HalocError(f"the saved weights do not fit model '{name}' with {len(ranks)} decomposed layers "
                         f"({detail[:300]})", file=path, key="state_dict",
                         fix="the file was written for another model or edited; export it again") from None
    model.to(map_location).eval()
    model.haloc_info = {k: payload[k] for k in ("model_name", "num_classes", "in_channels", "input_size", "extra")}
    model.haloc_info["ranks"] = ranks
    return model
