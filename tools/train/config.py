"""The configuration of a training run (`main.py train`'s options; recorded in checkpoints and the manifest)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from deeppose.engine.geometry import INPUT_SIZE


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in checkpoints and the manifest)."""

    dataset: str = "flic"
    data: Path | None = None
    out: Path = Path("weights/flic")
    run_dir: Path = Path("runs/flic")
    stages: list[int] = field(default_factory=lambda: [1, 2, 3])
    epochs: int = 40
    refine_epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    preset: str = "compact"
    sigma: float = 1.0
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    resume: bool = False
    limit: int | None = None
    val_limit: int | None = None
    max_steps: int | None = None
    workers: int = 0           # DataLoader worker processes making batches (0: in the training process)
    val_every: int = 1         # validate and checkpoint every N epochs (and after the last)
    # augmentation (stage 1: of b0; stages >= 2: of the simulated joint box)
    shift: float = 0.08        # max translation, fraction of the box side
    scale: float = 0.12        # max log-scale change (exp(+-scale))
    rotate_deg: float = 12.0   # max rotation, degrees
    color: float = 0.25        # max brightness/contrast change (normalized units / factor)
    # stages >= 2
    refine_lr: float = 1e-3    # peak learning rate (the network starts from stage s-1's weights)
    refine_input_size: int = INPUT_SIZE  # crop side of stages >= 2, pixels
    refine_preset: str | None = None     # network preset of stages >= 2 (None: ``preset``); psi v1 under a psi v2 stage 1
    refine_joints: list[str] | None = None  # joints stages >= 2 refine (None: all)
    refine_follow: dict[str, str] | None = None  # stages >= 2: {follower: leader}, followers not cropped
    neighbours: bool = False   # also supervise the other labelled joints inside each joint box
    init: Path | None = None   # model folder whose stage-s checkpoint starts stage s (fine-tuning)
    extra_data: list[str] = field(default_factory=list)  # other datasets' train splits added to train (union of joints)
    repeat: dict[str, int] | None = None  # {dataset: n}: its persons come n times an epoch (oversampling)
    loss: str = "l2"           # "l2" (Eq. 4), "l1", "smooth_l1" or "laplace" (psi v2: NLL with the learned scale)
    # psi v2 (backbone presets)
    input_size: int = INPUT_SIZE  # crop side of stage 1, pixels
    rotate_wide: float = 0.0   # fraction of boxes turned by up to 180 degrees (the others by up to rotate_deg)
    joint_box: float = 0.0     # stage 1: fraction of boxes drawn around the labelled joints instead of b0
    negatives: float = 0.0     # stage 1: fraction of crops that hold nobody (presence target 0)
    presence_weight: float = 0.1  # weight of the presence loss (binary cross-entropy)
    occlude: float = 0.0       # fraction of crops with a random grey rectangle (cut-out) over a part
    blur: float = 0.0          # fraction of crops blurred (Gaussian, sigma up to 2 px)
    edge_cut: float = 0.0      # stage 1: fraction of persons cut by the frame's edge (head, feet or a side out)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
