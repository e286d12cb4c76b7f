"""deeppose: real-time human pose estimation with the DeepPose cascade (Toshev & Szegedy, CVPR 2014).

Library use::

    import cv2
    from deeppose import Pose

    pose = Pose()                                         # shipped FLIC model, fastest backend
    joints, b0 = pose(cv2.imread("person.jpg"))           # (P, 11, 2) and (P, 4), pixels
    print(dict(zip(pose.joints, joints[0].round(1).tolist())) if len(joints) else "nobody")

The subpackages are ``deeppose.engine`` (run time), ``deeppose.app`` (the desktop app) and
``deeppose.tools`` (training, evaluation, export); ``deeppose.cli`` is the ``deeppose`` command.
In the repository they live in the top-level folders engine/, app/ and tools/, mapped into this
package when it is installed (``pip install .``); inside the repository this package's path
is extended to the repository root so that ``deeppose.engine`` finds engine/.
"""
from __future__ import annotations

from pathlib import Path

_here = Path(__file__).resolve().parent
if not (_here / "engine").is_dir():   # a checkout: engine/, app/, tools/ sit beside this folder
    __path__.append(str(_here.parent))  # noqa: F821 (the package's module search path)

__all__ = ["Pose", "PoseEstimate", "PoseSmoother", "PersonTracker", "OneEuroFilter", "OneEuroParams"]


def __getattr__(name: str):
    """The public API, imported on first use (``import deeppose`` stays cheap)."""
    if name in ("Pose", "PoseEstimate", "PoseSmoother"):
        from .engine import api
        return getattr(api, name)
    if name == "PersonTracker":
        from .engine.tracking.tracker import PersonTracker
        return PersonTracker
    if name in ("OneEuroFilter", "OneEuroParams"):
        from .engine import smoothing
        return getattr(smoothing, name)
    raise AttributeError(f"module 'deeppose' has no attribute {name!r}")
