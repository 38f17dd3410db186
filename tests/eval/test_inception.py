"""The FID InceptionV3: shapes, preprocessing, weight files and the pytorch-fid converter.

Random weights only (nothing downloads). One forward compile per input shape, on batch 1 or 2;
shapes of the 299x299 network come from ``jax.eval_shape``.
"""

import jax
import numpy as np
import pytest

from genjax.eval import inception as inc
from tests.eval.fixtures import make_inception_reference as reference


@pytest.fixture(scope="module")
def params():
    return inc.init_params(seed=0)


def _leaves_equal(a, b):
    fa, fb = inc._flat(a), inc._flat(b)
    assert list(fa) == list(fb)
    for key in fa:
        np.testing.assert_array_equal(np.asarray(fa[key]), np.asarray(fb[key]), err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [1008, 1000])
def test_output_shapes_at_299(num_classes):
    variables = inc.variable_shapes(num_classes)
    images = jax.ShapeDtypeStruct((2, 299, 299, 3), np.uint8)
    pool3, logits = jax.eval_shape(inc.apply, variables, images)
    assert pool3.shape == (2, 2048) and logits.shape == (2, num_classes)
    flat = inc._flat(variables)
    assert flat["params/fc/kernel"].shape == (2048, num_classes)
    assert flat["params/Mixed_7c/branch_pool/conv/kernel"].shape == (1, 1, 2048, 192)
    assert flat["batch_stats/Conv2d_1a_3x3/bn/mean"].shape == (32,)


@pytest.mark.slow
def test_small_gray_and_colour_images_are_resized(params):
    gray = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), np.uint8)
    rgb = np.repeat(gray, 3, axis=-1)
    # A gray image is the colour image with three equal channels, through the same resize.
    np.testing.assert_array_equal(inc.preprocess(gray), inc.preprocess(rgb))
    rgb[1, ..., 0] = 255 - rgb[1, ..., 0]
    pool3, logits = inc.apply(params, rgb)
    assert pool3.shape == (2, 2048) and logits.shape == (2, 1008)
    assert np.isfinite(np.asarray(logits)).all() and (np.asarray(pool3) >= 0).all()
    assert np.abs(np.asarray(pool3[0] - pool3[1])).max() > 0       # the two inputs differ
    feats, probs = inc.features_and_probs(np.concatenate([rgb, rgb, rgb[:1]]), params,
                                          batch_size=2)
    assert feats.shape == (5, 2048) and probs.shape == (5, 1008)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(feats[:2], pool3, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[4], pool3[0], rtol=1e-5, atol=1e-6)  # padded last batch


def test_preprocess_scales_to_minus_one_one_and_rejects_bad_shapes():
    x = np.zeros((1, 32, 32, 3), np.uint8)
    x[..., 1] = 255
    y = np.asarray(inc.preprocess(x))
    assert y.shape == (1, 299, 299, 3)
    np.testing.assert_allclose(y[..., 0], -1.0)
    np.testing.assert_allclose(y[..., 1], 1.0, rtol=1e-6)
    np.testing.assert_allclose(inc.preprocess(x / 255.0), y, atol=1e-6)   # float in [0, 1]
    with pytest.raises(ValueError, match="1 or 3"):
        inc.preprocess(np.zeros((1, 8, 8, 2), np.uint8))


@pytest.mark.parametrize("size", [32, 400])
def test_resize_matches_torch_bilinear_without_antialias(size):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).random((1, size, size + 3, 3), np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2),
                                          size=(299, 299), mode="bilinear",
                                          align_corners=False)
    np.testing.assert_allclose(np.asarray(inc.preprocess(x)),
                               2 * ref.permute(0, 2, 3, 1).numpy() - 1, atol=1e-5)


def test_weight_file_round_trip_and_clear_errors(tmp_path, params):
    path = str(tmp_path / "w.msgpack")
    inc.save_inception_params(path, params)
    _leaves_equal(inc.load_inception_params(path), params)

    small = inc.init_params(seed=1, num_classes=1000)
    inc.save_inception_params(path, small)
    assert inc.load_inception_params(path)["params"]["fc"]["kernel"].shape == (2048, 1000)
    with pytest.raises(inc.InceptionWeightsError, match=r"params/fc/\w+ has shape \(1000"):
        inc.load_inception_params(path, num_classes=1008)

    broken = jax.tree.map(lambda a: a, params)
    broken["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"] = np.zeros((7, 1, 128, 128))
    inc.save_inception_params(path, broken)
    with pytest.raises(inc.InceptionWeightsError,
                       match=r"params/Mixed_6b/branch7x7_2/conv/kernel has shape \(7, 1, 128"):
        inc.load_inception_params(path)
    del broken["batch_stats"]["Mixed_5b"]
    inc.save_inception_params(path, broken)
    with pytest.raises(inc.InceptionWeightsError, match="missing key batch_stats/Mixed_5b/"):
        inc.load_inception_params(path)

    other = tmp_path / "model.pth"
    other.write_bytes(b"PK\x03\x04 not msgpack at all")
    with pytest.raises(inc.InceptionWeightsError, match="not a flax msgpack weights file"):
        inc.load_inception_params(str(other))


def test_converter_maps_pytorch_layout_and_round_trips(params):
    state_dict = inc.to_torch_state_dict(params)
    assert state_dict["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)       # OIHW
    assert state_dict["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert state_dict["fc.weight"].shape == (1008, 2048)
    assert {"Mixed_7c.branch_pool.bn.running_mean", "Mixed_7c.branch_pool.bn.running_var",
            "Mixed_7c.branch_pool.bn.weight", "Mixed_7c.branch_pool.bn.bias"} <= set(state_dict)
    assert len(state_dict) == 94 * 5 + 2                    # 94 conv+BN units and the fc
    kernel = np.asarray(params["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"])
    torch_w = state_dict["Mixed_6b.branch7x7_2.conv.weight"]
    assert torch_w[5, 17, 0, 6] == kernel[0, 6, 17, 5]      # out 5, in 17, row 0, col 6

    # pytorch-fid files also carry BatchNorm counters; the converter drops them.
    state_dict["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0)
    _leaves_equal(inc.from_torch_state_dict(state_dict), params)

    state_dict["Mixed_5b.branch1x1.conv.weight"] = state_dict[
        "Mixed_5b.branch1x1.conv.weight"].transpose(1, 0, 2, 3)
    with pytest.raises(inc.InceptionWeightsError, match="Mixed_5b.branch1x1.conv.weight"):
        inc.from_torch_state_dict(state_dict)
    state_dict.pop("Mixed_5b.branch1x1.conv.weight")
    with pytest.raises(inc.InceptionWeightsError, match="no Mixed_5b.branch1x1.conv.weight"):
        inc.from_torch_state_dict(state_dict)


def test_features_match_stored_pytorch_reference():
    """genjax's InceptionV3 on the converted fixed-seed weights gives the pool3 features and
    logits that PyTorch computed for the same weights and images (stored fixture, no torch)."""
    stored = np.load(reference.PATH)
    images = reference.reference_images()
    np.testing.assert_array_equal(stored["images"], images)
    params = inc.from_torch_state_dict(reference.reference_state_dict())
    pool3, logits = map(np.asarray, inc.apply(params, images))
    for ours, theirs in ((pool3, stored["pool3"]), (logits, stored["logits"])):
        np.testing.assert_allclose(ours, theirs, atol=1e-4 * np.abs(theirs).max(), rtol=0)
    assert np.abs(stored["pool3"][0] - stored["pool3"][1]).max() > 0.1   # inputs are told apart
    # power: the identity batch norm of init_params is not the reference network
    other = np.asarray(inc.apply(inc.init_params(seed=0), images)[0])
    assert np.abs(other - stored["pool3"]).max() > 1e-2 * np.abs(stored["pool3"]).max()


def test_convert_command_reads_a_pth_file(tmp_path, params):
    torch = pytest.importorskip("torch")
    pth, out = str(tmp_path / "fid.pth"), str(tmp_path / "fid.msgpack")
    torch.save({k: torch.from_numpy(np.array(v))
                for k, v in inc.to_torch_state_dict(params).items()}, pth)
    inc.main(["--convert", pth, "--out", out])
    _leaves_equal(inc.load_inception_params(out), params)


@pytest.mark.slow
def test_converted_weights_reproduce_the_pytorch_network(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = reference.torch_fid_inception(1008)
    with torch.no_grad():                 # non-trivial BatchNorm statistics and affine terms
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.1, 0.1)
    pth, out = str(tmp_path / "fid.pth"), str(tmp_path / "fid.msgpack")
    torch.save(net.state_dict(), pth)
    inc.main(["--convert", pth, "--out", out])
    params = inc.load_inception_params(out)
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), np.uint8)
    with torch.no_grad():
        ref_pool, ref_logits = net(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    pool3, logits = inc.apply(params, images)
    scale = np.abs(ref_pool.numpy()).max()
    np.testing.assert_allclose(np.asarray(pool3), ref_pool.numpy(), atol=1e-4 * scale)
    np.testing.assert_allclose(np.asarray(logits), ref_logits.numpy(),
                               atol=1e-4 * np.abs(ref_logits.numpy()).max())
