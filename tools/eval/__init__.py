"""Evaluation: PCP and PDJ (metrics) of a model on a dataset split (evaluate), person precision on
walking.mp4 (person_precision), animated clips with exact ground truth (animate), rotated b0
(rotated_b0), and MediaPipe's pose landmarker as the side-by-side peer (peer)."""
