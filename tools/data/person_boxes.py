"""b0 boxes for dataset examples (training and evaluation), face detections cached per image.

FLIC follows the paper's protocol: b0 is the labelled person's detected face box enlarged by the
fitted :class:`engine.detection.persons.FaceScaler`. LSP uses the full image as b0 (the paper's protocol);
the full-body model's scaler (``fit-scaler --dataset lsp``) is fitted on LSP faces matched to the
labelled neck and head top (:func:`match_head_faces`), and ``evaluate --b0 face`` measures it.

Detections are cached in ``cache/faces_<dataset>_<model>.npz`` (repository root, gitignored),
keyed by the image path relative to the dataset root, and tied to the face model's SHA-256 and
the detection threshold and runtime: a cache made with another model, threshold or runtime is discarded.

Matching a FLIC example to its face (:func:`match_faces`): a detected face box belongs to the
example when every labelled face joint of the example (l_eye, r_eye, nose) lies inside the box
grown by :data:`MATCH_MARGIN` of the face size on every side; when several boxes qualify, the one
whose centre is nearest the mean of those face joints wins.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np

from deeppose.engine.constants import PACKAGE_ROOT as REPO_ROOT
from deeppose.engine.detection.faces import (
    DEFAULT_MIN_CONFIDENCE,
    FACE_KEYPOINTS,
    FACE_MODELS,
    FaceDetector,
    face_size,
    resolve_face_model,
    resolve_face_runtime,
)
from deeppose.engine.detection.persons import FaceScaler, face_joint_indices, person_boxes
from deeppose.engine.detection.persons import joints_face as engine_joints_face
from deeppose.engine.outputs import replaced_atomically
from deeppose.engine.skeletons import Skeleton, get_skeleton

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = REPO_ROOT / "cache"
MATCH_MARGIN = 0.1
"""Tolerance of :func:`match_faces`: the face box is grown by this fraction of the face size on
each side before testing whether the labelled eyes and nose lie inside it."""
CACHE_FORMAT = "deeppose-faces/1"

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(faces (N, 4) cx, cy, w, h pixels; scores (N,); keypoints (N, 6, 2) pixels) of one image."""


# --------------------------------------------------------------------------- detection cache

def model_tag(model_file: str | Path) -> str:
    """Short tag of a face model for cache file names ("full", "short", else the file stem)."""
    name = Path(model_file).name
    for tag, fname in FACE_MODELS.items():
        if name == fname:
            return tag
    return Path(name).stem


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FaceCache:
    """Face detections of one dataset with one face model and threshold, stored as .npz.

    Args:
        path: the .npz file (created on :meth:`save`).
        model_path: the face model file the detections come from.
        min_confidence: the detector's threshold.
        search: how the detections were searched (tiling parameters); a cache made with
            other parameters is discarded.
        runtime: the face detector's runtime ("litert" or "mediapipe"; default the one "auto"
            picks, :func:`engine.detection.faces.resolve_face_runtime`); a cache made with the other
            one is discarded (their scores differ by up to 0.04 near the threshold, which moves faces
            across it).
    """

    def __init__(self, path: str | Path, model_path: str | Path, min_confidence: float, search: dict | None = None,
                 runtime: str | None = None):
        self.path = Path(path)
        self.model_path = Path(model_path)
        self.meta = {"format": CACHE_FORMAT, "model": self.model_path.name, "model_sha256": _sha256(self.model_path),
                     "min_confidence": float(min_confidence), "search": search or {"tiles": False},
                     "runtime": runtime or resolve_face_runtime()}
        self.entries: dict[str, Detections] = {}
        self.dirty = False
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            with np.load(self.path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta != self.meta:
                    log.info("face cache %s was made with %s; detecting again", self.path, meta)
                    return
                keys, counts = z["keys"], z["counts"]
                faces, scores, kps = z["faces"], z["scores"], z["keypoints"]
        except Exception as e:  # a truncated or foreign file: start afresh, it is only a cache
            log.warning("ignoring unreadable face cache %s: %s", self.path, e)
            return
        ends = np.cumsum(counts)
        for key, end, n in zip(keys, ends, counts):
            sl = slice(end - n, end)
            self.entries[str(key)] = (faces[sl], scores[sl], kps[sl])

    def get(self, key: str) -> Detections | None:
        return self.entries.get(key)

    def put(self, key: str, dets: Detections) -> None:
        self.entries[key] = dets
        self.dirty = True

    def save(self) -> None:
        """Write the cache atomically (no-op when nothing changed)."""
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.entries)
        dets = [self.entries[k] for k in keys]
        nk = len(FACE_KEYPOINTS)
        with replaced_atomically(self.path, suffix=".npz") as tmp:   # a name of its own (torchrun's processes too)
            np.savez_compressed(
                tmp, meta=np.array(json.dumps(self.meta)), keys=np.array(keys, dtype=str),
                counts=np.array([len(d[0]) for d in dets], dtype=np.int64),
                faces=np.concatenate([d[0] for d in dets]) if dets else np.zeros((0, 4)),
                scores=np.concatenate([d[1] for d in dets]) if dets else np.zeros(0),
                keypoints=np.concatenate([d[2] for d in dets]) if dets else np.zeros((0, nk, 2)))
        self.dirty = False


def cache_path(dataset_name: str, model_path: str | Path, min_confidence: float,
               cache_dir: str | Path | None = None, tiles: bool = True) -> Path:
    """``<cache_dir>/faces_<dataset>_<model tag>[_c<threshold>][_tiles].npz`` (threshold only when not 0.5)."""
    tag = model_tag(model_path)
    if not math.isclose(min_confidence, DEFAULT_MIN_CONFIDENCE):
        tag += f"_c{min_confidence:g}"
    if tiles:
        tag += "_tiles"
    return Path(cache_dir or DEFAULT_CACHE_DIR) / f"faces_{dataset_name}_{tag}.npz"


def image_key(dataset, image_path: Path) -> str:
    """Cache key of an image: its path relative to the dataset root (posix), else absolute."""
    try:
        return Path(image_path).resolve().relative_to(Path(dataset.root).resolve()).as_posix()
    except ValueError:
        return Path(image_path).resolve().as_posix()


def detect_dataset_faces(dataset, model: str | Path | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                         cache_dir: str | Path | None = None, progress: bool = True,
                         save_every: int = 500, tiles: bool = True, runtime: str = "auto") -> list[Detections]:
    """Face detections for every example of ``dataset`` (cached; each image detected once).

    With ``tiles`` (the default) each image goes through the same multi-scale search as a
    still image in the app (:class:`engine.detection.search.TrackingFaceDetector`: the whole image at
    ``min_confidence``, plus five overlapping tiles at its stricter tile threshold), so that
    evaluation measures the person detector that users get.

    Args:
        dataset: a tools.data.datasets.PoseDataset.
        model: face model (see engine.detection.faces.resolve_face_model); None = full range.
        min_confidence: detection threshold.
        cache_dir: where the .npz cache lives (default ``<repo>/cache``).
        progress: show a tqdm bar while detecting.
        save_every: write the cache after this many new images (work is never lost).
        tiles: search tiles too (see above); False: the whole image only.
        runtime: the face detector's runtime (:func:`engine.detection.faces.resolve_face_runtime`;
            the cache is made for, and used with, the one it resolves to).
    Returns:
        One :data:`Detections` per example, in ``dataset.examples`` order.
    Raises:
        engine.detection.faces.DetectorError: the face model cannot be loaded.
        tools.data.datasets.DatasetError: an image cannot be read.
    """
    from deeppose.tools.data.datasets import load_image

    model_path = resolve_face_model(model)
    if not model_path.is_file():
        from deeppose.engine.detection.faces import DetectorError
        raise DetectorError(f"face model missing: {model_path}")
    from deeppose.engine.pipeline import face_search

    search = face_search(None)
    search.first_tile = None   # the cached protocol's search, as it was (the finer tiles are for videos)
    meta = ({"tiles": True, "tile": search.tile, "small_frame": search.small_frame, "small_tile": search.small_tile,
             "tile_min_confidence": search.tile_min_confidence, "nms_iou": search.nms_iou,
             "nms_overlap": search.nms_overlap} if tiles else {"tiles": False})
    runtime = resolve_face_runtime(runtime)
    cache = FaceCache(cache_path(dataset.name, model_path, min_confidence, cache_dir, tiles), model_path,
                      min_confidence, meta, runtime)
    keys = [image_key(dataset, e.image_path) for e in dataset.examples]
    todo: dict[str, Path] = {}
    for key, ex in zip(keys, dataset.examples):
        if cache.get(key) is None:
            todo.setdefault(key, ex.image_path)
    if todo:
        from tqdm import tqdm

        log.info("detecting faces in %d images of %s %s with %s", len(todo), dataset.name, dataset.split,
                 model_path.name)
        with FaceDetector(model_path, min_confidence, runtime=runtime) as det:
            search.face_detector = det
            try:
                for i, (key, path) in enumerate(tqdm(todo.items(), desc=f"faces ({model_tag(model_path)})",
                                                     unit="img", disable=not progress, leave=False)):
                    search.reset()  # a still image: whole image plus every tile
                    cache.put(key, (search if tiles else det).detect_with_keypoints(load_image(path)))
                    if (i + 1) % save_every == 0:
                        cache.save()
            finally:
                cache.save()
    return [cache.get(k) for k in keys]


# --------------------------------------------------------------------------- matching

def match_faces(example, faces: np.ndarray, skeleton: Skeleton | None = None,
                margin: float = MATCH_MARGIN) -> int | None:
    """The detected face that belongs to ``example``'s labelled person.

    Args:
        example: a tools.data.datasets.PoseExample (pose (k, 2) pixels, NaN unlabelled).
        faces: (N, 4) detected face boxes (cx, cy, w, h) pixels.
        skeleton: the example's skeleton (default: FLIC when k == 11).
        margin: each face box is grown by ``margin`` x face size on every side before testing.
    Returns:
        Index into ``faces`` of the box holding every labelled face joint (l_eye, r_eye, nose),
        the nearest centre to their mean if several do; None if none does or the example has
        no labelled face joint.
    """
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    if len(faces) == 0:
        return None
    if skeleton is None:
        skeleton = get_skeleton("flic") if example.pose.shape[0] == 11 else get_skeleton("lsp")
    idx = face_joint_indices(skeleton)
    pts = example.pose[idx] if idx else np.zeros((0, 2))
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return None
    s = face_size(faces)[:, None]
    half = faces[:, 2:4] / 2 + margin * s  # (N, 2)
    inside = (np.abs(pts[None, :, :] - faces[:, None, 0:2]) <= half[:, None, :]).all(axis=(1, 2))  # (N,)
    if not inside.any():
        return None
    dist = np.linalg.norm(faces[:, 0:2] - pts.mean(axis=0), axis=1)
    dist[~inside] = np.inf
    return int(np.argmin(dist))


def match_dataset(dataset, detections: list[Detections]) -> tuple[np.ndarray, np.ndarray]:
    """Match every example to its detected face.

    Returns:
        faces: (N, 4) the matched face box per example, NaN rows where none matched.
        scores: (N,) its detection score, NaN where none matched.
    """
    n = len(dataset.examples)
    faces = np.full((n, 4), np.nan)
    scores = np.full(n, np.nan)
    for i, (ex, (f, sc, _)) in enumerate(zip(dataset.examples, detections)):
        j = match_faces(ex, f, dataset.skeleton)
        if j is not None:
            faces[i], scores[i] = f[j], sc[j]
    return faces, scores


# --------------------------------------------------------------------------- b0 per example

def joints_face(pose: np.ndarray, skeleton: Skeleton, params: dict | None = None) -> np.ndarray | None:
    """The face box implied by the labelled eyes and nose of one pose
    (:func:`engine.detection.persons.joints_face`, which the runtime uses for tracking by pose).

    Args:
        pose: (k, 2) pixels, NaN unlabelled.
        params: size_ratio, nose_weight, offset_x, offset_y (default
            :data:`engine.detection.persons.DEFAULT_JOINTS_FACE`).
    Returns:
        (4,) square face box (cx, cy, s, s) in pixels, or None unless both eyes and the nose are
        labelled.
    """
    face = engine_joints_face(pose, skeleton, params)
    return face if np.isfinite(face).all() else None


def example_b0(dataset, scaler: dict | FaceScaler | None, cache_dir: str | Path | None = None,
               progress: bool = True, missed: str = "joints",
               min_confidence: float | None = None) -> tuple[np.ndarray, list[str]]:
    """b0 for every example of a dataset, as training and evaluation use it: the runtime's b0
    rule (:func:`engine.detection.persons.person_boxes`) applied to each example's own face.

    - scaler None (LSP, as in the paper): the full image, (cx, cy, w, h) = ((W-1)/2, (H-1)/2,
      W, H); source "frame".
    - FLIC with a fitted scaler: the example's detected face (:func:`match_faces`, detections
      with the scaler's face_model and min_confidence, cached) enlarged by the scaler; source
      "face".
    - FLIC example whose face was not detected: the face box implied by its labelled eyes and
      nose (:func:`joints_face` with the scaler's "joints_face" parameters) enlarged by the
      same scaler; source "joints". If its eyes or nose are unlabelled (never in FLIC): the
      tight box around its labelled joints grown by 10% per side, also source "joints".
      This uses ground truth, so it is for training only: evaluation passes ``missed="frame"``
      and gets the full image instead (source "frame"), as the app does for a still image.
    - LSP with a fitted full-body scaler: the detected face matched to the labelled neck and
      head top (:func:`match_head_faces`) enlarged by the scaler, source "face"; where none
      matches, the face implied by the head (:func:`head_face`, the scaler's "head_face"
      parameters; source "head") or, with ``missed="frame"``, the full image.

    Args:
        dataset: a tools.data.datasets.PoseDataset.
        scaler: the scaler dict (manifest "scaler" / fit-scaler JSON), a FaceScaler, or None.
        cache_dir: face detection cache folder (default ``<repo>/cache``).
        progress: show a progress bar when images have to be detected.
        missed: b0 of a FLIC example whose face was not detected: "joints" (from its labelled
            eyes and nose; training) or "frame" (the full image; evaluation, no ground truth).
        min_confidence: face detection threshold (default: the scaler's, which it was fitted with).
    Returns:
        boxes (N, 4) float64 b0 per example (pixels), sources (N,) list of str.
    Raises:
        ValueError: a scaler given for a dataset with neither eyes and nose nor neck and head top.
        engine.detection.faces.DetectorError, tools.data.datasets.DatasetError: from detection.
    """
    from deeppose.engine.geometry import boxes_from_pose

    if missed not in ("joints", "frame"):
        raise ValueError(f"missed must be 'joints' or 'frame', got {missed!r}")
    n = len(dataset.examples)
    if scaler is None:
        persons = [person_boxes(e.image_size, None) for e in dataset.examples]
        return np.array([p.b0[0] for p in persons]).reshape(n, 4), [p.sources[0] for p in persons]
    if not isinstance(scaler, FaceScaler):
        scaler = FaceScaler.from_dict(scaler)
    has_head = all(j in dataset.skeleton.joints for j in HEAD_JOINTS)
    if len(face_joint_indices(dataset.skeleton)) != 3 and not has_head:
        raise ValueError(f"a face scaler was given for {dataset.name}, whose skeleton has neither eyes and nose "
                         "nor neck and head top; pass scaler=None to use the full image as b0")
    threshold = scaler.min_confidence if min_confidence is None else float(min_confidence)
    dets = detect_dataset_faces(dataset, scaler.face_model, threshold, cache_dir, progress)
    if len(face_joint_indices(dataset.skeleton)) != 3:   # LSP: faces matched to the labelled head
        faces = match_head_dataset(dataset, dets)
        params = scaler.extra.get("head_face")
        boxes = np.empty((n, 4))
        sources = []
        for i, ex in enumerate(dataset.examples):
            face = faces[i] if np.isfinite(faces[i]).all() else None
            if face is None and missed == "joints" and (face := head_face(ex.pose, dataset.skeleton, params)) is not None:
                boxes[i] = scaler.apply(face)
                sources.append("head")
                continue
            person = person_boxes(ex.image_size, scaler, None if face is None else face[None], fallback="frame")
            boxes[i] = person.b0[0]
            sources.append(person.sources[0])
        return boxes, sources
    faces, _ = match_dataset(dataset, dets)
    params = scaler.extra.get("joints_face")
    boxes = np.empty((n, 4))
    sources: list[str] = []
    for i, ex in enumerate(dataset.examples):
        found = faces[i][None] if np.isfinite(faces[i, 0]) else None
        if found is not None or missed == "frame":
            person = person_boxes(ex.image_size, scaler, found, fallback="frame")
            boxes[i] = person.b0[0]
            sources.append(person.sources[0])
            continue
        face = joints_face(ex.pose, dataset.skeleton, params)
        boxes[i] = scaler.apply(face) if face is not None else boxes_from_pose(ex.pose, margin=0.1)
        sources.append("joints")
    return boxes, sources


# --------------------------------------------------------------------------- LSP persons for a face-based model

HEAD_JOINTS = ("neck", "head_top")
DEFAULT_HEAD_FACE = {"along": 0.55, "size_ratio": 0.75}
"""Fallback parameters of :func:`head_face` (see :func:`fit_head_face`, which measures them on
the LSP training images whose face BlazeFace finds)."""


def _head(pose: np.ndarray, skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray] | None:
    if not all(n in skeleton.joints for n in HEAD_JOINTS):
        return None
    neck, top = (np.asarray(pose[skeleton.joints.index(n)], dtype=np.float64) for n in HEAD_JOINTS)
    if not (np.isfinite(neck).all() and np.isfinite(top).all()) or np.linalg.norm(top - neck) < 1e-6:
        return None
    return neck, top


def head_face(pose: np.ndarray, skeleton: Skeleton, params: dict | None = None) -> np.ndarray | None:
    """The face box implied by a labelled neck and head top (LSP), for persons whose face the
    detector missed.

    The face centre lies ``along`` of the way from the neck to the head top, and the face size
    is ``size_ratio`` x |head_top - neck|.

    Args:
        pose: (k, 2) pixels, NaN unlabelled, in ``skeleton``'s joint order.
        params: along, size_ratio (default :data:`DEFAULT_HEAD_FACE`).
    Returns:
        (4,) square face box (cx, cy, s, s) in pixels, or None unless neck and head top are labelled.
    """
    p = {**DEFAULT_HEAD_FACE, **(params or {})}
    head = _head(pose, skeleton)
    if head is None:
        return None
    neck, top = head
    c = neck + p["along"] * (top - neck)
    s = p["size_ratio"] * float(np.linalg.norm(top - neck))
    return np.array([c[0], c[1], s, s])


def match_head_faces(pose: np.ndarray, skeleton: Skeleton, faces: np.ndarray) -> int | None:
    """The detected face of a person labelled with neck and head top (LSP).

    A face belongs to the person when its centre lies within half the head length
    |head_top - neck| of the head's midpoint and its size is 0.3-2 head lengths; the nearest
    such face wins.

    Args:
        pose: (k, 2) pixels in ``skeleton``'s joint order.
        faces: (N, 4) face boxes (cx, cy, w, h) pixels.
    Returns:
        Index into ``faces``, or None.
    """
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    head = _head(pose, skeleton)
    if head is None or len(faces) == 0:
        return None
    neck, top = head
    length = float(np.linalg.norm(top - neck))
    dist = np.linalg.norm(faces[:, :2] - (neck + top) / 2, axis=1)
    size = face_size(faces) / length
    ok = (dist <= 0.5 * length) & (size >= 0.3) & (size <= 2.0)
    if not ok.any():
        return None
    dist[~ok] = np.inf
    return int(np.argmin(dist))


def fit_head_face(poses: np.ndarray, skeleton: Skeleton, faces: np.ndarray) -> dict:
    """Fit :func:`head_face`'s parameters on persons with a matched face.

    Args:
        poses: (N, k, 2) pixels.
        faces: (N, 4) the matched face per person, NaN rows where none.
    Returns:
        {"along", "size_ratio", "persons"}: the medians over the matched persons of the face
        centre's projection on neck -> head top (in head lengths) and of face size / head length.
    Raises:
        ValueError: no person has both a matched face and a labelled head.
    """
    along, ratio = [], []
    for pose, face in zip(poses, np.asarray(faces, dtype=np.float64).reshape(-1, 4)):
        head = _head(pose, skeleton)
        if head is None or not np.isfinite(face).all():
            continue
        neck, top = head
        v = top - neck
        along.append(float(np.dot(face[:2] - neck, v) / np.dot(v, v)))
        ratio.append(float(face_size(face) / np.linalg.norm(v)))
    if not along:
        raise ValueError("no person with a matched face and a labelled neck and head top")
    return {"along": round(float(np.median(along)), 4), "size_ratio": round(float(np.median(ratio)), 4),
            "persons": len(along)}


def match_head_dataset(dataset, detections: list[Detections]) -> np.ndarray:
    """(N, 4) the detected face of every example of a dataset labelled with neck and head top
    (:func:`match_head_faces`), NaN rows where none matches."""
    poses = dataset.poses()
    faces = np.full((len(poses), 4), np.nan)
    for i, (f, _, _) in enumerate(detections):
        j = match_head_faces(poses[i], dataset.skeleton, f)
        if j is not None:
            faces[i] = f[j]
    return faces


def head_face_b0(dataset, scaler: dict | FaceScaler, cache_dir: str | Path | None = None,
                 progress: bool = True) -> tuple[np.ndarray, list[str], dict]:
    """b0 from a face scaler for a dataset labelled with neck and head top (LSP), so that its
    persons can train a face-based model (FLIC) beside its own data.

    Faces are detected as for :func:`example_b0` (the scaler's face model and threshold, tiles)
    and matched by :func:`match_head_faces`; a person whose face is missed gets the face implied
    by the head (:func:`head_face`, parameters fitted by :func:`fit_head_face` on the matched ones).

    Returns:
        boxes (N, 4) b0 pixels; sources ("face" or "head") per example; the fitted head-face
        parameters (with the number of persons matched).
    Raises:
        ValueError: the skeleton has no neck and head top.
    """
    if not isinstance(scaler, FaceScaler):
        scaler = FaceScaler.from_dict(scaler)
    if not all(n in dataset.skeleton.joints for n in HEAD_JOINTS):
        raise ValueError(f"{dataset.name} has no neck and head top joints")
    dets = detect_dataset_faces(dataset, scaler.face_model, scaler.min_confidence, cache_dir, progress)
    poses = dataset.poses()
    n = len(poses)
    faces = match_head_dataset(dataset, dets)
    try:
        params = fit_head_face(poses, dataset.skeleton, faces)
    except ValueError:   # no face matched (a few images): the fallback parameters
        params = {**DEFAULT_HEAD_FACE, "persons": 0}
    boxes = np.full((n, 4), np.nan)
    sources = []
    for i in range(n):
        face = faces[i] if np.isfinite(faces[i]).all() else head_face(poses[i], dataset.skeleton, params)
        sources.append("face" if np.isfinite(faces[i]).all() else "head")
        if face is not None:
            boxes[i] = scaler.apply(face)
    return boxes, sources, params
