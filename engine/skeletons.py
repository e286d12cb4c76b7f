"""Joint and limb definitions per dataset (FLIC upper body, LSP full body, and ``body``, their union).

A :class:`Skeleton` fixes the order of the k joints in a pose vector, the mirror
(left/right swap) map used for flipped training images, the limbs scored by PCP,
the edges drawn as a stick figure, and the shoulder/opposite-hip pairs that define
diam(y), the torso diameter used for joint boxes (Eq. 7) and PDJ.

Left and right are person-centric, as in FLIC and LSP.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Limb:
    """A limb scored by PCP: the segment between two end points.

    Each end point is the mean of one or more joints (a single joint for arms and
    legs; the mid-hip and mid-shoulder points for the LSP torso).
    """

    name: str
    a: tuple[int, ...]
    b: tuple[int, ...]


@dataclass(frozen=True)
class Skeleton:
    """The joints of one dataset's pose vector and everything derived from their order.

    Attributes:
        name: dataset name, ``"flic"`` or ``"lsp"``, or ``"body"`` (their union).
        joints: k joint names, in pose-vector order.
        mirror: length-k permutation; ``pose[:, mirror]`` relabels a horizontally flipped
            pose (left <-> right).
        limbs: limbs scored by PCP (Sec. 4.2 of the paper).
        edges: (joint, joint) pairs drawn as the stick figure, each with a fixed colour.
        diam_pairs: (shoulder, opposite hip) index pairs; diam(y) is the distance of the
            first pair whose joints are both labelled.
    """

    name: str
    joints: tuple[str, ...]
    mirror: tuple[int, ...]
    limbs: tuple[Limb, ...]
    edges: tuple[tuple[int, int], ...]
    diam_pairs: tuple[tuple[int, int], ...]
    edge_colors: tuple[tuple[int, int, int], ...] = field(default=())

    @property
    def k(self) -> int:
        """Number of joints k (the network regresses 2k numbers)."""
        return len(self.joints)

    def index(self, name: str) -> int:
        """Index of joint ``name`` in the pose vector; raises KeyError if unknown."""
        try:
            return self.joints.index(name)
        except ValueError:
            raise KeyError(f"{self.name} has no joint {name!r}; joints are {list(self.joints)}") from None

    def mirror_pose(self, pose: np.ndarray, width: float) -> np.ndarray:
        """Mirror a pose for a horizontally flipped image of ``width`` pixels.

        Args:
            pose: (..., k, 2) pixel coordinates, (0, 0) the centre of the top-left pixel.
            width: image width in pixels.
        Returns:
            (..., k, 2) pose in the flipped image with left/right joints swapped.
        """
        out = np.array(pose, dtype=np.float64, copy=True)[..., list(self.mirror), :]
        out[..., 0] = (width - 1.0) - out[..., 0]
        return out

    def to_dict(self) -> dict:
        """JSON-able description written into model manifests."""
        return {
            "name": self.name,
            "joints": list(self.joints),
            "mirror": list(self.mirror),
            "edges": [list(e) for e in self.edges],
            "limbs": [{"name": l.name, "a": list(l.a), "b": list(l.b)} for l in self.limbs],
            "diam_pairs": [list(p) for p in self.diam_pairs],
        }


def _mirror_map(joints: tuple[str, ...]) -> tuple[int, ...]:
    """Swap every l*/r* joint with its partner (names start with 'l'/'r' or 'l_'/'r_')."""
    out = []
    for name in joints:
        if name.startswith("l_"):
            partner = "r_" + name[2:]
        elif name.startswith("r_"):
            partner = "l_" + name[2:]
        else:
            partner = name
        out.append(joints.index(partner))
    return tuple(out)


# Limb colours (BGR), fixed per limb so that left and right are told apart at a glance.
_LEFT_ARM = ((0, 215, 255), (0, 140, 255))      # yellow, orange
_RIGHT_ARM = ((255, 191, 0), (255, 0, 128))     # sky blue, violet
_LEFT_LEG = ((0, 255, 127), (0, 160, 60))       # spring green, green
_RIGHT_LEG = ((203, 192, 255), (147, 20, 255))  # pink, deep pink
_TORSO = (255, 255, 255)
_HEAD = (60, 60, 255)


FLIC_JOINTS = (
    "l_shoulder", "l_elbow", "l_wrist",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_hip", "r_hip",
    "l_eye", "r_eye", "nose",
)
# 1-based rows of FLIC's 2x29 `coords` holding the joints above, in order.
FLIC_COORD_ROWS = (1, 2, 3, 4, 5, 6, 7, 10, 13, 14, 17)


def _flic() -> Skeleton:
    j = {n: i for i, n in enumerate(FLIC_JOINTS)}
    edges = [
        (j["l_shoulder"], j["l_elbow"]), (j["l_elbow"], j["l_wrist"]),
        (j["r_shoulder"], j["r_elbow"]), (j["r_elbow"], j["r_wrist"]),
        (j["l_shoulder"], j["r_shoulder"]), (j["l_hip"], j["r_hip"]),
        (j["l_shoulder"], j["l_hip"]), (j["r_shoulder"], j["r_hip"]),
        (j["l_eye"], j["nose"]), (j["r_eye"], j["nose"]),
    ]
    colors = [*_LEFT_ARM, *_RIGHT_ARM, _TORSO, _TORSO, _TORSO, _TORSO, _HEAD, _HEAD]
    limbs = (
        Limb("l_upper_arm", (j["l_shoulder"],), (j["l_elbow"],)),
        Limb("l_lower_arm", (j["l_elbow"],), (j["l_wrist"],)),
        Limb("r_upper_arm", (j["r_shoulder"],), (j["r_elbow"],)),
        Limb("r_lower_arm", (j["r_elbow"],), (j["r_wrist"],)),
    )
    return Skeleton(
        name="flic",
        joints=FLIC_JOINTS,
        mirror=_mirror_map(FLIC_JOINTS),
        limbs=limbs,
        edges=tuple(edges),
        diam_pairs=((j["l_shoulder"], j["r_hip"]), (j["r_shoulder"], j["l_hip"])),
        edge_colors=tuple(colors),
    )


LSP_JOINTS = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
    "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
    "neck", "head_top",
)


def _lsp() -> Skeleton:
    j = {n: i for i, n in enumerate(LSP_JOINTS)}
    edges = [
        (j["l_shoulder"], j["l_elbow"]), (j["l_elbow"], j["l_wrist"]),
        (j["r_shoulder"], j["r_elbow"]), (j["r_elbow"], j["r_wrist"]),
        (j["l_hip"], j["l_knee"]), (j["l_knee"], j["l_ankle"]),
        (j["r_hip"], j["r_knee"]), (j["r_knee"], j["r_ankle"]),
        (j["l_shoulder"], j["r_shoulder"]), (j["l_hip"], j["r_hip"]),
        (j["l_shoulder"], j["l_hip"]), (j["r_shoulder"], j["r_hip"]),
        (j["neck"], j["head_top"]),
    ]
    colors = [*_LEFT_ARM, *_RIGHT_ARM, *_LEFT_LEG, *_RIGHT_LEG, _TORSO, _TORSO, _TORSO, _TORSO, _HEAD]
    hips = (j["r_hip"], j["l_hip"])
    shoulders = (j["r_shoulder"], j["l_shoulder"])
    limbs = (
        Limb("torso", hips, shoulders),
        Limb("l_upper_leg", (j["l_hip"],), (j["l_knee"],)),
        Limb("r_upper_leg", (j["r_hip"],), (j["r_knee"],)),
        Limb("l_lower_leg", (j["l_knee"],), (j["l_ankle"],)),
        Limb("r_lower_leg", (j["r_knee"],), (j["r_ankle"],)),
        Limb("l_upper_arm", (j["l_shoulder"],), (j["l_elbow"],)),
        Limb("r_upper_arm", (j["r_shoulder"],), (j["r_elbow"],)),
        Limb("l_lower_arm", (j["l_elbow"],), (j["l_wrist"],)),
        Limb("r_lower_arm", (j["r_elbow"],), (j["r_wrist"],)),
        Limb("head", (j["neck"],), (j["head_top"],)),
    )
    return Skeleton(
        name="lsp",
        joints=LSP_JOINTS,
        mirror=_mirror_map(LSP_JOINTS),
        limbs=limbs,
        edges=tuple(edges),
        diam_pairs=((j["r_shoulder"], j["l_hip"]), (j["l_shoulder"], j["r_hip"])),
        edge_colors=tuple(colors),
    )


BODY_JOINTS = LSP_JOINTS + ("l_eye", "r_eye", "nose")


def _body() -> Skeleton:
    """The union of FLIC's and LSP's joints (psi v2 trains one network on both datasets, each
    labelling its own joints): LSP's 14 full-body joints, then FLIC's eyes and nose. PCP limbs
    and diam pairs are LSP's."""
    lsp = _lsp()
    j = {n: i for i, n in enumerate(BODY_JOINTS)}
    face = ((j["l_eye"], j["nose"]), (j["r_eye"], j["nose"]))
    return Skeleton(
        name="body",
        joints=BODY_JOINTS,
        mirror=_mirror_map(BODY_JOINTS),
        limbs=lsp.limbs,
        edges=lsp.edges + face,
        diam_pairs=lsp.diam_pairs,
        edge_colors=lsp.edge_colors + (_HEAD, _HEAD),
    )


FLIC = _flic()
LSP = _lsp()
BODY = _body()
SKELETONS = {"flic": FLIC, "lsp": LSP, "body": BODY}


def get_skeleton(name: str) -> Skeleton:
    """The skeleton of dataset ``name`` ("flic", "lsp" or "body"); raises KeyError otherwise."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; known: {sorted(SKELETONS)}") from None
