"""Train the DeepPose cascade: stage 1 on b0 crops (Eq. 4), stages s >= 2 on simulated joint boxes (Eq. 8).

`python main.py train --dataset flic --stages 3` trains stages 1, 2 and 3 in order
(``--from-stage 2`` starts at stage 2, on the stage 1 already in the model folder). Each stage is
written to the model folder (``--out``, default weights/<dataset>) when it finishes, together
with an updated manifest, so the folder is a usable cascade of the stages trained so far.

Stage 1 (Sec. 3.1): crops N(x; b0) of each training person, targets N(y; b0), the L2 loss over
labelled joints (unlabelled ones are left out). Augmentation: mirror with left/right swap,
random translation and scale of b0, small rotations, brightness/contrast jitter.

Stage s >= 2 (Sec. 3.2, Eq. 8): the network starts from stage s-1's weights (measured on FLIC
val: from scratch it barely moved within the CPU budget, from stage s-1 it improves at once). The stage s-1 cascade runs over the training split; the errors
of joint i, (y_i^{s-1} - y_i) / diam(y), are fitted with a 2-D normal N(mu_i, Sigma_i). Each
training sample is a joint box b = (y_i + delta, sigma*diam, sigma*diam), delta ~ N(mu_i,
Sigma_i) * diam, with diam jittered by the observed ratio diam(y^{s-1}) / diam(y); the target
is N(y_i; b), the displacement that the stage regresses (only output i is in the loss, psi_i).
Fresh deltas are drawn every epoch (the paper used 40 boxes per joint and image); mirrored.

Every epoch (every ``--val-every``-th) writes a checkpoint (model, optimizer, schedule) to the run
folder; ``--resume`` continues from the last one with the same batches, which are drawn from the
seed, the stage and the step (``--workers`` processes make them ahead of the loop). Progress bar,
val PDJ after each validated epoch, and a log file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeppose.engine.cli_args import crop_side, non_negative_int, positive_int
from deeppose.engine.constants import PACKAGE_ROOT as REPO_ROOT


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `main.py train` (every help text names the default)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("examples:\n"
                     "  main.py train --dataset flic                  # stages 1, 2 and 3\n"
                     "  main.py train --dataset flic --stages 1       # stage 1 only\n"
                     "  main.py train --dataset flic --from-stage 2   # stages 2 and 3 on the stage 1 in --out\n"
                     "  main.py train --dataset flic --resume         # continue after a stop")
    parser.add_argument("--dataset", choices=["flic", "lsp", "body"], default="flic",
                        help="dataset: flic, lsp, or body, both in one network with the union of their joints "
                             "(psi v2; each dataset's own b0) (default: flic)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="dataset folder (default: ../shared/data/<dataset>)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="model folder to write (default: weights/<dataset>)")
    parser.add_argument("--run-dir", type=Path, default=None, metavar="DIR",
                        help="checkpoints and log (default: runs/<dataset>)")
    parser.add_argument("--stages", type=positive_int, default=3, metavar="N",
                        help="train the cascade up to stage N, in order (default: 3, the paper's cascade)")
    parser.add_argument("--from-stage", type=positive_int, default=1, metavar="S",
                        help="first stage to train; stages 1..S-1 come from the model in --out (default: 1)")
    parser.add_argument("--epochs", type=positive_int, default=40, metavar="N",
                        help="stage 1 epochs, passes over the training persons (default: 40)")
    parser.add_argument("--refine-epochs", type=positive_int, default=8, metavar="N",
                        help="epochs of each stage >= 2; one pass = one simulated box per labelled joint and "
                             "person (default: 8)")
    parser.add_argument("--refine-lr", type=float, default=1e-3, metavar="LR",
                        help="peak learning rate of stages >= 2, which start from the previous stage's weights "
                             "(default: 1e-3)")
    parser.add_argument("--refine-input-size", type=crop_side, default=220, metavar="S",
                        help="crop side in pixels of stages >= 2 (at least 60; default: 220, the paper's). A "
                             "smaller crop makes the joint-box stages cheaper: 96 is about a sixth of the work")
    parser.add_argument("--refine-joints", default=None, metavar="NAMES",
                        help="comma-separated joints that the trained stages >= 2 refine and train on; the other "
                             "joints keep the previous stage's position, and their crops are not run "
                             "(default: every joint, as in the paper)")
    parser.add_argument("--refine-follow", default=None, metavar="NAMES",
                        help="comma-separated FOLLOWER=LEADER pairs: joints that the trained stages >= 2 do not "
                             "crop but move with a refined one (e.g. l_eye=nose,r_eye=nose: one rigid part); needs "
                             "--refine-joints naming each leader and no follower (default: none)")
    parser.add_argument("--neighbours", action="store_true",
                        help="stages >= 2: also supervise the other labelled joints inside each joint box "
                             "(default: off, only the box's own joint, the paper's psi_i)")
    parser.add_argument("--refine-preset", default=None, metavar="NAME",
                        help="network preset of stages >= 2 (default: --preset; needed under a psi v2 --preset): "
                             "psi v1 (paper, compact) or, under a psi v2 stage 1, psi v2 (mobilenet_v2, efficientnet_lite0: "
                             "starts from stage 1's weights when it is stage 1's preset, else from ImageNet, and "
                             "learns each refined joint's Laplace scale, its confidence)")
    parser.add_argument("--init", type=Path, default=None, metavar="DIR",
                        help="model folder whose stage-s checkpoint starts stage s (fine-tuning; default: "
                             "stage 1 from scratch, stages >= 2 from stage s-1)")
    parser.add_argument("--extra-data", action="append", default=[], choices=["lsp", "flic"], metavar="DATASET",
                        help="add the other dataset's train split to the training persons: lsp for --dataset flic, "
                             "flic for --dataset lsp (union of joints; the joints it lacks are left out of the loss; "
                             "b0 from its faces through the model's scaler) (default: none)")
    parser.add_argument("--repeat", action="append", default=[], metavar="NAME=N",
                        help="each training person of dataset NAME (flic or lsp) comes N times an epoch, each time "
                             "augmented afresh: oversampling, e.g. lsp=3 under --dataset body, whose 900 LSP "
                             "persons are otherwise a fifth of an epoch (default: every person once)")
    parser.add_argument("--loss", choices=["l2", "l1", "smooth_l1", "laplace"], default="l2",
                        help="loss on normalized joint coordinates: l2 (the paper's Eq. 4), l1, smooth_l1, or "
                             "laplace (psi v2 presets: the negative log-likelihood with each joint's learned "
                             "scale) (default: l2)")
    parser.add_argument("--input-size", type=crop_side, default=220, metavar="S",
                        help="crop side in pixels of stage 1 (at least 60; default: 220, the paper's)")
    parser.add_argument("--rotate-wide", type=float, default=0.0, metavar="F",
                        help="augmentation: fraction of training boxes turned by up to 180 degrees (people lying "
                             "or upside down); the others by up to --rotate (default: 0)")
    parser.add_argument("--joint-box", type=float, default=0.0, metavar="F",
                        help="stage 1: fraction of training boxes drawn around the labelled joints instead of b0, "
                             "as a tracked person's previous pose gives them (default: 0)")
    parser.add_argument("--negatives", type=float, default=0.0, metavar="F",
                        help="stage 1, psi v2 presets: fraction of crops that hold nobody (b0 moved off the person, "
                             "or a small box on one limb), which train the presence head (default: 0)")
    parser.add_argument("--occlude", type=float, default=0.0, metavar="F",
                        help="augmentation: fraction of crops with a grey rectangle over a part (default: 0)")
    parser.add_argument("--blur", type=float, default=0.0, metavar="F",
                        help="augmentation: fraction of crops blurred (default: 0)")
    parser.add_argument("--edge-cut", type=float, default=0.0, metavar="F",
                        help="stage 1 augmentation: fraction of persons cut by the frame's edge (the head, the "
                             "feet or one side out of the frame: black past a line through the person; "
                             "default: 0)")
    parser.add_argument("--rotate", type=float, default=12.0, metavar="DEG",
                        help="augmentation: largest rotation of a training box, degrees (default: 12)")
    parser.add_argument("--shift", type=float, default=0.08, metavar="F",
                        help="augmentation: largest shift of a training box, fraction of its side (default: 0.08)")
    parser.add_argument("--scale", type=float, default=0.12, metavar="F",
                        help="augmentation: largest log-scale change of a training box, exp(+-F) (default: 0.12)")
    parser.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="batch size (default: 64)")
    parser.add_argument("--lr", type=float, default=2e-3, metavar="LR",
                        help="peak Adam learning rate, cosine decay (default: 2e-3)")
    parser.add_argument("--preset", default="compact", metavar="NAME",
                        help="network preset: paper or compact (psi v1), or mobilenet_v2 or efficientnet_lite0 (psi v2: an ImageNet "
                             "backbone fetched by fetch-pretrained, with joint confidence and presence heads) "
                             "(default: compact)")
    parser.add_argument("--sigma", type=float, default=None, metavar="F",
                        help="joint box size in diam units (default: 1.0 for FLIC, 2.0 for LSP)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="torch CPU threads (default: all cores)")
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="training device: auto, cpu, cuda or cuda:N (default: auto, cuda when available)")
    parser.add_argument("--workers", type=non_negative_int, default=0, metavar="N",
                        help="processes that make the augmented batches ahead of the training loop; on a GPU the "
                             "crops, not the network, are the limit (default: 0, in the training process)")
    parser.add_argument("--val-every", type=positive_int, default=1, metavar="N",
                        help="validate and write the resumable checkpoint every N epochs and after the last "
                             "(default: 1)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run folder's last checkpoint (default: off, start over)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="use only the first N training examples, for smoke tests (default: all)")
    parser.add_argument("--val-limit", type=positive_int, default=None, metavar="N",
                        help="use only the first N val examples (default: all)")
    parser.add_argument("--max-steps", type=positive_int, default=None, metavar="N",
                        help="stop each stage after N optimizer steps, for smoke tests (default: no limit)")


def run(args: argparse.Namespace) -> int:
    """Train stages ``--from-stage`` .. ``--stages``; returns the exit code (2 on bad options)."""
    from deeppose.tools.train.config import TrainConfig
    from deeppose.tools.train.loop import train_cascade

    if args.from_stage > args.stages:
        print(f"train: error: --from-stage {args.from_stage} is after the last stage to train, --stages "
              f"{args.stages}", file=sys.stderr)
        return 2
    if args.dataset in args.extra_data:
        print(f"train: error: --extra-data {args.dataset} is the training dataset itself; add the other one "
              f"({'lsp' if args.dataset == 'flic' else 'flic'})", file=sys.stderr)
        return 2
    if not 0.0 <= args.rotate <= 180.0 or not 0.0 <= args.scale <= 1.0 or not 0.0 <= args.shift <= 1.0:
        print(f"train: error: --rotate must be within 0..180 degrees, --shift and --scale within 0..1 (got "
              f"{args.rotate:g}, {args.shift:g}, {args.scale:g})", file=sys.stderr)
        return 2
    fractions = {"--rotate-wide": args.rotate_wide, "--joint-box": args.joint_box, "--negatives": args.negatives,
                 "--occlude": args.occlude, "--blur": args.blur, "--edge-cut": args.edge_cut}
    bad = [f"{k} {v:g}" for k, v in fractions.items() if not 0.0 <= v <= 1.0]
    if bad:
        print(f"train: error: fractions must be within 0..1 (got {', '.join(bad)})", file=sys.stderr)
        return 2
    from deeppose.engine.network import BACKBONE_PRESETS, PRESETS

    if args.preset not in PRESETS and args.preset not in BACKBONE_PRESETS:
        print(f"train: error: unknown --preset {args.preset!r}; choose one of "
              f"{', '.join(sorted(PRESETS) + sorted(BACKBONE_PRESETS))}", file=sys.stderr)
        return 2
    if args.refine_preset is not None and args.refine_preset not in PRESETS and args.refine_preset not in BACKBONE_PRESETS:
        print(f"train: error: unknown --refine-preset {args.refine_preset!r}; choose one of "
              f"{', '.join(sorted(PRESETS) + sorted(BACKBONE_PRESETS))}", file=sys.stderr)
        return 2
    if args.preset in BACKBONE_PRESETS and args.stages > 1 and args.refine_preset is None:
        print(f"train: error: --preset {args.preset} needs --refine-preset for its refinement stages (a psi v1 "
              f"network, {', '.join(sorted(PRESETS))}, or psi v2, {', '.join(sorted(BACKBONE_PRESETS))})",
              file=sys.stderr)
        return 2
    if args.refine_preset in BACKBONE_PRESETS and args.preset not in BACKBONE_PRESETS:
        print(f"train: error: --refine-preset {args.refine_preset} needs a psi v2 --preset too "
              f"({', '.join(sorted(BACKBONE_PRESETS))})", file=sys.stderr)
        return 2
    if args.preset in PRESETS and (args.loss == "laplace" or args.negatives):
        print(f"train: error: --loss laplace and --negatives need a psi v2 preset ({', '.join(sorted(BACKBONE_PRESETS))}); "
              f"{args.preset} has no scale or presence head", file=sys.stderr)
        return 2
    if args.dataset == "body" and (args.extra_data or args.data):
        print("train: error: --dataset body reads FLIC and LSP from their default folders already; drop --extra-data "
              "and --data", file=sys.stderr)
        return 2
    repeat = {}
    present = {"flic", "lsp"} if args.dataset == "body" else {args.dataset, *args.extra_data}
    for item in args.repeat:
        name, _, n = item.partition("=")
        if name not in ("flic", "lsp") or not n.isdigit() or int(n) < 1 or name in repeat:
            print(f"train: error: --repeat takes NAME=N with NAME flic or lsp, each once, and N >= 1; got {item!r}",
                  file=sys.stderr)
            return 2
        if name not in present:
            print(f"train: error: --repeat {item}: this run has no {name} persons (--dataset body, or --dataset "
                  f"{name}, or --extra-data {name})", file=sys.stderr)
            return 2
        repeat[name] = int(n)
    from deeppose.engine.model import follow_indices
    from deeppose.engine.skeletons import get_skeleton

    known = get_skeleton(args.dataset).joints
    refine_joints = None
    if args.refine_joints is not None:
        refine_joints = [j.strip() for j in args.refine_joints.split(",") if j.strip()]
        unknown = [j for j in refine_joints if j not in known]
        if unknown or not refine_joints or len(set(refine_joints)) != len(refine_joints):
            print(f"train: error: --refine-joints must name distinct {args.dataset} joints ({', '.join(known)}); "
                  f"got {args.refine_joints!r}", file=sys.stderr)
            return 2
    refine_follow = None
    if args.refine_follow is not None:
        pairs = [p.split("=") for p in args.refine_follow.split(",") if p.strip()]
        refine_follow = {a.strip(): b.strip() for a, b in (p for p in pairs if len(p) == 2)}
        try:
            if len(refine_follow) != len(pairs) or refine_joints is None:
                raise ValueError("not FOLLOWER=LEADER pairs, or no --refine-joints")
            follow_indices(refine_follow, list(known), [known.index(j) for j in refine_joints])
        except ValueError:
            print(f"train: error: --refine-follow must pair joints that --refine-joints leaves out with joints it "
                  f"names (FOLLOWER=LEADER,...); got {args.refine_follow!r}", file=sys.stderr)
            return 2
    stages = list(range(args.from_stage, args.stages + 1))
    cfg = TrainConfig(
        dataset=args.dataset,
        data=args.data,
        out=args.out or REPO_ROOT / "weights" / args.dataset,
        run_dir=args.run_dir or REPO_ROOT / "runs" / args.dataset,
        stages=stages,
        epochs=args.epochs,
        refine_epochs=args.refine_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        refine_lr=args.refine_lr,
        refine_input_size=args.refine_input_size,
        refine_preset=args.refine_preset,
        refine_joints=refine_joints,
        refine_follow=refine_follow,
        neighbours=args.neighbours,
        init=args.init,
        loss=args.loss,
        repeat=repeat or None,
        extra_data=list(dict.fromkeys(args.extra_data)),
        preset=args.preset,
        sigma=args.sigma if args.sigma is not None else (1.0 if args.dataset == "flic" else 2.0),
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        resume=args.resume,
        limit=args.limit,
        val_limit=args.val_limit,
        max_steps=args.max_steps,
        workers=args.workers,
        val_every=args.val_every,
        rotate_deg=args.rotate,
        shift=args.shift,
        scale=args.scale,
        input_size=args.input_size,
        rotate_wide=args.rotate_wide,
        joint_box=args.joint_box,
        negatives=args.negatives,
        occlude=args.occlude,
        blur=args.blur,
        edge_cut=args.edge_cut,
    )
    return train_cascade(cfg)
