"""Keeping persons across frames: the tracker and the check of every estimate.

- :mod:`engine.tracking.tracker`: :class:`~engine.tracking.tracker.PersonTracker` (detections
  matched to tracks, confirmation, holding, tracking by pose) and its
  :class:`~engine.tracking.tracker.Track`; the assignment of tracks to detections.
- :mod:`engine.tracking.verify`: :class:`~engine.tracking.verify.PoseVerifier` (is an estimate
  the person of its face?) and :func:`~engine.tracking.verify.on_bodies` (is a face on
  another person's body?), on plain arrays.
- :mod:`engine.tracking.protocols`: what the pipeline needs from a tracker and a verifier.

The detections come from :mod:`engine.detection` (this package depends on it, never the other
way round). The package imports nothing itself.
"""
