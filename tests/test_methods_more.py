"""XGrad-CAM, HiResCAM, element-wise Grad-CAM, Eigen-Grad-CAM, Eigen-CAM, KPCA-CAM, FEM,
Random-CAM and eigen smoothing: each against a hand computation (numpy loops, or a principal
component found another way) on a tiny fixed-weight model, through the registry and the
pipeline's compute_maps; the PCA sign rule; Random-CAM's determinism; gradient-free methods
computing no gradient."""

import numpy as np
import pytest
from conftest import conv3x3_same, gap_model, tiny_model

from gradcam_cli.errors import LayerError
from gradcam_cli.explain.compute import compute_maps
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods import METHODS
from gradcam_cli.explain.methods.eigencam import eigencam_map
from gradcam_cli.explain.methods.fem import fem_contributions
from gradcam_cli.explain.methods.kpcacam import kpcacam_map
from gradcam_cli.explain.methods.pca import eigen_smooth, first_principal_component
from gradcam_cli.explain.methods.randomcam import randomcam_weights
from gradcam_cli.models import loading

GRADIENT_METHODS = ("xgradcam", "hirescam", "gradcam-elementwise", "eigengradcam")
GRADIENT_FREE = ("eigencam", "kpcacam", "fem", "randomcam")
SIGNED = ("xgradcam", "hirescam", "eigengradcam", "eigencam", "kpcacam", "randomcam")  # maps of both signs


def _loaded(model, size):
    return loading.describe(model, model.name, (size, size), "none", None)


@pytest.fixture(scope="module")
def tiny(keras):
    """The tiny model (8x8x3 -> 'target' 8x8x4 -> 1x1 conv -> Flatten -> Dense(3)), three images,
    an engine for the batch and one for single images."""
    model = tiny_model(keras)
    images = np.random.default_rng(21).uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    loaded = _loaded(model, 8)
    return model, images, loaded, Engine(loaded, ("target",), batch_size=3), Engine(loaded, ("target",), batch_size=1)


def tiny_by_hand(model, image, cls):
    """The tiny model's 'target' activations and d logit_c / d target, by hand in float64."""
    k1, b1, k2, b2, k3, _ = [w.astype(np.float64) for w in model.get_weights()]
    a = np.maximum(conv3x3_same(image.astype(np.float64), k1, b1), 0)
    b_pre = a @ k2[0, 0] + b2
    d_b = k3[:, cls].reshape(b_pre.shape) * (b_pre > 0)  # back through the ReLU of 'post'
    return a, d_b @ k2[0, 0].T


# --- hand computations, one image (h, w, K) at a time, float64 ------------------------------

def hand_xgradcam(a, g):
    h, w, channels = a.shape
    out = np.zeros((h, w))
    for k in range(channels):
        total = sum(a[i, j, k] for i in range(h) for j in range(w))
        weight = sum(a[i, j, k] * g[i, j, k] for i in range(h) for j in range(w)) / (total + 1e-7)
        out += weight * a[:, :, k]
    return out


def hand_hirescam(a, g):
    h, w, channels = a.shape
    return np.array([[sum(g[i, j, k] * a[i, j, k] for k in range(channels)) for j in range(w)] for i in range(h)])


def hand_elementwise(a, g):
    h, w, channels = a.shape
    return np.array([[sum(max(g[i, j, k] * a[i, j, k], 0.0) for k in range(channels)) for j in range(w)]
                     for i in range(h)])


def hand_pca(x):
    """The first principal component another way: the covariance's top eigenvector (np.linalg.eigh,
    not an SVD of the data), the centred samples projected on it, signed by np.corrcoef with
    the channel mean."""
    h, w, channels = x.shape
    samples = x.reshape(h * w, channels)
    centred = samples - samples.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    assert values[-1] > 1.01 * values[-2]  # a unique first axis: the map is well defined
    projection = centred @ vectors[:, -1]
    if np.corrcoef(projection, samples.mean(axis=1))[0, 1] < 0:
        projection = -projection
    return projection.reshape(h, w)


def hand_kernel_pca(x, kernel="rbf", coef0=1.0):
    """sklearn's KernelPCA(n_components=1, gamma=None).fit_transform, another way: the kernel
    matrix by loops, centred by H G H, its top eigenpair by np.linalg.eig (the general, not the
    symmetric, solver), sqrt(lambda) u, signed by np.corrcoef with the channel mean."""
    h, w, channels = x.shape
    samples = x.reshape(h * w, channels)
    centred = samples - samples.mean(axis=0)
    n, gamma = len(centred), 1.0 / channels
    gram = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if kernel == "rbf":
                gram[i, j] = np.exp(-gamma * sum((centred[i, c] - centred[j, c]) ** 2 for c in range(channels)))
            else:
                gram[i, j] = np.tanh(gamma * sum(centred[i, c] * centred[j, c] for c in range(channels)) + coef0)
    centring = np.eye(n) - np.full((n, n), 1.0 / n)
    values, vectors = np.linalg.eig(centring @ gram @ centring)
    values, vectors = values.real, vectors.real
    order = np.argsort(values)
    assert values[order[-1]] > 1.01 * values[order[-2]]
    top = vectors[:, order[-1]] / np.linalg.norm(vectors[:, order[-1]])
    projection = top * np.sqrt(values[order[-1]])
    if np.corrcoef(projection, samples.mean(axis=1))[0, 1] < 0:
        projection = -projection
    return projection.reshape(h, w)


def hand_fem(a, k_sigma=2.0):
    h, w, channels = a.shape
    out = np.zeros((h, w))
    for k in range(channels):
        values = [a[i, j, k] for i in range(h) for j in range(w)]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        for i in range(h):
            for j in range(w):
                if a[i, j, k] > mean + k_sigma * std:
                    out[i, j] += mean
    return out


def hand_randomcam(a):
    weights = np.random.default_rng((0, a.shape[2])).uniform(-1, 1, a.shape[2])
    return sum(weights[k] * a[:, :, k] for k in range(a.shape[2]))


HAND = {"xgradcam": hand_xgradcam, "hirescam": hand_hirescam, "gradcam-elementwise": hand_elementwise,
        "eigengradcam": lambda a, g: hand_pca(a * g), "eigencam": lambda a, g: hand_pca(a),
        "kpcacam": lambda a, g: hand_kernel_pca(a), "fem": lambda a, g: hand_fem(a),
        "randomcam": lambda a, g: hand_randomcam(a)}


def _close(ours, expected):
    scale = max(np.abs(expected).max(), 1e-12)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("method", GRADIENT_METHODS + GRADIENT_FREE)
def test_map_by_hand_on_the_tiny_model(tiny, method):
    """The registry entry through compute_maps (the pipeline's ReLU included) against the
    hand map of the hand activations and gradients, for every class."""
    model, images, loaded, engine, _ = tiny
    lowest, highest = np.inf, -np.inf
    for cls in range(3):
        computed = compute_maps(loaded, engine, images, np.full(3, cls), method=method)
        assert (computed.classes == cls).all()
        for i in range(3):
            a, g = tiny_by_hand(model, images[i], cls)
            assert (g > 0).any() and (g < 0).any()
            expected = HAND[method](a, g)
            lowest, highest = min(lowest, expected.min()), max(highest, expected.max())
            _close(computed.weighted_sums[i], expected)
            _close(computed.small_maps[i], np.maximum(expected, 0))
    # where maps have both signs, the ReLU was tested; Random-CAM's four fixed weights here
    # (0.766, -0.543, -0.179, -0.107) give maps <= 0: its sums before the ReLU are what is compared
    assert (lowest < 0) == (method in SIGNED) and (highest > 0 or method == "randomcam")


def test_the_tiny_model_by_hand_matches_the_engine(tiny):
    model, images, _, engine, _ = tiny
    result = engine.run(images, np.full(3, 1))
    for i in range(3):
        a, g = tiny_by_hand(model, images[i], 1)
        np.testing.assert_allclose(result.activations[i], a, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(result.gradients[i], g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", GRADIENT_FREE)
def test_gradient_free_methods_compute_no_gradient(tiny, method, monkeypatch):
    """Their needs are the activations alone: the pipeline asks the engine for the forward pass
    only, and the methods get no gradients."""
    _, images, loaded, engine, _ = tiny
    assert METHODS[method].needs == ("activations",)
    calls, run = [], engine.run

    def forward_only(*args, **kwargs):
        result = run(*args, **kwargs)
        calls.append(("gradients" in kwargs.get("needs", ("gradients",)), kwargs.get("backprop"), result.gradients))
        return result

    monkeypatch.setattr(engine, "run", forward_only)
    computed = compute_maps(loaded, engine, images, np.full(3, 2), method=method)
    assert [(asked, backprop) for asked, backprop, _ in calls] == [(False, None)]
    assert calls[0][2] is None
    assert np.isfinite(computed.small_maps).all() and np.abs(computed.weighted_sums).max() > 0
    # class-agnostic: another class gives the same map
    other = compute_maps(loaded, engine, images, np.full(3, 0), method=method)
    np.testing.assert_array_equal(other.small_maps, computed.small_maps)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradient_methods_declare_gradients(method):
    assert METHODS[method].needs == ("activations", "gradients")


def test_gap_dense_hirescam_is_cam_and_xgradcam_is_gradcam(keras):
    """GAP + Dense, logits: dS/dA^k_ij = W_kc / (h w) everywhere, so HiResCAM = CAM / (h w) (the
    paper's generalisation of CAM) and XGrad-CAM's weights are W_kc / (h w) times
    sum A / (sum A + 1e-7): Grad-CAM's, but 0 for a channel that is zero everywhere."""
    model = gap_model(keras)
    images = np.random.default_rng(22).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    loaded = _loaded(model, 32)
    engine = Engine(loaded, ("conv2",), batch_size=2)
    features = keras.Model(model.input, model.get_layer("conv2").output).predict(images, verbose=0).astype(np.float64)
    kernel = model.get_layer("pred").get_weights()[0].astype(np.float64)
    h, w = features.shape[1:3]
    codes = np.array([0, 2])
    hires = compute_maps(loaded, engine, images, codes, method="hirescam").weighted_sums
    result = engine.run(images, codes)
    weights = METHODS["xgradcam"].channel_weights(result, None)
    for i, cls in enumerate(codes):
        _close(hires[i], features[i] @ kernel[:, cls] / (h * w))
        sums = features[i].sum(axis=(0, 1))
        _close(weights[i], kernel[:, cls] / (h * w) * sums / (sums + 1e-7))


# --- the PCA maps: sign rule, eigen smoothing ------------------------------------------------

def _structured(seed, shape=(2, 5, 6, 7)):
    """Features with one dominant direction plus noise, so the first axis is well separated."""
    rng = np.random.default_rng(seed)
    batch, h, w, channels = shape
    pattern = rng.normal(size=(batch, h, w, 1))
    axis = rng.normal(size=(batch, 1, 1, channels))
    return 3 * pattern * axis + rng.normal(size=shape) + 2.0


def test_eigen_smooth_is_the_first_principal_component_per_image():
    weighted = _structured(1)
    smoothed = eigen_smooth(weighted)
    assert smoothed.shape == weighted.shape[:3] and smoothed.dtype == np.float32
    for i in range(len(weighted)):
        _close(smoothed[i], hand_pca(weighted[i]))
        # its polarity is the channel sum's, the map it replaces
        assert np.corrcoef(smoothed[i].ravel(), weighted[i].sum(axis=2).ravel())[0, 1] > 0
        np.testing.assert_array_equal(eigen_smooth(weighted[i : i + 1])[0], smoothed[i])
    np.testing.assert_array_equal(first_principal_component(weighted), smoothed)


def test_eigencam_sign_agrees_with_the_mean_activation():
    features = _structured(2)
    maps = eigencam_map(features)
    for i in range(len(features)):
        mean_map = features[i].mean(axis=2)
        assert np.corrcoef(maps[i].ravel(), mean_map.ravel())[0, 1] > 0
        # the raw SVD's projection up to its sign, whichever LAPACK gave
        samples = features[i].reshape(-1, features.shape[3])
        centred = samples - samples.mean(axis=0)
        raw = (centred @ np.linalg.svd(centred)[2][0]).reshape(mean_map.shape)
        _close(np.abs(maps[i]), np.abs(raw))
    # negated features: the same axis, the mean negated, so the map is negated
    _close(eigencam_map(-features), -maps)
    # the order of the channels changes nothing
    _close(eigencam_map(features[..., ::-1]), maps)


def test_eigencam_sign_tie_makes_the_largest_entry_positive():
    """Two channels t and -t: the axis (1, -1)/sqrt(2) is orthogonal to the mean, whose map is
    constant (0): the correlation says nothing, and the entry of largest magnitude is positive."""
    t = np.array([[0.5, -3.0, 1.0], [2.0, 0.0, -1.5]])
    features = np.stack([t, -t], axis=-1)[None]
    for candidate in (features, -features):
        result = eigencam_map(candidate)[0]
        _close(np.abs(result), np.sqrt(2) * np.abs(t - t.mean()))
        assert result.ravel()[np.abs(result).argmax()] > 0


def test_constant_features_give_zero_pca_maps():
    constant = np.full((1, 3, 4, 5), 2.5)
    for result in (eigencam_map(constant), kpcacam_map(constant), eigen_smooth(constant)):
        assert np.isfinite(result).all() and (result == 0).all()


def test_kpcacam_sigmoid_kernel_and_its_properties():
    """The sigmoid kernel (pytorch-grad-cam's default) by hand too; and the map is an eigenvector
    of the centred kernel matrix with squared norm lambda, as sklearn's fit_transform returns."""
    features = _structured(3, (2, 4, 5, 6)) * 0.3
    rbf, sigmoid = kpcacam_map(features), kpcacam_map(features, kernel="sigmoid")
    for i in range(len(features)):
        _close(rbf[i], hand_kernel_pca(features[i]))
        _close(sigmoid[i], hand_kernel_pca(features[i], kernel="sigmoid"))
        samples = features[i].reshape(-1, 6)
        centred = samples - samples.mean(axis=0)
        gram = np.exp(-np.square(centred[:, None, :] - centred[None, :, :]).sum(axis=2) / 6)
        n = len(gram)
        gram_c = (np.eye(n) - 1 / n) @ gram @ (np.eye(n) - 1 / n)
        p = rbf[i].ravel().astype(np.float64)
        lam = p @ p
        np.testing.assert_allclose(gram_c @ p, lam * p, rtol=1e-4, atol=1e-5 * lam * np.abs(p).max())
    assert np.abs(rbf - sigmoid).max() > 1e-3


def test_kpcacam_refuses_what_it_cannot_do():
    with pytest.raises(LayerError, match="65x64"):
        kpcacam_map(np.zeros((1, 65, 64, 2)))
    with pytest.raises(ValueError, match="kernel='poly'"):
        kpcacam_map(np.zeros((1, 2, 2, 2)), kernel="poly")


# --- FEM and Random-CAM ---------------------------------------------------------------------

def test_fem_exact_on_a_spike():
    """One spike of 10 among fifteen zeros: mean 0.625, std sqrt(100/16 - 0.625^2) = 2.4206, the
    threshold 5.466 keeps the spike alone, weighted by the mean; a constant channel adds nothing."""
    a = np.zeros((1, 4, 4, 2))
    a[0, 1, 2, 0] = 10.0
    a[0, :, :, 1] = 3.0
    result = fem_contributions(a).sum(axis=3)[0]
    expected = np.zeros((4, 4))
    expected[1, 2] = 0.625
    np.testing.assert_allclose(result, expected, rtol=1e-7)


def test_randomcam_is_deterministic_and_the_same_for_every_image(tiny):
    model, images, loaded, engine, single = tiny
    weights = randomcam_weights(np.zeros((3, 2, 2, 4)))
    assert weights.shape == (3, 4) and (weights == weights[0]).all()
    assert (np.abs(weights) <= 1).all() and (weights > 0).any() and (weights < 0).any()
    np.testing.assert_array_equal(weights, randomcam_weights(np.ones((3, 5, 5, 4))))
    assert randomcam_weights(np.zeros((1, 2, 2, 5)))[0, :4].tolist() != weights[0].tolist()
    batch = compute_maps(loaded, engine, images, np.full(3, 0), method="randomcam")
    again = compute_maps(loaded, engine, images, np.full(3, 0), method="randomcam")
    np.testing.assert_array_equal(batch.weighted_sums, again.weighted_sums)
    for i in range(3):
        alone = compute_maps(loaded, single, images[i : i + 1], np.array([0]), method="randomcam")
        np.testing.assert_allclose(alone.weighted_sums[0], batch.weighted_sums[i], rtol=1e-5, atol=1e-6)
