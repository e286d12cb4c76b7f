"""psi presets: output shapes, feature-map sizes of the paper's layout, parameter budgets."""
import pytest
import torch

from deeppose.engine.network import PRESETS, build_network


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("k", [11, 14])
def test_output_shape(preset, k):
    net = build_network(k, preset).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 220, 220))
    assert out.shape == (2, 2 * k)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_feature_maps_follow_the_paper_55_27_13_6(preset):
    net = build_network(11, preset).eval()
    sizes = []
    x = torch.zeros(1, 3, 220, 220)
    with torch.no_grad():
        for layer in net.features:
            x = layer(x)
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
                sizes.append(x.shape[-1])
    assert sizes == [55, 27, 27, 13, 13, 13, 13, 6]


def test_paper_preset_channels_and_compact_budget():
    paper = build_network(11, "paper")
    convs = [m.out_channels for m in paper.features if isinstance(m, torch.nn.Conv2d)]
    assert convs == [96, 256, 384, 384, 256]
    assert any(isinstance(m, torch.nn.LocalResponseNorm) for m in paper.features)
    assert [m.out_features for m in paper.head if isinstance(m, torch.nn.Linear)] == [4096, 4096, 22]
    compact = build_network(11, "compact")
    n = sum(p.numel() for p in compact.parameters())
    assert n < 5e6  # 3 stages in fp16 stay far below the 60 MB budget


def test_unknown_preset():
    with pytest.raises(KeyError, match="unknown network preset"):
        build_network(11, "huge")


@pytest.mark.parametrize("size,side", [(220, 6), (128, 3), (96, 2), (60, 1)])
def test_smaller_inputs_shrink_the_last_feature_map_and_the_first_f_layer(size, side):
    """Refinement stages may take smaller crops: the feature maps shrink with the input, the
    first F layer takes C x side x side inputs, and the checkpoint config records the size."""
    from deeppose.engine.network import feature_side

    net = build_network(11, "compact", size).eval()
    assert feature_side(size, 7) == side
    with torch.no_grad():
        assert net.features(torch.zeros(1, 3, size, size)).shape[-1] == side
        assert net(torch.zeros(2, 3, size, size)).shape == (2, 22)
    assert net.head[1].in_features == 128 * side * side
    assert net.config()["input_size"] == size


def test_too_small_input_is_refused():
    with pytest.raises(ValueError, match="too small"):
        build_network(11, "compact", 40)
