"""BlazeFace run by our own code on LiteRT: MediaPipe's face detection models without
MediaPipe's graph.

MediaPipe Tasks' ``FaceDetector`` wraps the BlazeFace network in a graph (image to tensor,
inference, SSD decoding, weighted non-maximum suppression, projection back to the image) that
cost 6 to 9 ms a call on the project's 2-core VM, where the network alone takes 3 to 4 ms with
two LiteRT threads. :class:`BlazeFace` does the same steps with OpenCV and numpy around a
LiteRT interpreter (``ai-edge-litert``, XNNPACK), as MediaPipe's face detector graph configures
them:

1. letterbox: the image's centred square of side max(W, H) (zero border), resized to the
   network's S x S input (S = 192 for the full-range model, 128 for the short-range one) with
   bilinear sampling, RGB in [-1, 1];
2. SSD anchors (:func:`ssd_anchors`): full range one 48 x 48 layer (stride 4), short range
   16 x 16 x 2 and 8 x 8 x 6 (strides 8 and 16); fixed anchor size 1;
3. decoding: centre, size and six keypoints per anchor, each coordinate / S (times the
   anchor size 1) plus the anchor centre; score = sigmoid(clip(logit, -100, 100));
   detections under ``min_confidence`` dropped;
4. weighted non-maximum suppression (:func:`weighted_nms`, IoU above ``min_suppression``);
5. back to image pixels through the letterbox; boxes rounded down to whole pixels as
   MediaPipe's pixel boxes are (origin and size truncated), keypoints unrounded.

Measured against MediaPipe's FaceDetector (mediapipe 1.2.2) on 120 FLIC frames and 72 views of
walking.mp4 (whole frames, 300 px and 480 px windows), full-range model: every face scored >= 0.5
is found by both, its box within 1 px at the 99th percentile (2 px at most; 3 px with the
short-range model) and its score within 0.016; below 0.5,
faces whose score is within 0.04 of the threshold may fall on the other side of it
(``tests/engine/test_blazeface.py`` checks this on real images).

Coordinates: boxes (cx, cy, w, h) in pixels, (0, 0) the centre of the top-left pixel
(engine.geometry's convention); keypoints (6, 2) pixels in
:data:`engine.detection.faces.FACE_KEYPOINTS` order.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..interrupts import ctrl_c_held

NUM_KEYPOINTS = 6
"""BlazeFace's keypoints per face: right eye, left eye, nose tip, mouth, right ear, left ear."""

ANCHOR_LAYERS = {
    192: ((4, 1),),            # full range: stride 4 (48 x 48 cells), one anchor per cell
    128: ((8, 2), (16, 6)),    # short range: stride 8 (16 x 16 x 2), three stride-16 layers merged (8 x 8 x 6)
}
"""(stride, anchors per cell) of each model's SSD layers, by input side: MediaPipe's
SsdAnchorsCalculator options for BlazeFace (aspect ratio 1, plus one interpolated anchor per
layer for the short-range model)."""


class BlazeFaceError(RuntimeError):
    """The model cannot be loaded or is not a BlazeFace face detector (one-line message)."""


def ssd_anchors(input_size: int) -> np.ndarray:
    """The SSD anchor centres of a BlazeFace model, in the order of its outputs.

    Args:
        input_size: the network's input side S (192 full range, 128 short range).
    Returns:
        (A, 2) anchor centres (x, y) in [0, 1] of the S x S input (A = 2304 or 896); every
        anchor has size 1 (MediaPipe's fixed_anchor_size).
    Raises:
        BlazeFaceError: an input side with no known anchor layout.
    """
    layers = ANCHOR_LAYERS.get(int(input_size))
    if layers is None:
        raise BlazeFaceError(f"no BlazeFace anchor layout for a {input_size}x{input_size} input (known: 192, 128)")
    out = []
    for stride, per_cell in layers:
        cells = -(-int(input_size) // stride)
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        out.append(np.repeat(np.stack([xs, ys], -1).reshape(-1, 2), per_cell, axis=0))   # row-major cells
    return np.concatenate(out)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BlazeFace's tie resolution (MediaPipe's WEIGHTED non-maximum suppression): take the best
    remaining detection and every remaining one overlapping it by IoU above ``iou_threshold``
    (itself included), and output their score-weighted mean box and keypoints with the best
    score; repeat with the rest.

    A detection of zero area overlaps nothing and is output alone (MediaPipe stops there and
    drops the rest; :meth:`BlazeFace.detect` never passes such boxes).

    Args:
        boxes: (N, 4) (xmin, ymin, xmax, ymax), any consistent units, finite.
        keypoints: (N, K, 2) same units.
        scores: (N,) positive (the weights of the mean).
    Returns:
        boxes (M, 4), keypoints (M, K, 2), scores (M,), float64, best score first.
    """
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out_b, out_k, out_s = [], [], []
    while len(order):
        best = order[0]
        b = boxes[order]
        iw = np.minimum(b[:, 2], boxes[best, 2]) - np.maximum(b[:, 0], boxes[best, 0])
        ih = np.minimum(b[:, 3], boxes[best, 3]) - np.maximum(b[:, 1], boxes[best, 1])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(inter > 0, inter / (area[order] + area[best] - inter), 0.0)
        group = order[iou > iou_threshold]
        if len(group) == 0:   # a degenerate (empty) box overlaps nothing, not even itself
            group = order[:1]
        w = scores[group] / scores[group].sum()
        out_b.append(w @ boxes[group])
        out_k.append(np.tensordot(w, keypoints[group], axes=1))
        out_s.append(scores[best])
        order = order[~np.isin(order, group)]
    k = keypoints.shape[1]
    return (np.array(out_b).reshape(-1, 4), np.array(out_k).reshape(-1, k, 2), np.array(out_s, dtype=np.float64))


class BlazeFace:
    """A BlazeFace face detector (.tflite) on LiteRT: the steps of the module docstring.

    Args:
        model_path: the full-range (192 px input) or short-range (128 px) BlazeFace .tflite.
        min_confidence: lowest score kept, in [0, 1].
        min_suppression: IoU above which detections are merged (0.3, MediaPipe's default).
        threads: LiteRT (XNNPACK) threads; default the CPUs this process may run on, at most 4.
    Raises:
        BlazeFaceError: ``ai-edge-litert`` is missing, or the file is not a float32 BlazeFace
            model (one line).
        ValueError, RuntimeError: LiteRT cannot read the file (LiteRT's own message;
            :class:`engine.detection.faces.FaceDetector` puts it on one line).
    """

    def __init__(self, model_path: str | Path, min_confidence: float = 0.5, min_suppression: float = 0.3,
                 threads: int | None = None):
        try:
            with ctrl_c_held():   # not inside LiteRT's native initialization (engine.interrupts)
                from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise BlazeFaceError(f"ai-edge-litert is not installed ({e})") from None
        self.model_path = Path(model_path)
        self.min_confidence = float(min_confidence)
        self.min_suppression = float(min_suppression)
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = int(threads) if threads else min(usable, 4)
        self._interp = Interpreter(model_path=str(self.model_path), num_threads=self.threads)
        self._interp.allocate_tensors()
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        shape = tuple(inputs[0]["shape"].tolist()) if len(inputs) == 1 else ()
        size = shape[1] if len(shape) == 4 and shape[1] == shape[2] and shape[3] == 3 else None
        if size not in ANCHOR_LAYERS or len(outputs) != 2:
            raise BlazeFaceError(f"not a BlazeFace face detection model (input {shape}, {len(outputs)} outputs)")
        self.input_size = int(size)
        self.anchors = ssd_anchors(self.input_size)
        by_width = {int(o["shape"][-1]): o for o in outputs}
        want = len(self.anchors)
        if set(by_width) != {1, 4 + 2 * NUM_KEYPOINTS} or any(int(o["shape"][1]) != want for o in outputs):
            raise BlazeFaceError(f"not a BlazeFace face detection model (outputs {[o['shape'].tolist() for o in outputs]})")
        if any(np.dtype(t["dtype"]) != np.float32 for t in inputs + outputs):
            raise BlazeFaceError("not a float32 BlazeFace model (a quantized one is not supported)")
        self._input = inputs[0]["index"]
        self._boxes, self._scores = by_width[4 + 2 * NUM_KEYPOINTS]["index"], by_width[1]["index"]
        self._tensor = np.empty((1, self.input_size, self.input_size, 3), np.float32)

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in one image.

        Args:
            image_bgr: (H, W, 3) uint8 BGR image, H and W at least 1 (a strided view, such as a
                window of a frame, is fine).
        Returns:
            faces (N, 4) (cx, cy, w, h) pixels, scores (N,) in [0, 1], keypoints (N, 6, 2)
            pixels, float64, (0, 0) the centre of the top-left pixel; best score first.
            Detections with a non-finite or non-positive size are dropped before the weighted NMS.
        Raises:
            BlazeFaceError: the detector is closed, or the image is not (H, W, 3) uint8 and non-empty.
        """
        if self._interp is None:
            raise BlazeFaceError("the BlazeFace detector is closed")
        if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0:
            raise BlazeFaceError(f"expected a non-empty (H, W, 3) uint8 BGR image, got {image_bgr.dtype} {image_bgr.shape}")
        h, w = image_bgr.shape[:2]
        s = self.input_size
        side = float(max(w, h))
        x0, y0 = (w - side) / 2.0, (h - side) / 2.0    # the letterbox square's corner (pixel edges)
        k = side / s
        # Tensor pixel u samples image x = x0 + u * k (MediaPipe's corner-aligned mapping).
        warp = np.array([[k, 0.0, x0], [0.0, k, y0]])
        crop = cv2.warpAffine(image_bgr, warp, (s, s), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        np.subtract(crop[..., ::-1], 127.5, out=self._tensor[0], dtype=np.float32)
        self._tensor *= 1.0 / 127.5
        self._interp.set_tensor(self._input, self._tensor)
        self._interp.invoke()
        logits = self._interp.get_tensor(self._scores)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
        keep = np.flatnonzero(scores >= self.min_confidence)
        if len(keep) == 0:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, NUM_KEYPOINTS, 2))
        raw = self._interp.get_tensor(self._boxes)[0, keep].astype(np.float64) / s
        anchors = self.anchors[keep]
        centre, size = raw[:, 0:2] + anchors, raw[:, 2:4]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)       # tensor units [0, 1]
        kps = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
        sane = np.isfinite(raw).all(axis=1) & (size > 0).all(axis=1)
        boxes, kps, scores = weighted_nms(boxes[sane], kps[sane], scores[keep][sane], self.min_suppression)
        # Back to image pixels; MediaPipe's pixel boxes truncate the origin and the size.
        origin = np.trunc(np.array([x0, y0]) + boxes[:, 0:2] * side)
        extent = np.trunc((boxes[:, 2:4] - boxes[:, 0:2]) * side)
        faces = np.concatenate([origin + extent / 2 - 0.5, extent], axis=1)
        kps = np.array([x0, y0]) + kps * side - 0.5
        return faces, scores, kps

    def close(self) -> None:
        """Release the interpreter (idempotent)."""
        self._interp = None
