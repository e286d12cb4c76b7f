"""Train the DeepPose cascade: stage 1 on b0 crops (Eq. 4), stages s >= 2 on simulated joint boxes (Eq. 8).

`python main.py train --dataset flic --stages 1,2,3` trains the stages in order. Each stage is
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

Every epoch writes a checkpoint (model, optimizer, schedule, RNG states) to the run folder;
``--resume`` continues from the last one. Progress bar, val PDJ after each epoch, and a log file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `main.py train`."""
    parser.add_argument("--dataset", choices=["flic", "lsp"], default="flic")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default ../shared/data/<dataset>)")
    parser.add_argument("--out", type=Path, default=None, help="model folder to write (default weights/<dataset>)")
    parser.add_argument("--run-dir", type=Path, default=None, help="checkpoints and log (default runs/<dataset>)")
    parser.add_argument("--stages", default="1,2,3", help="comma-separated stages to train, in order (default 1,2,3)")
    parser.add_argument("--epochs", type=int, default=40, help="stage 1 epochs (passes over the training persons)")
    parser.add_argument("--refine-epochs", type=int, default=8,
                        help="epochs of each stage >= 2 (one pass = one simulated box per labelled joint and person)")
    parser.add_argument("--refine-lr", type=float, default=1e-3,
                        help="peak learning rate of stages >= 2, which start from the previous stage's weights")
    parser.add_argument("--neighbours", action="store_true",
                        help="stages >= 2: also supervise the other labelled joints inside each joint box "
                             "(default: only the box's own joint, the paper's psi_i)")
    parser.add_argument("--init", type=Path, default=None, metavar="DIR",
                        help="model folder whose stage-s checkpoint starts stage s (fine-tuning; default: "
                             "stage 1 from scratch, stages >= 2 from stage s-1)")
    parser.add_argument("--extra-data", action="append", default=[], choices=["lsp", "flic"], metavar="DATASET",
                        help="add another dataset's train split to the training persons (union of joints; joints it "
                             "does not label are left out of the loss); repeatable. Default: none")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (cosine decay)")
    parser.add_argument("--preset", default="compact", help="network preset (engine.network.PRESETS)")
    parser.add_argument("--sigma", type=float, default=None, help="joint box size in diam units (default 1.0 FLIC, 2.0 LSP)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training examples (smoke tests)")
    parser.add_argument("--val-limit", type=int, default=None, help="use only the first N val examples")
    parser.add_argument("--max-steps", type=int, default=None, help="stop each stage after N optimizer steps (smoke tests)")


def run(args: argparse.Namespace) -> int:
    from deeppose.tools.trainer import TrainConfig, train_cascade

    try:
        stages = [int(s) for s in str(args.stages).split(",") if s.strip()]
    except ValueError:
        stages = []
    if not stages or min(stages) < 1 or stages != sorted(set(stages)):
        print(f"train: --stages must be increasing stage numbers >= 1, e.g. 1,2,3; got {args.stages!r}",
              file=sys.stderr)
        return 2
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
        neighbours=args.neighbours,
        init=args.init,
        extra_data=[d for d in args.extra_data if d != args.dataset],
        preset=args.preset,
        sigma=args.sigma if args.sigma is not None else (1.0 if args.dataset == "flic" else 2.0),
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        resume=args.resume,
        limit=args.limit,
        val_limit=args.val_limit,
        max_steps=args.max_steps,
    )
    return train_cascade(cfg)
