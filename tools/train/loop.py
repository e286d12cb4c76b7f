"""The training loop behind `main.py train` (see tools/train/train.py for the protocol): the stages
in order, each by a :class:`StageTrainer` (its epoch loop, validated and checkpointed every
``--val-every`` epochs), as one process or under torchrun. Batches come from :mod:`.sampling`, the
loss from :mod:`.losses`, resume files and the model folder from :mod:`.checkpoints`."""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from deeppose.engine.model import ModelError, follow_indices
from deeppose.engine.network import BackboneRegressor, PoseRegressor, build_network
from deeppose.tools.data.datasets import DatasetError
from deeppose.tools.train.checkpoints import (
    init_checkpoint,
    prev_stages,
    read_resume,
    restore_resume,
    start_from,
    transfer_weights,
    write_onnx,
    write_resume,
    write_stage,
)
from deeppose.tools.train.config import TrainConfig
from deeppose.tools.train.losses import training_loss
from deeppose.tools.train.sampling import SampleMaker, StageBatches, displacement_stats, epoch_items
from deeppose.tools.train.splits import TrainingData, load_split, run_time_scaler, training_scaler
from deeppose.tools.train.validation import part_metrics, predict, summary, val_metrics

log = logging.getLogger("deeppose.train")


def _dist() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is initialized (torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier() -> None:
    if _dist()[1] > 1:
        torch.distributed.barrier()


POSTFIX_EVERY = 20
"""Optimizer steps between two updates of the progress bar's loss and speed."""


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        p = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p))
    return f


class StageTrainer:
    """Trains one stage, with a checkpoint every validated epoch and resume."""

    def __init__(self, stage: int, cfg: TrainConfig, train: TrainingData, val: TrainingData,
                 prev: list[PoseRegressor], device: torch.device, prev_joints: list | None = None,
                 prev_follow: list | None = None):
        """``prev``: the trained stages 1..s-1; ``prev_joints``: the joint indices each of them
        refines (``ModelInfo.stage_joints``; None entries or None: every joint); ``prev_follow``:
        their followers (``ModelInfo.stage_follow``; None: none)."""
        self.stage, self.cfg, self.train, self.val, self.prev, self.device = stage, cfg, train, val, prev, device
        names = train.ds.skeleton.joints
        # the joints each stage refines: stages 1..s-1 as the model folder has them, this one from the config
        self.own_joints = None if stage == 1 or cfg.refine_joints is None else [names.index(j) for j in cfg.refine_joints]
        self.stage_joints = list(prev_joints or [None] * len(prev)) + [self.own_joints]
        own_follow = None if stage == 1 or not cfg.refine_follow else follow_indices(
            cfg.refine_follow, list(names), self.own_joints)
        self.stage_follow = list(prev_follow or [None] * len(prev)) + [own_follow]
        self.dir = cfg.run_dir / f"stage{stage}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.dir / "last.pt"
        self.k = train.ds.skeleton.k

    def run(self) -> tuple[PoseRegressor, dict, dict | None]:
        """Train the stage (resuming from the run folder's checkpoint with ``--resume``).

        Every ``--val-every``-th epoch, after the last one and at a ``--max-steps`` stop, the
        cascade up to this stage is validated, a history entry is added (train loss and
        samples/s averaged over the steps since the previous entry, and the val metrics), and
        the checkpoint (model, optimizer, schedule, step, dropout RNG) is written.

        Returns:
            (the trained network in eval mode, {"history", "epochs", "val_metrics"}, the fitted
            displacement distribution of stage s-1 (Eq. 8), None for stage 1).
        Raises:
            ModelError: ``--resume`` from a checkpoint of another network configuration.
            DatasetError: fewer training items than one batch per process.
        """
        cfg = self.cfg
        torch.manual_seed(cfg.seed + self.stage)
        size = cfg.input_size if self.stage == 1 else cfg.refine_input_size
        preset = cfg.preset if self.stage == 1 else (cfg.refine_preset or cfg.preset)
        net = build_network(self.k, preset, size)
        v2 = isinstance(net, BackboneRegressor)
        init = init_checkpoint(cfg, self.stage)
        if init is not None:  # fine-tune a trained stage s
            loaded = start_from(net, init)
            log.info("stage %d: starts from %s (%s)", self.stage, init, loaded)
        elif self.prev and getattr(self.prev[-1], "preset", None) == preset:
            # start from the previous stage: its features already find body parts
            loaded = transfer_weights(net, self.prev[-1].state_dict(), f"stage {self.stage - 1}")
            log.info("stage %d: starts from stage %d (%s)", self.stage, self.stage - 1, loaded)
        else:   # another network than stage s-1's, or stage 1: nothing carries over
            if self.prev:
                log.info("stage %d: %s starts from scratch (stage %d is %s)", self.stage, preset, self.stage - 1,
                         getattr(self.prev[-1], "preset", None))
            if v2:   # psi v2: the backbone starts from its ImageNet weights
                from deeppose.tools.train.pretrained import load_backbone

                log.info("stage %d: backbone from %s", self.stage, load_backbone(net))
        net = net.to(self.device)
        lr = cfg.lr if self.stage == 1 else cfg.refine_lr
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        epochs = cfg.epochs if self.stage == 1 else cfg.refine_epochs
        ck = read_resume(self.ckpt_path, net, cfg, self.stage, self.device) \
            if cfg.resume and self.ckpt_path.is_file() else None
        stats = ck.get("stats") if ck else None
        rank, world = _dist()
        if self.stage > 1 and stats is None:
            if rank == 0:   # one process runs stage s-1 over the training split; the others receive the fit
                t = time.time()
                pred = predict(self.prev, self.train, cfg.sigma, self.device, self.stage_joints[:-1],
                               self.stage_follow[:-1])
                stats = displacement_stats(pred[-1], self.train)
                log.info("stage %d: fitted stage %d displacement distribution on %d training persons in %.0f s; "
                         "per-joint error std (diam units): %s", self.stage, self.stage - 1, len(self.train),
                         time.time() - t, np.round(np.sqrt(np.diagonal(stats["cov"], axis1=1, axis2=2)).mean(1), 3).tolist())
            if world > 1:
                box = [stats]
                torch.distributed.broadcast_object_list(box, src=0)
                stats = box[0]
        n_items = len(epoch_items(self.stage, self.train, self.own_joints, np.random.default_rng(0), cfg.repeat))
        # Under torchrun every process draws the same epoch order and takes every world-th
        # batch; gradients are averaged by DistributedDataParallel, so one step still covers
        # batch_size x world samples.
        if n_items < cfg.batch_size * world:
            raise DatasetError(f"stage {self.stage} has {n_items} training items, fewer than --batch-size "
                               f"{cfg.batch_size} x {world} process(es): lower the batch size")
        steps_per_epoch = n_items // (cfg.batch_size * world)
        total = epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, min(300, total // 10 + 1)))
        first_step, history, final_metrics = 0, [], {}
        if ck is not None:
            first_step, history, final_metrics = restore_resume(ck, net, opt, sched, steps_per_epoch, self.device)
            log.info("stage %d: resumed from %s at epoch %d/%d", self.stage, self.ckpt_path, ck["epoch"], epochs)
        model = net
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        last = total if not cfg.max_steps else min(total, cfg.max_steps)
        steps = range(first_step, last)
        batches = StageBatches(SampleMaker(self.train, cfg, size=size), self.stage,
                               self.own_joints, stats, steps_per_epoch, steps, world, rank)
        # Workers are forked: they share the decoded images and never touch the GPU.
        loader = torch.utils.data.DataLoader(
            batches, batch_size=None, shuffle=False, num_workers=cfg.workers, pin_memory=self.device.type == "cuda",
            **({"multiprocessing_context": "fork", "prefetch_factor": 4}
               if cfg.workers else {}))
        bar = tqdm(total=len(steps), desc=f"stage {self.stage}", unit="step", disable=None if rank == 0 else True,
                   mininterval=1.0)
        # the loss is summed on the device and read back only for the progress bar and the log
        # (a .item() per step would make the CPU wait for the GPU at every step)
        t0, seen, loss_sum = time.time(), 0, torch.zeros((), device=self.device)
        model.train()
        for step, batch in zip(steps, loader):
            batch = batch.to(self.device)
            loss = training_loss(cfg, model, batch, v2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            sched.step()
            n = len(batch.mask) * world
            seen += n
            loss_sum += loss.detach() * n  # this process's loss stands for all
            epoch = step // steps_per_epoch + 1   # 1-based, the epoch this step belongs to
            bar.update()
            if (step + 1) % POSTFIX_EVERY == 0:
                bar.set_postfix(epoch=f"{epoch}/{epochs}",
                                loss=f"{loss_sum.item() / seen:.4f}", samples_s=f"{seen / (time.time() - t0):.0f}",
                                lr=f"{sched.get_last_lr()[0]:.1e}", refresh=False)
            end = step + 1 == last
            if not end and ((step + 1) % steps_per_epoch != 0 or epoch % cfg.val_every != 0):
                continue
            # the end of a validated epoch (every --val-every-th, and the last), or of --max-steps
            net.eval()
            if rank == 0:  # process 0 validates and writes the checkpoint; the others wait
                val_pred = predict(self.prev + [net], self.val, cfg.sigma, self.device, self.stage_joints, self.stage_follow)
                metrics = val_metrics(val_pred, self.val)
                entry = {"epoch": epoch, "loss": loss_sum.item() / max(seen, 1),
                         "samples_per_s": seen / (time.time() - t0), "val": metrics[f"stage{self.stage}"]}
                final_metrics = metrics
                history.append(entry)
                log.info("stage %d epoch %d/%d: train loss %.4f, %.0f samples/s; val %s", self.stage, entry["epoch"],
                         epochs, entry["loss"], entry["samples_per_s"], summary(entry["val"]))
                if cfg.dataset == "body":
                    entry["val_parts"] = part_metrics(val_pred[-1], self.val)
                    for name, m in entry["val_parts"].items():
                        log.info("stage %d epoch %d/%d: val %s part: %s", self.stage, entry["epoch"], epochs, name,
                                 summary(m))
                write_resume(self.ckpt_path, net, opt, sched, epoch=entry["epoch"], step=step + 1, history=history,
                             stats=stats, val_metrics=final_metrics, cfg=cfg, device=self.device)
            _barrier()
            model.train()
            t0, seen, loss_sum = time.time(), 0, torch.zeros((), device=self.device)
        bar.close()
        net.eval()
        return net, {"history": history, "epochs": epochs, "val_metrics": final_metrics}, stats


def _setup_logging(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _init_distributed(cfg: TrainConfig) -> torch.device:
    """The training device; under torchrun (WORLD_SIZE > 1) also joins the process group:
    NCCL with one GPU per process (LOCAL_RANK) on CUDA, gloo on CPUs."""
    cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        if world > 1:
            local = int(os.environ.get("LOCAL_RANK", "0"))
        else:
            local = int(cfg.device.split(":")[1]) if ":" in cfg.device else 0
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu" if cfg.device == "auto" else cfg.device)


def train_cascade(cfg: TrainConfig) -> int:
    """Train ``cfg.stages`` in order; returns a process exit code.

    Run as one process, or under ``torchrun --nproc_per_node N`` (DistributedDataParallel:
    NCCL on GPUs, gloo on CPUs): every process loads the data and takes every N-th batch;
    process 0 validates, logs and writes checkpoints and the model folder.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _init_distributed(cfg)
    rank, world = _dist()
    if rank == 0:
        _setup_logging(cfg.run_dir)
    else:
        log.setLevel(logging.WARNING)
    try:
        return _train_stages(cfg, device, rank, world)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def _train_stages(cfg: TrainConfig, device: torch.device, rank: int, world: int) -> int:
    log.info("training %s stages %s on %s (%d process(es), %d threads each), preset %s, sigma %.1f, loss %s",
             cfg.dataset, cfg.stages, device, world, torch.get_num_threads(), cfg.preset, cfg.sigma, cfg.loss)
    try:
        scaler = training_scaler(cfg)
        train = load_split(cfg, "train", cfg.limit, scaler)
        val = load_split(cfg, "val", cfg.val_limit, scaler)
    except (DatasetError, ModelError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    for stage in cfg.stages:
        try:
            prev, prev_joints, prev_follow = prev_stages(cfg, stage, train.ds.skeleton.k)
            prev = [n.to(device) for n in prev]
        except ModelError as e:
            print(f"train: {e}", file=sys.stderr)
            return 2
        trainer = StageTrainer(stage, cfg, train, val, prev, device, prev_joints, prev_follow)
        try:
            net, result, stats = trainer.run()
        except (DatasetError, ModelError) as e:
            print(f"train: {e}", file=sys.stderr)
            return 2
        if rank == 0:
            final = result["val_metrics"]
            write_stage(cfg, stage, net.cpu(), result, stats, final, train, val, run_time_scaler(cfg))
            log.info("stage %d written to %s; val %s", stage, cfg.out, summary(final[f"stage{stage}"]))
            write_onnx(cfg.out)
        _barrier()  # the next stage reads this one from the model folder
    return 0
