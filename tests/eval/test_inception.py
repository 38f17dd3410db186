"""The FID InceptionV3: shapes, preprocessing, weight files and the pytorch-fid converter.

Random weights only (nothing downloads). One forward compile per input shape, on batch 1 or 2;
shapes of the 299x299 network come from ``jax.eval_shape``.
"""

import jax
import numpy as np
import pytest

from genjax.eval import inception as inc


@pytest.fixture(scope="module")
def params():
    return inc.init_params(seed=0)


def _leaves_equal(a, b):
    fa, fb = inc._flat(a), inc._flat(b)
    assert list(fa) == list(fb)
    for key in fa:
        np.testing.assert_array_equal(np.asarray(fa[key]), np.asarray(fb[key]), err_msg=key)


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


def test_convert_command_reads_a_pth_file(tmp_path, params):
    torch = pytest.importorskip("torch")
    pth, out = str(tmp_path / "fid.pth"), str(tmp_path / "fid.msgpack")
    torch.save({k: torch.from_numpy(np.array(v))
                for k, v in inc.to_torch_state_dict(params).items()}, pth)
    inc.main(["--convert", pth, "--out", out])
    _leaves_equal(inc.load_inception_params(out), params)


# A PyTorch transcription of pytorch-fid's FID blocks (torchvision's BasicConv2d layout), used to
# check that converted weights give the same features as the network they came from.

def _torch_fid_inception(num_classes):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Conv(nn.Module):
        def __init__(self, cin, cout, k=1, s=1, p=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, s, p, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=1e-3)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avg(x):
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    class A(nn.Module):
        def __init__(self, cin, pf):
            super().__init__()
            self.branch1x1, self.branch5x5_1 = Conv(cin, 64), Conv(cin, 48)
            self.branch5x5_2, self.branch3x3dbl_1 = Conv(48, 64, 5, p=2), Conv(cin, 64)
            self.branch3x3dbl_2 = Conv(64, 96, 3, p=1)
            self.branch3x3dbl_3, self.branch_pool = Conv(96, 96, 3, p=1), Conv(cin, pf)

        def forward(self, x):
            return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                              self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                              self.branch_pool(avg(x))], 1)

    class B(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3, self.branch3x3dbl_1 = Conv(cin, 384, 3, 2), Conv(cin, 64)
            self.branch3x3dbl_2, self.branch3x3dbl_3 = Conv(64, 96, 3, p=1), Conv(96, 96, 3, 2)

        def forward(self, x):
            return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(
                self.branch3x3dbl_1(x))), F.max_pool2d(x, 3, 2)], 1)

    class C(nn.Module):
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1, self.branch7x7_1 = Conv(cin, 192), Conv(cin, c7)
            self.branch7x7_2 = Conv(c7, c7, (1, 7), p=(0, 3))
            self.branch7x7_3 = Conv(c7, 192, (7, 1), p=(3, 0))
            self.branch7x7dbl_1 = Conv(cin, c7)
            self.branch7x7dbl_2 = Conv(c7, c7, (7, 1), p=(3, 0))
            self.branch7x7dbl_3 = Conv(c7, c7, (1, 7), p=(0, 3))
            self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), p=(3, 0))
            self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), p=(0, 3))
            self.branch_pool = Conv(cin, 192)

        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = self.branch7x7dbl_1(x)
            for i in range(2, 6):
                bd = getattr(self, f"branch7x7dbl_{i}")(bd)
            return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(avg(x))], 1)

    class D(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1, self.branch3x3_2 = Conv(cin, 192), Conv(192, 320, 3, 2)
            self.branch7x7x3_1 = Conv(cin, 192)
            self.branch7x7x3_2 = Conv(192, 192, (1, 7), p=(0, 3))
            self.branch7x7x3_3 = Conv(192, 192, (7, 1), p=(3, 0))
            self.branch7x7x3_4 = Conv(192, 192, 3, 2)

        def forward(self, x):
            b7 = self.branch7x7x3_1(x)
            for i in range(2, 5):
                b7 = getattr(self, f"branch7x7x3_{i}")(b7)
            return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                              F.max_pool2d(x, 3, 2)], 1)

    class E(nn.Module):
        def __init__(self, cin, use_max):
            super().__init__()
            self.use_max = use_max
            self.branch1x1, self.branch3x3_1 = Conv(cin, 320), Conv(cin, 384)
            self.branch3x3_2a = Conv(384, 384, (1, 3), p=(0, 1))
            self.branch3x3_2b = Conv(384, 384, (3, 1), p=(1, 0))
            self.branch3x3dbl_1 = Conv(cin, 448)
            self.branch3x3dbl_2 = Conv(448, 384, 3, p=1)
            self.branch3x3dbl_3a = Conv(384, 384, (1, 3), p=(0, 1))
            self.branch3x3dbl_3b = Conv(384, 384, (3, 1), p=(1, 0))
            self.branch_pool = Conv(cin, 192)

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            pooled = F.max_pool2d(x, 3, 1, 1) if self.use_max else avg(x)
            return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                              self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd),
                              self.branch_pool(pooled)], 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = Conv(3, 32, 3, 2), Conv(32, 32, 3)
            self.Conv2d_2b_3x3, self.Conv2d_3b_1x1 = Conv(32, 64, 3, p=1), Conv(64, 80)
            self.Conv2d_4a_3x3 = Conv(80, 192, 3)
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
            self.Mixed_6a = B(288)
            self.Mixed_6b, self.Mixed_6c = C(768, 128), C(768, 160)
            self.Mixed_6d, self.Mixed_6e = C(768, 160), C(768, 192)
            self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = D(768), E(1280, False), E(2048, True)
            self.fc = nn.Linear(2048, num_classes)

        def forward(self, x):        # x in [0, 1], NCHW, as pytorch-fid's InceptionV3 wrapper
            x = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2))), 3, 2)
            for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
                x = getattr(self, f"Mixed_{name}")(x)
            pool3 = x.mean((2, 3))
            return pool3, self.fc(pool3)

    return Net().eval()


@pytest.mark.slow
def test_converted_weights_reproduce_the_pytorch_network(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _torch_fid_inception(1008)
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
