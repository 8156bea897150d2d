import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_limits.conv import (
    CONFIGS,
    block_kernels,
    blocks_per_stage,
    conv_resnet,
    init_conv_params,
    param_count,
    torch_bias_init,
    torch_kernel_init,
)
from resnet_limits.errors import UsageError


def _expected_count(blocks, w=64, classes=10):
    """Parameters of the authors' model from the architecture's formula: a 3x3 stem, per stage
    an entry block (3x3 A from c_in, 3x3 Delta, 1x1 F where the shape changes) and n - 1
    blocks of two c x c 3x3 kernels, a linear head with bias; no biases in convolutions."""
    total, c_in = 9 * 3 * w, w
    for s, n in enumerate(blocks):
        c = w * 2**s
        total += 9 * c_in * c + 9 * c * c + (c_in * c if c_in != c else 0)
        total += (n - 1) * 2 * 9 * c * c
        c_in = c
    return total + c_in * classes + classes


def test_the_16_configurations_of_spec_6():
    assert sorted(CONFIGS) == [8, 11, 12, 14, 16, 18, 20, 24, 28, 33, 42, 50, 65, 80, 100, 121]
    for L, blocks in CONFIGS.items():
        assert sum(blocks) == L and len(blocks) == 4 and min(blocks) >= 2
    for bad in (7, 9, 122, 0):
        with pytest.raises(UsageError, match="not a convolutional configuration; choose from 8, 11"):
            blocks_per_stage(bad)


def test_parameter_counts_equal_the_authors_model_at_every_depth():
    for L, blocks in CONFIGS.items():
        assert param_count(L) == _expected_count(blocks), L
    # L = 8 is ResNet-18 without batch norm: the CIFAR ResNet-18 of kuangliu/pytorch-cifar has
    # 11,173,962 parameters, of which 2 x 4,800 are batch-norm scales and shifts (one BN per
    # convolution: 64 + 4 x 64 + (4 + 1) x (128 + 256 + 512) channels).
    bn = 2 * (64 + 4 * 64 + 5 * (128 + 256 + 512))
    assert param_count(8) == 11_173_962 - bn == 11_164_362
    assert param_count(121, width=8) == _expected_count(CONFIGS[121], w=8)


@pytest.fixture(scope="module")
def params11():
    """L = 11, (2, 3, 4, 2): every stage has an entry block and stacked 'rest' blocks; width 8."""
    return init_conv_params(jax.random.PRNGKey(0), 11, width=8)


def test_output_shapes():
    x = jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32)
    for L in CONFIGS:
        model = conv_resnet(L, 4)
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
        assert jax.eval_shape(model.apply, shapes, x).shape == (3, 10)


def test_block_kernels_in_network_order(params11):
    ks = block_kernels(params11)
    assert len(ks) == 11
    assert [k["stage"] for k in ks] == [1] * 2 + [2] * 3 + [3] * 4 + [4] * 2
    for k in ks:
        c = 8 * 2 ** (k["stage"] - 1)
        assert k["Delta"].shape == (3, 3, c, c) and k["A"].shape[-1] == c
        h = 32 // 2 ** (k["stage"] - 1)
        assert k["output_hw"] == (h, h)
        assert k["input_hw"] == ((h * k["stride"],) * 2)
    entries = [k for k in ks if k["F"] is not None]
    assert [k["stage"] for k in entries] == [2, 3, 4]
    assert all(k["stride"] == 2 and k["F"].shape == (1, 1, k["A"].shape[2], k["A"].shape[3]) for k in entries)
    # a stage's blocks after its entry are the stacked 'rest' parameters, in order
    rest = params11["stage3"]["rest_Delta"]
    for i in range(3):
        np.testing.assert_array_equal(ks[6 + i]["Delta"], rest[i])


def test_pytorch_default_initialisation(params11):
    ks = block_kernels(params11)
    for w in (params11["stem"], ks[0]["A"], ks[2]["A"], ks[2]["F"], ks[-1]["Delta"],
              params11["head"]["kernel"]):
        w = np.asarray(w)
        bound = 1 / math.sqrt(math.prod(w.shape[:-1]))  # fan_in = kh kw c_in (in for the head)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
        assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.1  # uniform on [-bound, bound]
    b = np.asarray(params11["head"]["bias"])
    assert np.abs(b).max() <= 1 / math.sqrt(8 * 8) and np.abs(b).max() > 0
    for i, j in ((0, 1), (3, 4), (6, 7)):  # entry vs first stacked block, stacked vs stacked
        assert not np.allclose(ks[i]["Delta"], ks[j]["Delta"])
    # the modules' own initialisers (flax ``model.init``) follow the same law
    w = np.asarray(torch_kernel_init(jax.random.PRNGKey(0), (3, 3, 16, 32)))
    assert np.abs(w).max() <= 1 / math.sqrt(144) and abs(w.std() * math.sqrt(3 * 144) - 1) < 0.05
    b = np.asarray(torch_bias_init(64)(jax.random.PRNGKey(0), (1000,)))
    assert np.abs(b).max() <= 1 / 8 and abs(b.std() * math.sqrt(3 * 64) - 1) < 0.1


def _conv_ref(x, k, stride, pad):
    """Cross-correlation of one HWC image with an HWIO kernel, zero padding ``pad`` per side."""
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = k.shape[:2]
    ho = (xp.shape[0] - kh) // stride + 1
    wo = (xp.shape[1] - kw) // stride + 1
    out = np.zeros((ho, wo, k.shape[3]))
    for a in range(kh):
        for b in range(kw):
            out += xp[a:a + stride * ho:stride, b:b + stride * wo:stride] @ k[a, b]
    return out


def test_forward_equals_a_numpy_reference_of_sp_eq_9(params11):
    L, width = 11, 8
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params11)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (2, 32, 32, 3)))
    got = np.asarray(jax.jit(conv_resnet(L, width).apply)({"params": params11}, x))
    relu = lambda v: np.maximum(v, 0.0)
    for i in range(2):
        h = relu(_conv_ref(x[i], params["stem"], 1, 1))
        for k in block_kernels(params):
            out = _conv_ref(relu(_conv_ref(h, k["A"], k["stride"], 1)), k["Delta"], 1, 1)
            short = h if k["F"] is None else _conv_ref(h, k["F"], k["stride"], 0)
            h = relu(out + short)
        assert h.shape == (4, 4, 8 * width)
        logits = h.mean(axis=(0, 1)) @ params["head"]["kernel"] + params["head"]["bias"]
        np.testing.assert_allclose(got[i], logits, rtol=1e-4, atol=1e-5)
    # the scan over stacked blocks computes the same function as the Python loop
    scanned = np.asarray(jax.jit(conv_resnet(L, width, unroll=False).apply)({"params": params11}, x))
    np.testing.assert_allclose(scanned, got, rtol=1e-5, atol=1e-6)


def _torch_resnet(torch, blocks, width):
    """The authors' PyTorch network (their cifar_model.py: kuangliu-style BasicBlock without
    batch norm), rebuilt here with a width argument; torch's default initialisation."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c_in, c, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
            self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
            self.shortcut = (nn.Conv2d(c_in, c, 1, stride, bias=False) if stride != 1 or c_in != c
                             else nn.Identity())

        def forward(self, x):
            return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.shortcut(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            layers, c_in = [], width
            for s, n in enumerate(blocks):
                c = width * 2**s
                layers += [Block(c_in if i == 0 else c, c, (1 if s == 0 else 2) if i == 0 else 1) for i in range(n)]
                c_in = c
            self.blocks = nn.Sequential(*layers)
            self.linear = nn.Linear(c_in, 10)

        def forward(self, x):
            h = self.blocks(torch.relu(self.conv1(x)))
            return self.linear(torch.nn.functional.avg_pool2d(h, 4).flatten(1))

    return Net()


def test_same_parameters_and_function_as_the_authors_pytorch_model():
    torch = pytest.importorskip("torch")
    with torch.device("meta"):  # shapes only: no memory for the 121-block network
        for L, blocks in CONFIGS.items():
            assert sum(p.numel() for p in _torch_resnet(torch, blocks, 64).parameters()) == param_count(L), L
    torch.manual_seed(0)
    net = _torch_resnet(torch, CONFIGS[11], 8)
    hwio = lambda w: w.detach().numpy().transpose(2, 3, 1, 0)
    convs = [(b.conv1.weight, b.conv2.weight, getattr(b.shortcut, "weight", None)) for b in net.blocks]
    params, k = {"stem": hwio(net.conv1.weight)}, 0
    for s, n in enumerate(CONFIGS[11]):
        A, D, F = convs[k]
        stage = {"entry_A": hwio(A), "entry_Delta": hwio(D)} | ({"entry_F": hwio(F)} if F is not None else {})
        stage["rest_A"] = np.stack([hwio(convs[k + i][0]) for i in range(1, n)])
        stage["rest_Delta"] = np.stack([hwio(convs[k + i][1]) for i in range(1, n)])
        params[f"stage{s + 1}"], k = stage, k + n
    params["head"] = {"kernel": net.linear.weight.detach().numpy().T, "bias": net.linear.bias.detach().numpy()}
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (2, 32, 32, 3)))
    want = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).detach().numpy()
    got = jax.jit(conv_resnet(11, 8).apply)({"params": params}, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------ operator norms on the half spectrum --------

from resnet_limits.scaling import conv_singular_values, conv_spectral_norm, conv_spectral_norms  # noqa: E402
from resnet_limits.scaling.conv_norms import half_spectrum_frequencies  # noqa: E402


def _explicit_norm(K_hwio, n1, n2):
    """Largest singular value of the circular cross-correlation y[i,j,o] = sum K[p,q,c,o]
    x[i+p,j+q,c] as an explicit (n1 n2 c_out) x (n1 n2 c_in) matrix, built column by column."""
    kh, kw, cin, cout = K_hwio.shape
    cols = []
    for x in np.eye(n1 * n2 * cin).reshape(-1, n1, n2, cin):
        y = sum(np.roll(x, (-p, -q), axis=(0, 1)) @ K_hwio[p, q] for p in range(kh) for q in range(kw))
        cols.append(y.ravel())
    return np.linalg.svd(np.stack(cols, 1), compute_uv=False).max()


@pytest.mark.parametrize("hw", [(4, 4), (5, 5), (4, 5), (5, 6), (3, 3), (8, 8)])
def test_half_spectrum_holds_one_frequency_of_each_conjugate_pair(hw):
    n1, n2 = hw
    u, v = half_spectrum_frequencies(hw)
    assert (v <= n2 // 2).all()  # inside the real FFT's columns
    reps = set(zip(u.tolist(), v.tolist()))
    assert len(reps) == len(u)
    self_conj = sum(1 for a in range(n1) for b in range(n2) if ((-a) % n1, (-b) % n2) == (a, b))
    assert len(u) == (n1 * n2 + self_conj) // 2
    for a in range(n1):  # every frequency is a representative or the conjugate of exactly one
        for b in range(n2):
            hits = {(a, b), ((-a) % n1, (-b) % n2)} & reps
            assert len(hits) == 1, (a, b)


@pytest.mark.parametrize("hw", [(4, 4), (5, 5), (4, 5), (6, 3)])
def test_half_spectrum_singular_values_are_the_full_spectrums(hw):
    """A real kernel's Fourier blocks at (u, v) and (-u, -v) are conjugate (same singular
    values); the half spectrum's are the full one's at the representatives, so the norms agree."""
    n1, n2 = hw
    K = np.random.default_rng(sum(hw)).normal(size=(3, 3, 3, 2))
    with jax.enable_x64(True):
        full = np.asarray(conv_singular_values(K, hw))
        half = np.asarray(conv_singular_values(K, hw, half_spectrum=True))
        norm = float(conv_spectral_norm(K, hw))
        oihw = float(conv_spectral_norm(K.transpose(3, 2, 0, 1), hw, layout="OIHW"))
    neg = full[(-np.arange(n1)) % n1][:, (-np.arange(n2)) % n2]
    np.testing.assert_allclose(neg, full, rtol=1e-12)
    u, v = half_spectrum_frequencies(hw)
    assert half.shape == (len(u), 2)
    np.testing.assert_allclose(half, full[u, v], rtol=1e-12)
    assert norm == pytest.approx(full.max(), rel=1e-14) and oihw == pytest.approx(norm, rel=1e-14)
    assert norm == pytest.approx(_explicit_norm(K, n1, n2), rel=1e-10)


def test_batched_float32_norms_match_the_explicit_operator():
    """conv_spectral_norms (float32, half spectrum, one batched SVD) against the float64 SVD of
    the explicit matrix, on kernels of the network's kinds: square, widening, a 1x1, zero."""
    rng = np.random.default_rng(7)
    for shape, hw in (((3, 3, 8, 8), (6, 6)), ((3, 3, 4, 8), (5, 4)), ((1, 1, 6, 3), (4, 4))):
        Ks = rng.uniform(-1, 1, size=(3, *shape)) / math.sqrt(math.prod(shape[:3]))
        Ks[2] = 0.0
        got = np.asarray(conv_spectral_norms(Ks.astype(np.float32), hw))
        want = [_explicit_norm(K, *hw) for K in Ks]
        np.testing.assert_allclose(got[:2], want[:2], rtol=2e-6)
        assert got[2] == 0.0
