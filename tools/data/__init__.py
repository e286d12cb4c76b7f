"""Data preparation: the FLIC and LSP readers and the shared walking clip (datasets), the b0 of
each labelled person from detected faces (person_boxes), and the face-box scaler fit (fit_scaler)."""
