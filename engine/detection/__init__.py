"""Finding persons in a frame: the face detector, the face searches around it, and the person
boxes b0 that start the cascade.

- :mod:`engine.detection.faces`: BlazeFace (:class:`~engine.detection.faces.FaceDetector`) and
  what face boxes and keypoints tell (size, roll, plausibility).
- :mod:`engine.detection.blazeface`: BlazeFace run by our own code on LiteRT;
  :mod:`engine.detection.native_stderr`: the filter of MediaPipe's native stderr chatter.
- :mod:`engine.detection.search`: the multi-scale face search (tiles, windows around tracked
  faces) and the search of the frame turned by quarter and half turns.
- :mod:`engine.detection.persons`: face boxes -> b0 (the scaler, the person detectors,
  :class:`~engine.detection.persons.PersonBoxes`), and the boxes poses give (tracking by pose
  and by body).
- :mod:`engine.detection.boxes`: IoU, overlap and non-maximum suppression of boxes.
- :mod:`engine.detection.protocols`: what the pipeline needs from a person finder and a face
  search.

The package imports nothing itself (importing a module of it loads only what that module needs).
"""
