"""A stand-in for the parts of the TensorRT Python API the TensorRT backend uses, so that its
build/load/run code runs on machines without TensorRT (engines execute with ONNX Runtime on
the CPU). Used by test_tensorrt.py and the backend conformance test."""
from __future__ import annotations

import ctypes
import json
import sys
import types

import numpy as np
import onnx

from deeppose.engine.backends import tensorrt_backend as trtb
from deeppose.engine.backends.tensorrt_backend import TrtEnvironment

ENV = TrtEnvironment("10.8.0.43", "NVIDIA GeForce RTX 4090", "8.9")
"""The machine the stand-in pretends to be."""


class _Flag:
    STRONGLY_TYPED = 1


def fake_tensorrt(calls: list) -> types.ModuleType:
    """A stand-in for the parts of the TensorRT Python API the backend uses (names, signatures
    and return conventions as documented for TensorRT 10); engines execute with ONNX Runtime."""
    import onnxruntime as ort
    trt = types.ModuleType("tensorrt")
    trt.__version__ = ENV.tensorrt_version

    class Logger:
        WARNING, ERROR = 2, 1

        def __init__(self, level=None):
            self.level = level

    class Network:
        def __init__(self, flags):
            calls.append(("create_network", flags))
            self.onnx = None

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse(self, data):
            onnx.checker.check_model(onnx.load_from_string(data))
            self.network.onnx = data
            return True

        def get_error(self, i):  # pragma: no cover - parse never fails here
            return ""

    class Profile:
        def set_shape(self, name, min, opt, max):
            self.shapes = {name: (tuple(min), tuple(opt), tuple(max))}

    class Config:
        def set_memory_pool_limit(self, pool, size):
            self.workspace = size

        def add_optimization_profile(self, p):
            self.profile = p

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build", config.profile.shapes))
            header = json.dumps({k: list(map(list, v)) for k, v in config.profile.shapes.items()}).encode()
            return len(header).to_bytes(4, "little") + header + network.onnx

    class Context:
        def __init__(self, engine):
            self.engine, self.addr, self.shape = engine, {}, {}

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.profile[name]
            assert lo[0] <= shape[0] <= hi[0], f"batch {shape[0]} outside the profile {lo[0]}..{hi[0]}"
            self.shape[name] = tuple(shape)
            return True

        def execute_async_v3(self, stream_handle):
            n = self.shape["crops"][0]
            size = int(np.prod(self.shape["crops"]))
            x = np.ctypeslib.as_array((ctypes.c_float * size).from_address(self.addr["crops"]))
            y = self.engine.session.run(None, {"crops": x.reshape(self.shape["crops"])})[0]
            out = np.ctypeslib.as_array((ctypes.c_float * y.size).from_address(self.addr["coords"]))
            out[:] = y.reshape(-1)
            calls.append(("execute", n))
            return True

    class Engine:
        def __init__(self, blob):
            n = int.from_bytes(blob[:4], "little")
            self.profile = {k: [tuple(s) for s in v] for k, v in json.loads(blob[4:4 + n]).items()}
            self.session = ort.InferenceSession(blob[4 + n:], providers=["CPUExecutionProvider"])
            self.num_io_tensors = 2
            self.k2 = self.session.get_outputs()[0].shape[1]

        def get_tensor_name(self, i):
            return ["crops", "coords"][i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == "crops" else trt.TensorIOMode.OUTPUT

        def get_tensor_profile_shape(self, name, profile):
            return self.profile[name]

        def get_tensor_shape(self, name):
            return (-1, 3, 220, 220) if name == "crops" else (-1, self.k2)

        def get_tensor_dtype(self, name):
            return "float"

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return Engine(bytes(blob)) if blob[:1] != b"X" else None

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    trt.NetworkDefinitionCreationFlag = _Flag
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.nptype = lambda dt: np.float32
    return trt


def install_standin(monkeypatch) -> list:
    """Make ``import tensorrt`` give the stand-in and the backend see :data:`ENV`; returns the
    list of recorded calls (("create_network", flags), ("build", shapes), ("execute", batch))."""
    calls: list = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(calls))
    monkeypatch.setattr(trtb, "current_environment", lambda device=None: ENV)
    return calls
