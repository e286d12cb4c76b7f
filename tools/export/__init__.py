"""Build-time outputs of a model folder: ONNX files (export_onnx), their int8 copies
(quantize_int8), TensorRT engines (build_engines), and random-weights model folders for tests and
benchmarks (random_model)."""
