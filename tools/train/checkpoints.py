"""Checkpoints of a training run and the model folder it writes: the per-stage resume file
(``--resume``), starting a stage from trained weights (``--init``, the previous stage, another
input side), the stages 1..s-1 a stage builds on, and the stage files, manifest and ONNX files
of the model folder."""
from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from deeppose.engine.geometry import INPUT_SIZE, PIXEL_MEAN, PIXEL_STD
from deeppose.engine.model import ModelError, load_stage_module, read_manifest, write_manifest
from deeppose.engine.network import BACKBONE_PRESETS, PRESETS, BackboneRegressor, PoseRegressor
from deeppose.tools.eval.metrics import record_val_metrics
from deeppose.tools.train.config import TrainConfig
from deeppose.tools.train.splits import TrainingData

log = logging.getLogger("deeppose.train")


def save_atomic(obj, path: Path) -> None:
    from deeppose.engine.outputs import replaced_atomically

    with replaced_atomically(path, suffix=path.suffix) as tmp:
        torch.save(obj, tmp)


def read_resume(path: Path, net: PoseRegressor | BackboneRegressor, cfg: TrainConfig, stage: int,
                device: torch.device) -> dict:
    """The resume file of stage ``stage`` at ``path`` (``--resume``), loaded onto ``device``,
    after checking that it was written for the same network (``net.config()``) and, for a
    stage >= 2, the same refined joints.

    Raises:
        ModelError: the file was trained with another network configuration.
    """
    ck = torch.load(path, map_location=device, weights_only=False)
    was = dict(ck.get("config") or {}, refine_joints=(ck.get("train_config") or {}).get("refine_joints"))
    now = dict(net.config(), refine_joints=cfg.refine_joints)
    differ = [key for key in now if was.get(key) != now[key] and (key != "refine_joints" or stage > 1)]
    if differ:
        what = ", ".join(f"{key} {was.get(key)!r} (this run: {now[key]!r})" for key in differ)
        raise ModelError(f"{path} was trained with {what}: drop --resume or use another --run-dir")
    return ck


def restore_resume(ck: dict, net: torch.nn.Module, opt: torch.optim.Optimizer,
                   sched: torch.optim.lr_scheduler.LRScheduler, steps_per_epoch: int,
                   device: torch.device) -> tuple[int, list, dict]:
    """Put a resume file's model, optimizer, schedule and dropout RNG back (:func:`read_resume`);
    returns (the optimizer step to go on from, the history, the last val metrics)."""
    net.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    # the step to go on from (a --max-steps stop can fall inside an epoch); a checkpoint
    # written before steps were recorded goes on at its epoch's end, with other batches
    first_step, history = ck.get("step", ck["epoch"] * steps_per_epoch), ck["history"]
    final_metrics = ck.get("val_metrics", {})
    torch.set_rng_state(ck["rng"]["torch"])   # dropout
    if device.type == "cuda" and ck["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(ck["rng"]["cuda"], device)
    return first_step, history, final_metrics


def write_resume(path: Path, net: torch.nn.Module, opt: torch.optim.Optimizer,
                 sched: torch.optim.lr_scheduler.LRScheduler, *, epoch: int, step: int, history: list,
                 stats: dict | None, val_metrics: dict, cfg: TrainConfig, device: torch.device) -> None:
    """Write the stage's resume file (atomically): model, optimizer, schedule, the epoch (1-based)
    and optimizer step reached, the history, the displacement fit (Eq. 8; None for stage 1), the
    network and run configurations, the val metrics and the dropout RNG."""
    save_atomic({"model": net.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "epoch": epoch, "step": step,
                 "history": history,
                 "stats": stats, "config": net.config(), "val_metrics": val_metrics,
                 "train_config": cfg.to_dict(),
                 "rng": {"torch": torch.get_rng_state(),
                         "cuda": torch.cuda.get_rng_state(device)
                         if device.type == "cuda" else None}}, path)


def start_from(net: PoseRegressor | BackboneRegressor, checkpoint: Path) -> str:
    """Load a trained stage checkpoint into ``net`` (``--init``); see :func:`transfer_weights`.

    Raises:
        ModelError: unreadable checkpoint, or one of another preset (layers of other shapes).
    """
    return transfer_weights(net, load_stage_module(checkpoint).state_dict(), str(checkpoint))


def transfer_weights(net: PoseRegressor | BackboneRegressor, source: dict, name: str) -> str:
    """Start ``net`` from the state dict of a trained psi of the same preset.

    - Another number of joints (a FLIC model starting an LSP one): every layer but the
      2k-wide output layer, which keeps its fresh initialization.
    - Another input side S (a 220 stage starting a 96 refinement stage, a psi v2 stage 1
      trained at 160 pixels starting one at 224): the convolutions carry over as they are; the
      first fully connected layer, whose inputs are the C x s x s cells of the last (for psi v2:
      the reduced) feature map, is resampled from the source's s' x s' grid to s x s by area
      averaging (a larger grid repeats cells), scaled by s'^2 / s^2 so that a uniform feature
      map gives the same output.

    Returns a short description of what was carried over.
    Raises:
        ModelError: ``source`` is not psi with ``net``'s preset (layers of other shapes).
    """
    own = net.state_dict()
    same = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    last = f"head.{len(net.head) - 1}"
    if isinstance(net, BackboneRegressor):   # Flatten, Dropout, F; cin: channels of the reduced map
        fc1, cin = "head.2.weight", BACKBONE_PRESETS[net.preset].reduce
    else:                                    # Flatten, F; cin: channels of the last feature map
        fc1, cin = "head.1.weight", PRESETS[net.preset].conv345[-1]
    notes = []
    if fc1 in source and fc1 in own and fc1 not in same:
        w = source[fc1]
        s_src, s_dst = math.isqrt(w.shape[1] // cin), math.isqrt(own[fc1].shape[1] // cin)
        if s_src * s_src * cin == w.shape[1] and w.shape[0] == own[fc1].shape[0]:
            grid = w.reshape(w.shape[0], cin, s_src, s_src)
            r = _area_weights(s_src, s_dst).to(grid.dtype) * (s_src / s_dst)   # (s_dst, s_src), per axis
            same[fc1] = torch.einsum("ai,ocij,bj->ocab", r, grid, r).reshape(own[fc1].shape)
            notes.append(f"first F layer resampled from {s_src}x{s_src} to {s_dst}x{s_dst} cells")
    if set(own) - set(same) - {f"{last}.weight", f"{last}.bias"}:
        raise ModelError(f"{name} is not psi with preset {net.preset!r}: cannot start from it")
    if f"{last}.weight" not in same:
        notes.append("features only: it regresses another number of joints; the output layer starts afresh")
    net.load_state_dict(same, strict=False)
    return "; ".join(notes) or "every layer"


def _area_weights(n_src: int, n_dst: int) -> torch.Tensor:
    """(n_dst, n_src) area-averaging weights along one axis: row i holds the overlap of cell i of
    an n_dst-cell grid with each cell of an n_src-cell grid over the same span, divided by cell
    i's length, so each row sums to 1 and each column to n_dst / n_src (exact for any sizes)."""
    edges_src = np.arange(n_src + 1) / n_src
    edges_dst = np.arange(n_dst + 1) / n_dst
    lo = np.maximum(edges_dst[:-1, None], edges_src[None, :-1])
    hi = np.minimum(edges_dst[1:, None], edges_src[None, 1:])
    return torch.from_numpy(np.clip(hi - lo, 0, None) * n_dst)


def init_checkpoint(cfg: TrainConfig, stage: int) -> Path | None:
    """Stage ``stage``'s checkpoint in the ``cfg.init`` model folder, None without --init or such a stage."""
    if cfg.init is None:
        return None
    files = read_manifest(cfg.init).stage_files
    return files[stage - 1] if len(files) >= stage else None


def prev_stages(cfg: TrainConfig, stage: int, k: int) -> tuple[list[PoseRegressor], list, list]:
    """Stages 1..stage-1 of the model in ``cfg.out``: their networks, the joints each refines
    (``ModelInfo.stage_joints``) and its followers (``ModelInfo.stage_follow``). Raises
    ModelError when the folder has fewer stages."""
    if stage == 1:
        return [], [], []
    info = read_manifest(cfg.out)
    files = info.stage_files
    if len(files) < stage - 1:
        raise ModelError(f"stage {stage} needs stages 1..{stage - 1} in {cfg.out}; it has {len(files)}")
    return ([load_stage_module(f, k) for f in files[: stage - 1]], info.stage_joints[: stage - 1],
            info.stage_follow[: stage - 1])


def write_stage(cfg: TrainConfig, stage: int, net: PoseRegressor, result: dict, stats: dict | None,
                 val: dict, train: TrainingData, valdata: TrainingData, scaler: dict | None) -> None:
    """Store the stage (fp16) in the model folder and update the manifest; later stages are dropped."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    name = f"stage{stage}.pt"
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    save_atomic({"config": net.config(), "state_dict": state, "stage": stage}, cfg.out / name)
    try:
        manifest = read_manifest(cfg.out).manifest.to_dict()
    except ModelError:
        manifest = {}
    stages = [s for s in manifest.get("stages", []) if s["stage"] < stage]
    entry = {"stage": stage, "checkpoint": name, "epochs": result["epochs"],
             **({"input_size": net.input_size} if net.input_size != INPUT_SIZE else {}),
             **({"joints": list(cfg.refine_joints)} if stage > 1 and cfg.refine_joints is not None else {}),
             **({"follow": dict(cfg.refine_follow)} if stage > 1 and cfg.refine_follow else {}),
             "final_train_loss": round(result["history"][-1]["loss"], 5) if result["history"] else None,
             "samples_per_s": round(result["history"][-1]["samples_per_s"], 1) if result["history"] else None}
    if stats is not None:
        entry["displacement_prior"] = {"mean": np.round(stats["mean"], 4).tolist(),
                                       "cov": np.round(stats["cov"], 5).tolist()}
    stages.append(entry)
    skeleton = train.ds.skeleton
    for stale in ("val_metrics", "val_protocol"):   # written below, together (record_val_metrics)
        manifest.pop(stale, None)
    manifest.update({
        "name": cfg.dataset,
        "skeleton": skeleton.to_dict(),
        "sigma": cfg.sigma,
        "input_size": INPUT_SIZE,
        "normalization": {"mean": [PIXEL_MEAN] * 3, "std": [PIXEL_STD] * 3, "channel_order": "BGR",
                          "coordinates": "N(y; b) = (y - b_c) / (b_w, b_h)"},
        "preset": cfg.preset,
        "stages": stages,
        "scaler": scaler,
        "training": {"dataset": cfg.dataset, "train_split": "train", "train_persons": len(train),
                     "val_split": "val", "val_persons": len(valdata), "seed": cfg.seed,
                     "b0": {"train": dict(Counter(train.sources)), "val": dict(Counter(valdata.sources))},
                     "config": {k: v for k, v in cfg.to_dict().items() if k not in ("data", "out", "run_dir", "resume")}},
    })
    write_manifest(cfg.out, manifest)
    # ``val`` holds every stage 1..stage, measured now with this stage's cascade.
    record_val_metrics(cfg.out, val, {
        "command": "main.py train", "split": "val", "examples": len(valdata),
        "b0_sources": dict(Counter(valdata.sources)), "backend": "torch", "flip": "off"})


def write_onnx(folder: Path) -> None:
    """Write the ONNX files of the model folder's stages and name them in its manifest
    (:func:`tools.export.export_onnx.export_model`; stages whose file is up to date are skipped), so
    that the runtime backends, which load prebuilt files and never export, can run the folder
    as training leaves it. A failure is logged, not fatal: the checkpoints are written, and
    ``main.py export-onnx`` can finish the job."""
    from deeppose.tools.export.export_onnx import export_model

    try:
        paths = export_model(folder)
    except Exception as e:   # ImportError (no onnx), BackendError, ModelError, OSError: keep the training
        log.warning("ONNX export failed (%s); run: python main.py export-onnx --weights %s", e, folder)
        return
    log.info("ONNX files: %s", ", ".join(p.name for p in paths))
