"""deeppose tools (build time), one subpackage per job: data (dataset readers, b0 of labelled
persons, the scaler fit), train, export (ONNX, int8, TensorRT), eval (PCP, PDJ, the peer) and
bench (speed). Imports run one way: eval and export import data; train and bench import data,
eval and export; engine and app never import tools."""
