"""Training, fine-tuning and evaluation of (compressed) CNNs.

The defaults of :class:`TrainConfig` are the recipe of the HALOC paper for CIFAR-style
training: SGD with Nesterov momentum 0.9, learning rate 0.1, weight decay 1e-4, batch 256,
learning rate times 0.2 every 55 epochs. :meth:`TrainConfig.for_fine_tune` gives the
fine-tuning recipe used after rank selection (lr 0.01, cosine decay).

:func:`train` runs the loop with bf16 autocast on CUDA, records per-epoch history, and,
given an ``out_dir``, writes ``history.json`` and an atomic ``checkpoint.pt`` after every
epoch (model, optimizer, scheduler, epoch, RNG states). ``resume=True`` continues from that
checkpoint; because batch order and augmentation are seeded by ``(seed, epoch)`` (see
:mod:`haloc_hw.data`) and the RNG states are restored, a resumed CPU run ends with exactly
the weights of an uninterrupted one. A NaN/inf loss stops training, puts the last good
weights back into the model, keeps the last good checkpoint, and raises :class:`HalocError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import pickle
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from haloc_hw.data import DataBundle, resolve_device
from haloc_hw.errors import HalocError
from haloc_hw.fileio import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

SCHEDULES: tuple[str, ...] = ("step", "cosine", "constant")
COMPILE_MODES: tuple[str | None, ...] = (None, "default", "reduce-overhead", "max-autotune")
CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"
_CHECKPOINT_FORMAT = "haloc-hw-checkpoint"
# Config fields that may differ between an interrupted run and its resumption.
_RESUME_FREE = {"epochs", "device"}


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run; the defaults are the paper's recipe."""

    epochs: int = 200
    batch_size: int = 256  # used by callers (CLI) to build the data; the loop takes batches as given
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    schedule: str = "step"  # "step" | "cosine" | "constant"
    step_size: int = 55  # step schedule: multiply lr by gamma every step_size epochs
    gamma: float = 0.2
    label_smoothing: float = 0.0
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    grad_clip: float | None = None  # max global grad norm, None = off
    seed: int = 0
    device: str | None = None  # None: the data bundle's device
    eval_every: int = 1  # evaluate on the test split every N epochs (and always after the last)
    nan_check_every: int = 50  # steps between (syncing) finiteness checks of the running loss
    compile: str | None = None  # CUDA only: torch.compile mode for the training forward ("default",
    # "reduce-overhead" = CUDA graphs, "max-autotune"); small CIFAR-style nets are launch-bound
    # knowledge distillation from a teacher (the uncompressed base when fine-tuning): loss =
    # (1 - alpha) CE + alpha T^2 KL(softmax(teacher / T) || softmax(student / T)) (Hinton et al.
    # 2015); None = off. The same for HALOC and every baseline, as finish_run passes it.
    distill_temperature: float | None = None
    distill_alpha: float = 0.5

    @classmethod
    def for_fine_tune(cls, **overrides: Any) -> "TrainConfig":
        """Fine-tuning recipe after rank selection: lower lr (0.01), cosine decay, 50 epochs."""
        base: dict[str, Any] = dict(lr=0.01, schedule="cosine", epochs=50)
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise HalocError(f"unknown schedule '{self.schedule}'", key="schedule",
                             fix=f"use one of {', '.join(SCHEDULES)}")
        checks = [
            (self.epochs >= 0, "epochs", "use epochs >= 0"),
            (self.batch_size >= 1, "batch_size", "use a positive batch size"),
            (self.lr > 0 and math.isfinite(self.lr), "lr", "use a positive learning rate"),
            (0 <= self.momentum < 1, "momentum", "use 0 <= momentum < 1"),
            (self.weight_decay >= 0, "weight_decay", "use weight_decay >= 0"),
            (self.step_size >= 1, "step_size", "use step_size >= 1"),
            (0 < self.gamma <= 1, "gamma", "use 0 < gamma <= 1"),
            (self.eval_every >= 1, "eval_every", "use eval_every >= 1"),
            (self.nan_check_every >= 1, "nan_check_every", "use nan_check_every >= 1"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip", "use a positive max norm, or None for off"),
            (not (self.nesterov and self.momentum == 0), "nesterov", "Nesterov needs momentum > 0"),
            (self.compile in COMPILE_MODES, "compile", f"use one of {COMPILE_MODES}"),
            (self.distill_temperature is None or (self.distill_temperature > 0 and math.isfinite(self.distill_temperature)),
             "distill_temperature", "use a positive temperature, e.g. --distill 4,0.9"),
            (0 <= self.distill_alpha <= 1, "distill_alpha", "use 0 <= alpha <= 1, e.g. --distill 4,0.9"),
        ]
        for ok, key, fix in checks:
            if not ok:
                raise HalocError(f"invalid value {getattr(self, key)!r}", key=key, fix=fix)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_distill(text: str | None) -> tuple[float, float] | None:
    """``"T,alpha"`` (``--distill 4,0.9``) -> ``(4.0, 0.9)``; ``None`` -> ``None``."""
    if text is None:
        return None
    parts = str(text).split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        temperature, alpha = float(parts[0]), float(parts[1])
    except ValueError:
        raise HalocError(f"cannot read --distill '{text}'", key="--distill",
                         fix="write the temperature and the distillation weight as T,alpha, e.g. 4,0.9") from None
    TrainConfig(distill_temperature=temperature, distill_alpha=alpha).validate()
    return temperature, alpha


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float, alpha: float,
                 criterion: nn.Module) -> torch.Tensor:
    """``(1 - alpha) CE(student, y) + alpha T^2 KL(softmax(teacher / T) || softmax(student / T))``."""
    t = float(temperature)
    soft = torch.nn.functional.kl_div(torch.log_softmax(student / t, dim=1), torch.log_softmax(teacher / t, dim=1),
                                      reduction="batchmean", log_target=True)
    return (1 - alpha) * criterion(student, y) + alpha * t * t * soft


@dataclass
class TrainResult:
    """What :func:`train` returns; ``history`` is what ``history.json`` holds."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    final_top1: float | None = None  # test top-1 (percent) after the last epoch
    best_top1: float | None = None
    best_epoch: int | None = None
    epochs_run: int = 0  # epochs trained by this call (fewer than cfg.epochs after a resume)
    start_epoch: int = 0  # epochs already done when this call started
    seconds: float = 0.0
    out_dir: Path | None = None


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _model_device(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: step (x gamma every step_size epochs), cosine to 0 over cfg.epochs, or constant."""
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: str | torch.device | None = None,
    *,
    amp: bool = True,
) -> dict[str, float]:
    """Top-1 accuracy in **percent** and mean cross-entropy of ``model`` over ``loader``.

    Returns ``{"top1": float, "loss": float, "samples": int}``. The model is put in eval mode
    for the pass and its previous mode is restored.
    """
    dev = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.int64)
    n = 0
    try:
        for x, y in loader:
            x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            with _autocast(dev, amp):
                out = model(x)
            out = out.float()
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            n += int(y.shape[0])
    finally:
        model.train(was_training)
    if n == 0:
        raise HalocError("evaluation data is empty", key="--subset", fix="use a larger subset or check the dataset")
    return {"top1": 100.0 * int(correct) / n, "loss": float(loss_sum) / n, "samples": n}


def _save_checkpoint(path: Path, *, model: nn.Module, opt: torch.optim.Optimizer,
                     sched: torch.optim.lr_scheduler.LRScheduler, epoch: int,
                     history: list[dict[str, Any]], cfg: TrainConfig) -> None:
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "history": history,
        "config": cfg.to_dict(),
        "rng": _rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint written by :func:`train` (safe ``weights_only`` load)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise HalocError(f"cannot read checkpoint ({err.__class__.__name__}: {str(err)[:200]})", file=path,
                         fix="delete it and train again without --resume") from None
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise HalocError("not a haloc-hw training checkpoint", file=path,
                         fix="point --out at a directory written by `haloc-hw train`, or drop --resume")
    return payload


def _nan_error(epoch: int, step: int | None, lr: float, last_good: int, ckpt: Path | None) -> HalocError:
    where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step is not None else "")
    kept = (f"the last good checkpoint ({last_good} epochs) is kept at {ckpt} and its weights are back in the model"
            if ckpt is not None and last_good > 0 else
            f"the model holds the weights from before the failing epoch ({last_good} epochs done)")
    return HalocError(
        f"training diverged: the loss became NaN/inf at {where} with lr {lr:g}; {kept}",
        key="lr",
        fix="lower the learning rate (e.g. halve --lr) or set grad_clip, then rerun (add --resume to continue)",
    )


def train(
    model: nn.Module,
    data: DataBundle,
    cfg: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    teacher: nn.Module | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train``, evaluating on ``data.test`` after each epoch.

    With ``cfg.distill_temperature`` set, ``teacher`` (required; kept frozen in eval mode)
    supplies the soft targets of :func:`distill_loss`; its outputs must have the model's shape.

    ``on_epoch_end(epoch_index, record)`` is called after the epoch's checkpoint is written
    (used by callers to log or stop early by raising). Returns a :class:`TrainResult`.
    """
    cfg = cfg or TrainConfig()
    cfg.validate()
    device = resolve_device(cfg.device) if cfg.device is not None else data.device
    model.to(device)
    if cfg.distill_temperature is not None:
        teacher = _check_teacher(teacher, model, data, device)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    history: list[dict[str, Any]] = []
    start_epoch = 0

    if resume and ckpt_path is not None and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)  # on the CPU: RNG states must stay there; weights are copied
        changed = {k: (v, getattr(cfg, k, None)) for k, v in state["config"].items()
                   if k not in _RESUME_FREE and getattr(cfg, k, None) != v}
        if changed:
            log.warning("resuming %s with a changed config: %s", ckpt_path,
                        ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()))
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise HalocError(f"checkpoint does not fit this model ({str(err).splitlines()[0]})", file=ckpt_path,
                             fix="resume with the same --model, or use a new --out directory") from None
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        _set_rng_state(state["rng"])
        log.info("resuming from %s after epoch %d", ckpt_path, start_epoch)
    else:
        if resume:
            log.warning("--resume given but %s does not exist; starting from epoch 1",
                        ckpt_path if ckpt_path is not None else "no out_dir")
        seed_everything(cfg.seed)

    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    use_amp = cfg.amp and device.type == "cuda"
    # Compiled forward for training only; the state dict and evaluation use the plain module.
    forward = torch.compile(model, mode=cfg.compile) if cfg.compile and device.type == "cuda" else model
    last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
    t_start = time.perf_counter()
    epochs_bar = tqdm(range(start_epoch, cfg.epochs), total=cfg.epochs, initial=start_epoch, desc="train",
                      unit="epoch", disable=not progress, dynamic_ncols=True)
    for epoch in epochs_bar:
        t0 = time.perf_counter()
        if hasattr(data.train, "set_epoch"):
            data.train.set_epoch(epoch)
        lr = float(opt.param_groups[0]["lr"])
        model.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float32)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        n = 0
        batches = tqdm(data.train, total=len(data.train), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       leave=False, disable=not progress, dynamic_ncols=True)
        for step, (x, y) in enumerate(batches):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with _autocast(device, use_amp):
                logits = forward(x)
                if teacher is not None and cfg.distill_temperature is not None:
                    with torch.no_grad():
                        soft_targets = teacher(x)
            if teacher is not None and cfg.distill_temperature is not None:
                loss = distill_loss(logits.float(), soft_targets.float(), y, cfg.distill_temperature,
                                    cfg.distill_alpha, criterion)
            else:
                loss = criterion(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            bs = int(y.shape[0])
            loss_sum.add_(loss.detach(), alpha=bs)
            correct += (logits.detach().argmax(1) == y).sum()
            n += bs
            if (step + 1) % cfg.nan_check_every == 0 and not torch.isfinite(loss_sum):
                model.load_state_dict(last_good)
                raise _nan_error(epoch, step, lr, epoch, ckpt_path)
        batches.close()
        if n == 0:
            raise HalocError("training data is empty", key="--subset", fix="use a larger subset")
        train_loss = float(loss_sum) / n
        if not math.isfinite(train_loss):
            model.load_state_dict(last_good)
            raise _nan_error(epoch, None, lr, epoch, ckpt_path)
        sched.step()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": train_loss,
            "train_acc": 100.0 * int(correct) / n,
            "test_acc": None,
            "test_loss": None,
            "lr": lr,
            "seconds": 0.0,
        }
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            test = evaluate(model, data.test, device, amp=cfg.amp)
            record["test_acc"], record["test_loss"] = test["top1"], test["loss"]
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if out is not None and ckpt_path is not None:
            _save_checkpoint(ckpt_path, model=model, opt=opt, sched=sched, epoch=epoch + 1, history=history, cfg=cfg)
            write_json_atomic(out / HISTORY_NAME, history)
        log.info("epoch %d/%d loss %.4f train %.2f%% test %s lr %.4g (%.1fs)", epoch + 1, cfg.epochs, train_loss,
                 record["train_acc"], "-" if record["test_acc"] is None else f"{record['test_acc']:.2f}%", lr,
                 record["seconds"])
        epochs_bar.set_postfix(loss=f"{train_loss:.3f}",
                               test="-" if record["test_acc"] is None else f"{record['test_acc']:.2f}%")
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    epochs_bar.close()

    tested = [r for r in history if r.get("test_acc") is not None]
    best = max(tested, key=lambda r: r["test_acc"], default=None)
    return TrainResult(
        model=model,
        history=history,
        final_top1=history[-1]["test_acc"] if history else None,
        best_top1=best["test_acc"] if best else None,
        best_epoch=best["epoch"] if best else None,
        epochs_run=max(0, cfg.epochs - start_epoch),
        start_epoch=start_epoch,
        seconds=time.perf_counter() - t_start,
        out_dir=out,
    )


def _check_teacher(teacher: nn.Module | None, model: nn.Module, data: DataBundle, device: torch.device) -> nn.Module:
    """The distillation teacher, frozen, on ``device``; refused when missing or when its outputs
    do not have the student's shape (another number of classes, another input)."""
    if teacher is None:
        raise HalocError("distillation needs a teacher model", key="--distill",
                         fix="pass the uncompressed model with --base, or drop --distill")
    teacher = teacher.to(device).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    x = next(iter(data.train))[0][:2].to(device)
    was_training = model.training
    with torch.no_grad():
        model.eval()
        try:
            t_out, s_out = teacher(x), model(x)
        except RuntimeError as err:
            raise HalocError(f"the distillation teacher does not take this data ({str(err).splitlines()[0]})",
                             key="--base", fix="pass the base model trained on this dataset") from None
        finally:
            model.train(was_training)
    if tuple(t_out.shape) != tuple(s_out.shape):
        raise HalocError(f"the distillation teacher's outputs {tuple(t_out.shape)[1:]} do not match the model's "
                         f"{tuple(s_out.shape)[1:]}", key="--base", fix="pass the base model of this --model and dataset")
    return teacher


def fine_tune(
    model: nn.Module,
    data: DataBundle,
    cfg: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    teacher: nn.Module | None = None,
    **overrides: Any,
) -> TrainResult:
    """:func:`train` with the fine-tuning defaults (:meth:`TrainConfig.for_fine_tune`) plus ``overrides``."""
    if cfg is None:
        cfg = TrainConfig.for_fine_tune(**overrides)
    elif overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return train(model, data, cfg, out_dir=out_dir, resume=resume, progress=progress, teacher=teacher)
