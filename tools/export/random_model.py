"""A model folder with random weights, shaped like a trained one: for speed measurements
(``main.py benchmark`` when weights/flic is not trained yet) and for tests.
"""
from __future__ import annotations

from pathlib import Path

# A typical fitted FLIC face scaler (weights/flic/scaler.json, rounded), for random FLIC models.
RANDOM_FLIC_SCALER = {"offset_x": 0.12, "offset_y": 2.59, "scale_x": 7.35, "scale_y": 6.29}
# A typical fitted full-body LSP scaler (weights/lsp/scaler.json, rounded), for random LSP models.
RANDOM_LSP_SCALER = {"offset_x": 0.05, "offset_y": 4.23, "scale_x": 7.33, "scale_y": 13.4}


def make_random_model(folder: str | Path, skeleton: str = "flic", stages: int = 3, preset: str = "compact",
                      seed: int = 0, output_std: float = 0.15, onnx: bool = True,
                      face_scaler: bool | None = None) -> Path:
    """Write a model folder with random weights, shaped like the shipped one (for speed and tests).

    The last layer is scaled so that the normalized outputs spread by about ``output_std``
    (a trained model's poses spread over its boxes); batch-norm statistics are randomized so
    that exports and backends see non-trivial values. With ``face_scaler`` (default: for FLIC
    only) the model gets a typical fitted face scaler of its skeleton (so the pipeline runs the
    face detector, as with the shipped model); without, none (b0 is the full frame).
    With ``onnx`` the stages are also exported to ONNX (torchscript exporter, the faster one),
    as ``export-onnx`` does, so that the onnxruntime backend can load the folder.

    Returns:
        the folder.
    """
    import torch

    from deeppose.engine.geometry import INPUT_SIZE, PIXEL_MEAN, PIXEL_STD
    from deeppose.engine.model import write_manifest
    from deeppose.engine.network import build_network
    from deeppose.engine.skeletons import get_skeleton

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sk = get_skeleton(skeleton)
    if face_scaler is None:
        face_scaler = skeleton == "flic"
    scaler = dict(RANDOM_FLIC_SCALER if skeleton == "flic" else RANDOM_LSP_SCALER) if face_scaler else None
    gen = torch.Generator().manual_seed(seed)
    entries = []
    for s in range(1, stages + 1):
        torch.manual_seed(seed * 100 + s)
        net = build_network(sk.k, preset).eval()
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2, generator=gen)
                    m.running_var.uniform_(0.5, 2.0, generator=gen)
                    m.weight.uniform_(0.5, 1.5, generator=gen)
                    m.bias.uniform_(-0.1, 0.1, generator=gen)
            x = torch.randn(8, 3, INPUT_SIZE, INPUT_SIZE, generator=gen)
            spread = float(net(x).std())
            if spread > 0:
                net.head[-1].weight.mul_(output_std / spread)
        torch.save({"config": net.config(), "state_dict": net.state_dict(), "stage": s}, folder / f"stage{s}.pt")
        entries.append({"stage": s, "checkpoint": f"stage{s}.pt"})
    write_manifest(folder, {
        "name": f"random-{skeleton}-{preset}", "skeleton": sk.to_dict(), "sigma": 1.0 if skeleton == "flic" else 2.0,
        "input_size": INPUT_SIZE,
        "normalization": {"mean": [PIXEL_MEAN] * 3, "std": [PIXEL_STD] * 3, "channel_order": "BGR"},
        "preset": preset, "stages": entries, "scaler": scaler,
        "training": {"note": "random weights, for speed measurements only"},
    })
    if onnx:
        from deeppose.tools.export.export_onnx import export_model
        export_model(folder, exporter="torchscript")
    return folder
