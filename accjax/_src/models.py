"""The reference experiments' models as plain `(params, apply)` pairs.

`apply(params, x)` takes ONE example's features and returns its output. Binary
models (`logistic_regression`, `mlp`) map `(num_features,)` to one logit, and
`binary_loss(apply)` turns it into the per-example loss of an `accjax.Problem`,
whose examples are `(x, y)` rows with labels in {0, 1}. Multi-class models (`cnn`,
Hara et al.'s MNIST network) map one image `(height, width, channels)` to logits
`(num_classes,)`, and `multiclass_loss(apply)` / `multiclass_error(apply)` pair
them with `(x, y)` rows whose labels are integer class ids in [0, num_classes).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp


def _linear_init(key, fan_in: int, fan_out: int, dtype):
    """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / jnp.sqrt(fan_in)
    wkey, bkey = jax.random.split(key)
    return {
        "w": jax.random.uniform(wkey, (fan_in, fan_out), dtype, -bound, bound),
        "b": jax.random.uniform(bkey, (fan_out,), dtype, -bound, bound),
    }


def _logistic_apply(params, x):
    return (x @ params["w"] + params["b"])[0]


def _mlp_apply(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return (x @ params[-1]["w"] + params[-1]["b"])[0]


def logistic_regression(key, num_features: int, *, dtype=jnp.float32):
    """One linear logit, `x @ w + b`. Returns `(params, apply)`.

    `apply` is one module-level function whatever the size or seed, so runs
    over many seeds share compiled estimators.
    """
    return _linear_init(key, num_features, 1, dtype), _logistic_apply


def mlp(key, num_features: int, widths=(8, 8), *, dtype=jnp.float32):
    """The reference MLP: Linear-ReLU per hidden width, then one logit.

    Returns `(params, apply)` with `params` a list of `{"w", "b"}` layers.
    """
    sizes = (num_features, *widths, 1)
    keys = jax.random.split(key, len(sizes) - 1)
    params = [
        _linear_init(k, fan_in, fan_out, dtype)
        for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]
    return params, _mlp_apply


def binary_cross_entropy(logit, label):
    """Binary cross-entropy with logits (labels in {0, 1}), computed stably."""
    return jax.nn.softplus(logit) - label * logit


@dataclasses.dataclass(frozen=True)
class _BinaryLoss:
    apply: Callable

    def __call__(self, params, example):
        x, y = example
        return binary_cross_entropy(self.apply(params, x), y)


@dataclasses.dataclass(frozen=True)
class _BinaryError:
    apply: Callable

    def __call__(self, params, example):
        x, y = example
        wrong = (self.apply(params, x) > 0) != (y > 0.5)
        return wrong.astype(jnp.result_type(float))


def binary_loss(apply):
    """`loss(params, (x, y))`: binary cross-entropy of `apply(params, x)`.

    Equal (`==`) for equal `apply`, so jit caches keyed on the loss are shared.
    """
    return _BinaryLoss(apply)


def binary_error(apply):
    """`error(params, (x, y))`: 1 where the logit's sign disagrees with the label."""
    return _BinaryError(apply)


# --- multi-class: a small convolutional network ------------------------------------


def _positive_int(name: str, value) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(
            f"{name} must be a positive int, got {value!r} "
            f"of type {type(value).__name__}"
        ) from None
    if number < 1:
        raise ValueError(f"{name} must be a positive int, got {number}")
    return number


def _conv_init(key, kernel: int, in_channels: int, out_channels: int, dtype):
    """PyTorch's nn.Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for w and b,
    fan_in = in_channels * kernel * kernel; `w` is HWIO."""
    bound = 1.0 / jnp.sqrt(in_channels * kernel * kernel)
    wkey, bkey = jax.random.split(key)
    shape = (kernel, kernel, in_channels, out_channels)
    return {
        "w": jax.random.uniform(wkey, shape, dtype, -bound, bound),
        "b": jax.random.uniform(bkey, (out_channels,), dtype, -bound, bound),
    }


def _max_pool_2x2(x):
    """2x2 max-pool, stride 2, of one HWC image; odd trailing rows/columns dropped.

    A reshape and a max over the two window axes: its derivatives are elementwise
    selects, where `lax.reduce_window`'s gradient is a select-and-scatter, slow on
    CPU and slower again in second order. (Where a window holds several equal
    maxima the two split the tangent differently; after a ReLU such ties are zeros,
    whose tangent is 0 either way.)
    """
    height, width, channels = x.shape
    x = x[: height // 2 * 2, : width // 2 * 2]
    return x.reshape(height // 2, 2, width // 2, 2, channels).max(axis=(1, 3))


def _conv_lax(x, w):
    return jax.lax.conv_general_dilated(
        x[None], w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )[0]


def _conv_matmul(x, w):
    """The same convolution as one matmul: the kernel's kh x kw shifted views of
    the image side by side (HW, kh kw C) times the kernel as (kh kw C, O).

    Under vmap over examples it is one large matmul, and over runs or targets
    with their own weights a batched one, where XLA's CPU convolution inside a
    scan runs several times slower (docs/performance.md).
    """
    kh, kw, channels, out = w.shape
    height, width = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    views = [x[i : i + height, j : j + width] for i in range(kh) for j in range(kw)]
    patches = jnp.stack(views, axis=2).reshape(height, width, kh * kw * channels)
    return patches @ w.reshape(kh * kw * channels, out)


def conv2d_valid(x, w):
    """VALID stride-1 convolution of one HWC image `x` with an HWIO kernel `w`.

    On CPU the shifted-views matmul (`_conv_matmul`), elsewhere (GPU, TPU)
    `lax.conv_general_dilated`; chosen per platform when the computation is
    lowered (`lax.platform_dependent`), so one function serves every device.
    """
    return jax.lax.platform_dependent(x, w, cpu=_conv_matmul, default=_conv_lax)


def _cnn_apply(params, x):
    for layer in params["conv"]:
        x = conv2d_valid(x, layer["w"]) + layer["b"][None, None, :]
        x = _max_pool_2x2(jax.nn.relu(x))
    return x.reshape(-1) @ params["out"]["w"] + params["out"]["b"]


def cnn(
    key,
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    channels: Sequence[int] = (20, 20),
    kernel: int = 5,
    *,
    dtype=jnp.float32,
):
    """Hara et al.'s MNIST CNN: per entry of `channels`, a `kernel` x `kernel` VALID
    convolution, ReLU and 2x2 max-pool (stride 2); then flatten and one Linear layer to
    `num_classes` logits. The defaults give conv(1->20)-pool-conv(20->20)-pool-
    Linear(320->10), 13,750 parameters.

    Returns `(params, apply)`: `params = {"conv": [{"w", "b"}, ...], "out": {"w", "b"}}`
    (conv `w` is HWIO), initialised like PyTorch's defaults; `apply(params, x)` maps ONE
    image `x` of shape `input_shape` (height, width, channels) to logits
    `(num_classes,)`. The flatten is in HWC order (PyTorch flattens CHW: permute the
    `out` rows to import its weights). `apply` is one module-level function whatever
    the sizes, so runs share compiled estimators.
    """
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels), got {input_shape!r}"
        )
    height, width, in_channels = (
        _positive_int(f"input_shape[{i}]", v) for i, v in enumerate(shape)
    )
    num_classes = _positive_int("num_classes", num_classes)
    kernel = _positive_int("kernel", kernel)
    try:
        channels = tuple(channels)
    except TypeError:
        raise ValueError(
            f"channels must be a sequence of positive ints, got {channels!r}"
        ) from None
    if not channels:
        raise ValueError("channels must name at least one conv layer, got ()")
    channels = tuple(_positive_int(f"channels[{i}]", c) for i, c in enumerate(channels))

    h, w = height, width
    for i in range(len(channels)):
        if min(h, w) < kernel + 1:
            raise ValueError(
                f"input_shape {shape} is too small for channels={channels} with "
                f"kernel={kernel}: conv layer {i} gets a {h}x{w} input, but a "
                f"{kernel}x{kernel} VALID conv then a 2x2 max-pool need at least "
                f"{kernel + 1}x{kernel + 1}"
            )
        h, w = (h - kernel + 1) // 2, (w - kernel + 1) // 2
    flat = h * w * channels[-1]

    sizes = (in_channels, *channels)
    keys = jax.random.split(key, len(channels) + 1)
    conv = [
        _conv_init(k, kernel, cin, cout, dtype)
        for k, cin, cout in zip(keys[:-1], sizes[:-1], sizes[1:], strict=True)
    ]
    out = _linear_init(keys[-1], flat, num_classes, dtype)
    return {"conv": conv, "out": out}, _cnn_apply


def _class_id(label):
    """An integer class id from an int or a float array holding one."""
    label = jnp.asarray(label)
    if jnp.issubdtype(label.dtype, jnp.floating):
        label = jnp.round(label)
    return label.astype(jnp.int32)


def softmax_cross_entropy(logits, label):
    """`-log softmax(logits)[label]` for one example's logits `(num_classes,)`,
    computed stably.

    `label` is an integer class id (a float array holding one is rounded and cast);
    a label outside [0, num_classes) gives NaN rather than a silently clamped loss.
    """
    label = _class_id(label)
    num_classes = logits.shape[-1]
    picked = jnp.take(logits, jnp.clip(label, 0, num_classes - 1))
    loss = jax.nn.logsumexp(logits) - picked
    return jnp.where((label >= 0) & (label < num_classes), loss, jnp.nan)


@dataclasses.dataclass(frozen=True)
class _MultiClassLoss:
    apply: Callable

    def __call__(self, params, example):
        x, y = example
        return softmax_cross_entropy(self.apply(params, x), y)


@dataclasses.dataclass(frozen=True)
class _MultiClassError:
    apply: Callable

    def __call__(self, params, example):
        x, y = example
        wrong = jnp.argmax(self.apply(params, x)) != _class_id(y)
        return wrong.astype(jnp.result_type(float))


def multiclass_loss(apply):
    """`loss(params, (x, y))`: softmax cross-entropy of the logits `apply(params, x)`
    against the class id `y`.

    Equal (`==`) for equal `apply`, so jit caches keyed on the loss are shared.
    """
    return _MultiClassLoss(apply)


def multiclass_error(apply):
    """`error(params, (x, y))`: 1 where `argmax(apply(params, x)) != y`, else 0."""
    return _MultiClassError(apply)


def random_crop(x, key, pad: int = 4):
    """One HWC image zero-padded by `pad` on each side and cropped back to its size
    at an offset drawn uniformly from the (2 pad + 1)^2 possible (torchvision's
    `RandomCrop(size, padding=pad)`)."""
    padded = jnp.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    dy, dx = jax.random.randint(key, (2,), 0, 2 * pad + 1)
    return jax.lax.dynamic_slice(padded, (dy, dx, 0), x.shape)


def random_crop_flip(x, key, pad: int = 4):
    """The standard CIFAR augmentation of one HWC image: `random_crop`, then a
    left-right flip with probability 1/2."""
    crop_key, flip_key = jax.random.split(key)
    x = random_crop(x, crop_key, pad)
    return jnp.where(jax.random.bernoulli(flip_key), x[:, ::-1], x)
