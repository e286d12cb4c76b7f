"""One command-line convention across `main.py`'s commands, and clear one-line errors (issue 12)."""
from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys

import pytest

import main
from support import REPO


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def option(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    return parser._option_string_actions.get(name)


def test_top_level_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main.main(["--help"], prog="main.py")
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text
    for example in ("main.py video", "main.py evaluate", "main.py train", "main.py --source"):
        assert example in text


def test_backend_stages_threads_weights_mean_one_thing_everywhere():
    """--backend NAME defaults to auto, --stages N is the number of cascade stages (a whole
    number >= 1, also for train), --threads N >= 1, --weights DIR, one --precision flag."""
    parsers = command_parsers()
    with_backend = [n for n, p in parsers.items() if option(p, "--backend")]
    assert {"app", "video", "evaluate", "benchmark"} <= set(with_backend)
    for name in ("video", "evaluate"):
        a = option(parsers[name], "--backend")
        assert a.default == "auto" and a.metavar == "NAME" and "auto" in a.choices, name
    assert "default: auto" in option(parsers["evaluate"], "--backend").help
    assert "initially auto" in option(parsers["app"], "--backend").help
    for name, p in parsers.items():
        if (a := option(p, "--stages")) is not None:
            assert a.metavar == "N" and a.type("3") == 3, name
            with pytest.raises(argparse.ArgumentTypeError):
                a.type("1,2,3")
            with pytest.raises(argparse.ArgumentTypeError):
                a.type("0")
        if (a := option(p, "--threads")) is not None:
            assert a.metavar == "N", name
            with pytest.raises(argparse.ArgumentTypeError):
                a.type("-3")
        if (a := option(p, "--weights")) is not None:
            assert a.metavar == "DIR", name
        assert option(p, "--fp16") is None and option(p, "--fp32") is None, name
    for name in ("build-engines", "benchmark"):
        assert option(parsers[name], "--precision").choices == ("fp16", "fp32")


def test_every_option_names_its_value():
    """Consistent metavars: every option that takes a value shows a metavar (N, DIR, FILE, NAME,
    NAMES for a comma-separated list, ...) or its choices, never argparse's upper-cased option name."""
    allowed = {"N", "S", "DIR", "FILE", "FILE.png", "FILE.mp4", "NAME", "NAMES", "DEVICE", "LR", "F",
               "P", "PX", "MIB", "DEG", "0|FILE", "HOST:PORT", "NAME=N"}
    for name, p in command_parsers().items():
        for a in p._actions:
            if a.option_strings and a.nargs != 0 and a.choices is None:
                assert a.metavar in allowed, (name, a.option_strings, a.metavar)


@pytest.mark.parametrize("argv", [["video", "in.mp4", "--threads", "-3"], ["video", "in.mp4", "--stages", "x"],
                                  ["evaluate", "--dataset", "flic", "--backend", "cuda"],
                                  ["benchmark", "--threads", "0"], ["--stages", "0"]])
def test_bad_options_are_one_line_exit_2(argv, capsys):
    assert main.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument") and "--help" in err[0], err


def test_evaluate_defaults_to_auto():
    args = main.build_parser().parse_args(["evaluate", "--dataset", "flic"])
    assert args.backend == "auto"


def test_corrupt_checkpoint_is_not_a_valid_checkpoint(random_model_dir, tmp_path):
    """Never pass on PyTorch's advice to load with weights_only=False (it would run the file's code)."""
    import torch

    from deeppose.engine.backends import load_cascade
    from deeppose.engine.model import ModelError

    broken = tmp_path / "broken"
    shutil.copytree(random_model_dir, broken)
    torch.save({"config": datetime.datetime(2026, 1, 1)}, broken / "stage2.pt")   # not tensors: torch advises
    for content in (None, b"garbage"):
        if content is not None:
            (broken / "stage2.pt").write_bytes(content)
        with pytest.raises(ModelError) as e:
            load_cascade(broken)
        msg = str(e.value)
        assert "stage2.pt is not a valid deeppose checkpoint" in msg and "\n" not in msg
        assert "weights_only" not in msg and "False" not in msg


def test_benchmark_that_measured_nothing_fails(capsys, monkeypatch):
    """Only a backend that cannot run here was asked for: nothing measured, exit 1 (not 0)."""
    import deeppose.engine.backends as backends

    monkeypatch.setattr(backends, "_cuda_available", lambda: False)
    rc = main.main(["benchmark", "--backend", "tensorrt", "--no-pipeline", "--runs", "1", "--warmup", "0"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "needs an NVIDIA GPU with CUDA, and none was found" in captured.out
    assert "no backend could be measured" in captured.err


def test_video_backend_tensorrt_without_gpu_says_gpu_first(tmp_path, random_model_dir):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    from support import WALKING, cut_video, require_data
    require_data("videos", "walking.mp4")
    src = cut_video(WALKING, tmp_path / "in.mp4", 2)
    proc = subprocess.run([sys.executable, "main.py", "video", str(src), "-o", str(tmp_path / "o.mp4"), "--weights",
                           str(random_model_dir), "--backend", "tensorrt"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "TensorRT needs an NVIDIA GPU with CUDA, and none was found" in err[0], err


# --------------------------------------------------------------------------- --model flic|lsp

WEIGHTS_COMMANDS = ("app", "video", "evaluate", "benchmark", "export-onnx", "build-engines", "quantize-int8")


def test_every_command_with_weights_takes_model():
    """--model NAME beside every --weights DIR, the same choices and meaning everywhere."""
    parsers = command_parsers()
    with_weights = {n for n, p in parsers.items() if option(p, "--weights")}
    assert with_weights == set(WEIGHTS_COMMANDS)
    for name in with_weights:
        a = option(parsers[name], "--model")
        assert a is not None and tuple(a.choices) == ("flic", "lsp", "body") and a.default is None, name
        assert "weights/NAME" in a.help and "full body" in a.help, name


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A weights/ folder holding a random 1-stage flic model and a random 1-stage lsp model with a
    full-body face scaler, as the shipped ones will be."""
    from support import make_random_model

    root = tmp_path_factory.mktemp("repo") / "weights"
    make_random_model(root / "flic", stages=1)
    make_random_model(root / "lsp", stages=1, skeleton_name="lsp", face_scaler=True)
    return root


def test_resolve_weights(shipped, monkeypatch, tmp_path):
    from deeppose.engine import cli_args
    from deeppose.engine.cli_args import WeightsError, resolve_weights

    monkeypatch.setattr(cli_args, "WEIGHTS_ROOT", shipped)
    assert resolve_weights(None, None) == shipped / "flic"
    assert resolve_weights(None, "lsp") == shipped / "lsp"
    assert resolve_weights(None, None, default="lsp") == shipped / "lsp"
    assert resolve_weights(tmp_path / "mine", None) == tmp_path / "mine"      # --weights wins
    assert resolve_weights(shipped / "lsp", "lsp") == shipped / "lsp"         # both given, they agree
    with pytest.raises(WeightsError, match="--model flic conflicts with --weights .*lsp, a lsp model"):
        resolve_weights(shipped / "lsp", "flic")
    empty = tmp_path / "weights"
    (empty / "lsp").mkdir(parents=True)
    (empty / "lsp" / "scaler.json").write_text("{}")    # the scaler lands before the model
    monkeypatch.setattr(cli_args, "WEIGHTS_ROOT", empty)
    with pytest.raises(WeightsError, match=r"lsp model \(full body\) is not installed: weights/lsp has no manifest"):
        resolve_weights(None, "lsp")
    with pytest.raises(WeightsError, match="weights/flic is missing"):
        resolve_weights(None, None)


@pytest.mark.parametrize("command", [["app"], ["video", "IN"], ["evaluate", "--dataset", "lsp"], ["benchmark", "--no-pipeline"],
                                     ["export-onnx"], ["build-engines"]])
def test_missing_or_conflicting_model_is_one_line(command, shipped, monkeypatch, tmp_path, capsys):
    from deeppose.engine import cli_args
    from support import WALKING, cut_video, require_data

    if "evaluate" in command:   # evaluate reads the dataset before the model
        require_data("lsp", "joints.mat")
    if "IN" in command:
        require_data("videos", "walking.mp4")
        command = [c if c != "IN" else str(cut_video(WALKING, tmp_path / "in.mp4", 1)) for c in command]
    monkeypatch.setattr(cli_args, "WEIGHTS_ROOT", tmp_path / "weights")
    assert main.main(command + ["--model", "lsp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights/lsp is missing" in err[0], err
    monkeypatch.setattr(cli_args, "WEIGHTS_ROOT", shipped)
    assert main.main(command + ["--model", "lsp", "--weights", str(shipped / "flic")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model lsp conflicts with --weights" in err[0], err


def test_video_switches_to_the_full_body_model(shipped, monkeypatch, tmp_path, capsys):
    """video --model lsp runs the 14-joint model: its joint names in the keypoints header, 14
    joints per person, b0 from the walker's face through the full-body scaler."""
    import json

    from deeppose.engine import cli_args
    from deeppose.engine.skeletons import LSP
    from support import WALKING, cut_video, require_data

    require_data("videos", "walking.mp4")
    src = cut_video(WALKING, tmp_path / "in.mp4", 4)
    monkeypatch.setattr(cli_args, "WEIGHTS_ROOT", shipped)
    kp = tmp_path / "in.jsonl"
    rc = main.main(["video", str(src), "--model", "lsp", "--keypoints", str(kp), "--backend", "torch", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in kp.read_text().splitlines()]
    assert lines[0]["joints"] == list(LSP.joints)
    persons = [p for r in lines[1:] for p in r["persons"]]
    assert persons and all(list(p["joints"]) == list(LSP.joints) for p in persons)
    assert any(p["b0_source"] == "face" for p in persons)


def test_the_tools_default_paths_lie_in_the_repository_not_in_their_subpackage():
    """tools/ lives in subpackages (tools/train, tools/eval, ...): every default path that
    points into the repository (weights/, runs/, cache/, the walking.mp4 hand counts) is
    computed from one place, engine.constants.PACKAGE_ROOT, not from the module's own folder."""
    from deeppose.engine.constants import PACKAGE_ROOT
    from deeppose.tools.data import person_boxes
    from deeppose.tools.eval import person_precision, rotated_b0
    from deeppose.tools.train import pretrained, train

    assert PACKAGE_ROOT == REPO
    assert person_precision.DEFAULT_TRUTH.is_file()
    assert person_boxes.DEFAULT_CACHE_DIR == REPO / "cache"
    assert train.REPO_ROOT == pretrained.REPO_ROOT == rotated_b0.REPO_ROOT == REPO
