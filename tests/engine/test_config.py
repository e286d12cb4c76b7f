"""The pipeline's one config (engine/config.py): made from the command line, the app's settings
or by hand, checked when made, resolved against the model, and turned into a pipeline by
PosePipeline(config) alone."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from deeppose.engine.backends import BackendError, backend_option_problem, create_regressors
from deeppose.engine.config import (
    DEFAULT_DETECT_EVERY,
    DEFAULT_RECHECK_EVERY,
    LIVE_OPTIONS,
    PipelineConfig,
)
from deeppose.engine.model import read_manifest
from deeppose.engine.pipeline import PosePipeline
from support import REPO, require_data
from support.clips import walking_frames


def video_args(*argv: str) -> argparse.Namespace:
    """The ``video`` command's parsed arguments (engine/video_cli.py's own parser)."""
    from deeppose.engine.video_cli import configure

    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(["in.mp4", *argv])


# --------------------------------------------------------------------------- making a config

def test_the_video_commands_flags_become_the_configs_options():
    cfg = PipelineConfig.from_args(video_args(
        "--model", "flic", "--backend", "ort", "--stages", "2", "--no-smooth", "--threads", "2", "--no-int8",
        "--max-persons", "1", "--detect-every", "3", "--recheck-every", "7", "--confirm", "2", "--flip", "first",
        "--rotate"))
    assert cfg.weights == REPO / "weights" / "flic"
    assert (cfg.backend, cfg.stages, cfg.smooth, cfg.threads, cfg.int8) == ("onnxruntime", 2, False, 2, False)
    assert (cfg.max_persons, cfg.detect_every, cfg.recheck_every, cfg.confirm_hits) == (1, 3, 7, 2)
    assert (cfg.flip, cfg.rotate) == ("first", True)
    assert (cfg.track_by_pose, cfg.verify, cfg.track_by_body) == (None, None, None)   # the model's


def test_the_video_commands_defaults_are_the_configs_defaults():
    cfg = PipelineConfig.from_args(video_args())
    assert cfg == PipelineConfig(REPO / "weights" / "flic", confirm_hits=3)   # --confirm's default is 3
    assert (cfg.detect_every, cfg.recheck_every) == (DEFAULT_DETECT_EVERY, DEFAULT_RECHECK_EVERY)


def test_no_track_by_pose_also_turns_the_check_of_every_estimate_off():
    cfg = PipelineConfig.from_args(video_args("--no-track-by-pose"))
    assert cfg.track_by_pose is False and cfg.verify is False


def test_overrides_of_from_args_win_over_the_namespace():
    ns = argparse.Namespace(backend=["torch", "onnxruntime"], max_persons=2, threads=3)   # the benchmark's
    cfg = PipelineConfig.from_args(ns, backend="auto", threads=None)
    assert (cfg.backend, cfg.threads, cfg.max_persons) == ("auto", None, 2)


def test_the_apps_settings_become_a_config_with_zero_meaning_the_default():
    cfg = PipelineConfig.from_settings({"weights": "weights/lsp", "backend": "torch", "stages": 0, "smooth": False,
                                        "max_persons": 0, "rotate": True, "flip": "all", "track_by_pose": True,
                                        "track_by_body": False, "detect_every": 4, "recheck_every": 12,
                                        "confirm_hits": 2, "threads": 0})
    assert (cfg.stages, cfg.max_persons, cfg.threads) == (None, None, None)
    assert (cfg.track_by_pose, cfg.track_by_body, cfg.verify) == (None, False, None)
    assert (cfg.backend, cfg.smooth, cfg.rotate, cfg.flip) == ("torch", False, True, "all")
    assert (cfg.detect_every, cfg.recheck_every, cfg.confirm_hits) == (4, 12, 2)
    off = PipelineConfig.from_settings({"track_by_pose": False})
    assert off.track_by_pose is False and off.verify is False


def test_the_apps_default_settings_are_the_video_commands_defaults():
    from deeppose.app.settings import AppSettings

    settings = AppSettings()
    assert PipelineConfig.from_settings(settings.pipeline_settings()) == PipelineConfig.from_args(
        video_args("--weights", settings.weights))


def test_replace_changes_options_and_checks_them_again():
    cfg = PipelineConfig().replace(max_persons=2, backend="trt")
    assert (cfg.max_persons, cfg.backend) == (2, "tensorrt")
    with pytest.raises(ValueError, match="detect_every"):
        cfg.replace(detect_every=0)


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("make", [
    lambda: PipelineConfig(threadz=2),
    lambda: PipelineConfig().replace(threadz=2),
    lambda: PipelineConfig.from_args(argparse.Namespace(), threadz=2),
])
def test_an_unknown_option_is_a_type_error_naming_it(make):
    with pytest.raises(TypeError, match="threadz"):
        make()


def test_an_unknown_app_setting_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="unknown pipeline setting 'show_boxes'"):
        PipelineConfig.from_settings({"show_boxes": True})


@pytest.mark.parametrize("options, words", [
    ({"backend": "cuda"}, "backend must be one of"),
    ({"stages": 0}, "stages must be a whole number >= 1"),
    ({"stages": 1.5}, "stages must be a whole number"),
    ({"max_persons": 0}, "max_persons must be"),
    ({"threads": -1}, "threads must be"),
    ({"detect_every": None}, "detect_every must be a whole number >= 1, got None"),
    ({"flip": "twice"}, "flip must be one of off, first, all"),
    ({"smooth": "no"}, "smooth must be True or False"),
    ({"track_by_body": 1.0}, "track_by_body must be True, False or None"),
    ({"min_face_confidence": 1.5}, "min_face_confidence must be a number from 0 to 1"),
    ({"precision": "int4"}, "precision must be one of fp16, fp32"),
    ({"int8": [0]}, "int8 must be True, False, None or stage numbers"),
])
def test_a_bad_value_is_a_one_line_value_error_naming_the_option(options, words):
    with pytest.raises(ValueError, match=words) as e:
        PipelineConfig(**options)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("options, words", [
    ({"track_by_body": True, "track_by_pose": False}, "cannot go with track_by_pose=False"),
    ({"still": True, "confirm_hits": 3}, "confirm_hits must be 1"),
    ({"backend": "torch", "int8": True}, "backend torch takes no option int8=True"),
    ({"backend": "onnxruntime", "precision": "fp32"}, "backend onnxruntime takes no option precision"),
    ({"backend": "tensorrt", "spinning": True}, "backend tensorrt takes no option spinning"),
])
def test_impossible_combinations_are_refused(options, words):
    with pytest.raises(ValueError, match=words):
        PipelineConfig(**options)


def test_options_that_ask_for_nothing_go_with_any_backend():
    assert PipelineConfig(backend="torch", int8=False).int8 is False   # torch runs the float networks anyway
    assert PipelineConfig(backend="tensorrt", threads=2).threads == 2  # the face detector's threads
    assert PipelineConfig(backend="auto", int8=True, precision="fp32", device="cuda").precision == "fp32"


def test_backend_options_go_to_the_backends_that_take_them():
    assert PipelineConfig(backend="onnxruntime", threads=2, int8=(3,)).backend_options() == {"threads": 2,
                                                                                             "int8": (3,)}
    assert PipelineConfig(backend="tensorrt", threads=2, precision="fp32").backend_options() == {"precision": "fp32"}
    assert PipelineConfig(backend="auto", threads=2).backend_options() == {"threads": 2}
    assert PipelineConfig().backend_options() == {}


def test_the_backends_refuse_an_unknown_option_naming_it_and_the_backend(random_model_dir):
    info = read_manifest(random_model_dir)
    with pytest.raises(BackendError, match="unknown backend option 'thread' \\(for backend onnxruntime\\)"):
        create_regressors(info, "onnxruntime", thread=1)
    with pytest.raises(BackendError, match="backend torch takes no option precision='fp16'"):
        create_regressors(info, "torch", precision="fp16")
    assert backend_option_problem("auto", "precision", "fp16") is None
    assert backend_option_problem("torch", "int8", None) is None


# --------------------------------------------------------------------------- the model's defaults

def test_the_shipped_upper_body_model_is_tracked_by_pose_and_checked(flic_weights):
    cfg = PipelineConfig(flic_weights).resolved(read_manifest(flic_weights))
    assert (cfg.track_by_pose, cfg.track_by_body, cfg.verify, cfg.full_frame_fallback) == (True, False, True, False)
    assert (cfg.confirm_hits, cfg.stages) == (3, 3)


def test_an_untrained_model_gets_the_plain_tracker(random_model_dir):
    cfg = PipelineConfig(random_model_dir).resolved(read_manifest(random_model_dir))
    assert (cfg.track_by_pose, cfg.track_by_body, cfg.verify) == (False, False, False)


def test_the_full_body_model_falls_back_to_the_whole_frame(lsp_weights):
    cfg = PipelineConfig(lsp_weights).resolved(read_manifest(lsp_weights))
    assert cfg.full_frame_fallback is True and cfg.track_by_body is False


def test_the_body_model_is_tracked_by_body_unless_tracking_by_pose_is_off(body_weights):
    info = read_manifest(body_weights)
    on = PipelineConfig(body_weights).resolved(info)
    assert (on.track_by_body, on.track_by_pose, on.verify, on.full_frame_fallback) == (True, True, True, False)
    off = PipelineConfig(body_weights, track_by_pose=False).resolved(info)
    assert (off.track_by_body, off.track_by_pose) == (False, False)


def test_still_image_mode_confirms_on_the_first_detection(flic_weights):
    assert PipelineConfig(flic_weights, still=True).resolved(read_manifest(flic_weights)).confirm_hits == 1


def test_what_the_model_cannot_do_is_refused_when_resolved(flic_weights):
    info = read_manifest(flic_weights)
    with pytest.raises(ValueError, match="tracking by body needs a psi v2 model"):
        PipelineConfig(flic_weights, track_by_body=True).resolved(info)
    with pytest.raises(ValueError, match="stages must be in 1..3"):
        PipelineConfig(flic_weights, stages=4).resolved(info)


def test_only_options_outside_the_live_ones_need_a_new_pipeline():
    cfg = PipelineConfig()
    assert set(LIVE_OPTIONS) >= {"stages", "smooth", "max_persons", "detect_every", "recheck_every"}
    assert not cfg.replace(stages=1, smooth=False, max_persons=1, detect_every=2, recheck_every=3,
                           flip="first").needs_rebuild(cfg)
    assert cfg.replace(rotate=True).needs_rebuild(cfg)
    assert cfg.replace(track_by_body=False).needs_rebuild(cfg)


# --------------------------------------------------------------------------- the factory

@pytest.fixture(scope="module")
def walking_frame():
    return walking_frames(require_data("videos", "walking.mp4"), 1, (1280, 720))[0]


def test_the_factory_builds_a_pipeline_that_finds_the_walker_on_a_real_frame(flic_weights, walking_frame):
    config = PipelineConfig(flic_weights, "onnxruntime", threads=1, still=True)
    with PosePipeline(config) as pipe:
        assert pipe.config == config.resolved(pipe.info)
        assert pipe.backend_name == "onnxruntime" and pipe.tracker.confirm_hits == 1
        persons = pipe.process(walking_frame).persons
    faces = np.array([p.face for p in persons if p.face is not None])
    assert len(faces) >= 1 and ((faces[:, 0] > 600) & (faces[:, 0] < 900)).any(), faces   # the walker


def test_a_running_pipeline_takes_live_options_and_refuses_the_others(random_model_dir):
    with PosePipeline(PipelineConfig(random_model_dir, "onnxruntime", threads=1)) as pipe:
        pipe.apply(pipe.config.replace(stages=1, max_persons=2, detect_every=2, smooth=False, flip="first"))
        assert (pipe.stages, pipe.max_persons, pipe.detect_every, pipe.smooth, pipe.cascade.flip) == (
            1, 2, 2, False, "first")
        assert pipe.config.stages == 1 and pipe.config.max_persons == 2
        with pytest.raises(ValueError, match="rotate cannot change in a running pipeline"):
            pipe.apply(PipelineConfig(random_model_dir, "onnxruntime", threads=1, rotate=True))


def test_the_pipeline_takes_only_a_config():
    with pytest.raises(TypeError, match="PipelineConfig"):
        PosePipeline("weights/flic")


def test_pose_builds_the_video_commands_pipeline_in_still_image_mode(flic_weights):
    from deeppose import Pose

    with Pose(flic_weights, backend="onnxruntime", threads=1) as pose:
        video = PipelineConfig.from_args(video_args("--weights", str(flic_weights), "--backend", "onnxruntime",
                                                    "--threads", "1"))
        assert pose.config == video.replace(smooth=False, still=True, full_frame_fallback=False,
                                            confirm_hits=None).resolved(pose.info)


def test_pose_refuses_an_unknown_option_before_loading_anything(flic_weights):
    from deeppose import Pose

    with pytest.raises(TypeError, match="threadz"):
        Pose(flic_weights, threadz=1)
    # still images, seen once: smoothing and still-image mode are not Pose's to choose
    with pytest.raises(TypeError, match="does not take smooth"):
        Pose(flic_weights, smooth=True)
