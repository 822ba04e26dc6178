"""Pure batched augmentations: one call transforms a whole batch on its own device.

Modelled on airbench's ``batch_flip_lr`` / ``batch_crop`` / ``batch_cutout`` (Jordan 2024,
KellerJordan/cifar10-airbench): per-sample randomness comes from masks and index arithmetic,
never from a Python loop over samples, and every random number is drawn from torch's global
generators, which the trainer seeds and checkpoints, so a resumed run replays the same draws.

Inputs are normalized floats, ``[N, C, H, W]`` (images) or ``[N, C, L]`` (signals). Filling
with 0 therefore fills with the training mean, and magnitudes are in units of the training std.
The regularizer classes in ``image_augment``, ``signal_augment`` and ``mixing`` only validate
their settings and draw parameters; the arithmetic lives here, where tests can reach it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from regbench.errors import ConfigError, check_range
from regbench.regularizers.base import Regularizer


# --- validation helpers shared by the augmentation regularizers --------------------------------

def check_interval(key: str, interval, low=None, high=None, **inclusive) -> tuple[float, float]:
    """Validate a ``[lo, hi]`` pair with low ≤ lo ≤ hi ≤ high and return it as floats.

    ``inclusive`` takes :func:`check_range`'s ``low_inclusive`` / ``high_inclusive``.
    """
    try:
        lo, hi = interval
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={interval!r} must be a pair [low, high]") from None
    check_range(key, lo, low, high, **inclusive)
    check_range(key, hi, low, high, **inclusive)
    if lo > hi:
        raise ConfigError(f"{key}={list(interval)!r}: low must not exceed high")
    return float(lo), float(hi)


def check_input_rank(name: str, input_shape: tuple[int, ...], ranks: tuple[int, ...], layout: str) -> None:
    """Raise a ConfigError unless one sample's shape has one of ``ranks`` dimensions.

    Like the constructors' errors, the message starts with a bare key: the builder prefixes it
    with ``regularizer.<name>.``.
    """
    if len(input_shape) not in ranks:
        raise ConfigError(f"input_shape={tuple(input_shape)} does not fit: {name} needs inputs shaped {layout}")


class Augmentation(Regularizer):
    """A regularizer that transforms training inputs; ``ranks`` are the sample ranks it accepts."""

    ranks: tuple[int, ...] | None = None  # None: any shape
    layout = "any shape"

    def check(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        if self.ranks is not None:
            check_input_rank(self.name, input_shape, self.ranks, self.layout)


# --- random draws ------------------------------------------------------------------------------

def uniform(n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    """``n`` draws from U(low, high) in the dtype and on the device of ``like``."""
    return low + (high - low) * torch.rand(n, device=like.device, dtype=like.dtype)


def random_sign(n: int, like: torch.Tensor) -> torch.Tensor:
    """``n`` draws of ±1: RandAugment applies each op in a random direction."""
    return torch.randint(0, 2, (n,), device=like.device).to(like.dtype) * 2 - 1


def beta(alpha: float, n: int, device) -> torch.Tensor:
    """``n`` draws of λ ~ Beta(α, α) from torch's global generator, on ``device``."""
    concentration = torch.tensor(float(alpha), device=device)
    return torch.distributions.Beta(concentration, concentration).sample((n,))


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector [N] so it broadcasts against x [N, ...]."""
    return v.view(-1, *[1] * (x.ndim - 1))


# --- flips, crops, shifts ----------------------------------------------------------------------

def batch_flip_lr(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror each sample along its last axis with probability ``p`` (airbench's batch_flip_lr)."""
    flip = torch.rand(len(x), device=x.device) < p
    return torch.where(_per_sample(flip, x), x.flip(-1), x)


def batch_crop(x: torch.Tensor, padding: int, padding_mode: str = "zeros") -> torch.Tensor:
    """Pad images [N, C, H, W] by ``padding`` and cut each back to H×W at its own random offset.

    ``padding_mode`` is ``zeros`` (Krizhevsky et al. 2012; the mean, as inputs are normalized)
    or ``reflect`` (airbench). Offsets are uniform over the (2·padding+1)² positions.
    """
    n, _, h, w = x.shape
    mode = "constant" if padding_mode == "zeros" else padding_mode
    padded = F.pad(x, (padding,) * 4, mode=mode)
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), device=x.device)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # [N, H] source rows
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # [N, W] source columns
    # Two gathers (rows, then columns) select each sample's own window without a loop.
    out = padded.gather(2, rows[:, None, :, None].expand(-1, padded.shape[1], -1, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(-1, out.shape[1], h, -1))


def batch_shift(x: torch.Tensor, shifts: torch.Tensor, circular: bool = False) -> torch.Tensor:
    """Translate each signal [N, C, L] by its own integer shift [N] (positive = to the right).

    Circular shifts wrap around (``torch.roll`` per sample); otherwise vacated positions get 0.
    """
    length = x.shape[-1]
    source = torch.arange(length, device=x.device) - shifts[:, None]  # [N, L]: output i reads input i − s
    if circular:
        source = source % length
    out = x.gather(-1, source.clamp(0, length - 1)[:, None, :].expand_as(x))
    if circular:
        return out
    inside = (source >= 0) & (source < length)
    return torch.where(inside[:, None, :], out, torch.zeros((), dtype=x.dtype, device=x.device))


# --- geometric warps ---------------------------------------------------------------------------

def batch_affine(x: torch.Tensor, matrix: torch.Tensor, translate: torch.Tensor) -> torch.Tensor:
    """Warp each image [N, C, H, W] by its own 2×2 ``matrix`` and ``translate`` [N, 2].

    ``matrix`` acts on pixel coordinates (x right, y down) about the image centre and maps each
    output pixel to the input point it samples; ``translate`` is a fraction of (W, H). Bilinear
    sampling, 0 (the mean) outside the image.
    """
    n, _, h, w = x.shape
    # affine_grid works in [-1, 1] per axis; rescaling the off-diagonal terms by the aspect
    # ratio keeps rotations and shears rigid on non-square images.
    aspect = torch.tensor([[1.0, h / w], [w / h, 1.0]], dtype=x.dtype, device=x.device)
    theta = torch.cat([matrix * aspect, 2 * translate[:, :, None]], dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation_matrix(degrees: torch.Tensor) -> torch.Tensor:
    """[N] angles in degrees → [N, 2, 2] rotation matrices."""
    rad = torch.deg2rad(degrees)
    cos, sin = torch.cos(rad), torch.sin(rad)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def batch_rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image [N, C, H, W] about its centre by its own angle [N] (bilinear)."""
    return batch_affine(x, rotation_matrix(degrees), torch.zeros(len(x), 2, dtype=x.dtype, device=x.device))


def batch_stretch(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Stretch (factor > 1) or squash (< 1) each signal [N, C, L] about its centre, linearly.

    A squashed signal is padded with 0 (the mean); a stretched one loses its ends.
    """
    n = len(x)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1 / factors  # output position u reads input u / factor
    theta[:, 1, 1] = 1
    image = x.unsqueeze(2)  # [N, C, 1, L]: grid_sample's 2-D path with a height of one
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(2)


# --- intensity ---------------------------------------------------------------------------------

def batch_brightness_contrast(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per sample: ``mean + scale·(x − mean) + shift``, the mean taken over the whole sample.

    On normalized inputs, brightness is best an additive shift (in std units) and contrast a
    scaling about the sample's mean, as torchvision's ``adjust_contrast`` blends with it; both
    are independent of the channel count.
    """
    dims = tuple(range(1, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    return mean + _per_sample(scale, x) * (x - mean) + _per_sample(shift, x)


def batch_solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Negate values at or above each sample's threshold [N].

    PIL's solarize maps p ↦ 1 − p above a threshold, a reflection about mid-grey; on normalized
    inputs the mean (0) plays that role.
    """
    return torch.where(x >= _per_sample(threshold, x), -x, x)


def batch_posterize(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Round each sample to a grid of its own ``step`` [N] (> 0): fewer levels, as PIL's posterize."""
    step = _per_sample(step, x)
    return torch.round(x / step) * step


# --- boxes: cutout, random erasing, cutmix -----------------------------------------------------

def box_mask(spatial: tuple[int, ...], low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Boolean masks [N, *spatial], True where low[:, d] ≤ index < high[:, d] along every axis d."""
    n, ndim = low.shape
    mask = torch.ones(n, *spatial, dtype=torch.bool, device=low.device)
    for d, size in enumerate(spatial):  # one pass per spatial axis (1 or 2), not per sample
        index = torch.arange(size, device=low.device)
        inside = (index >= low[:, d, None]) & (index < high[:, d, None])  # [N, size]
        mask = mask & inside.view(n, *[1] * d, size, *[1] * (ndim - d - 1))
    return mask


def random_box_mask(spatial: tuple[int, ...], sizes: torch.Tensor) -> torch.Tensor:
    """Masks [N, *spatial] of boxes of ``sizes`` [N, d], each placed uniformly inside its sample."""
    limits = torch.tensor(spatial, device=sizes.device)
    low = (torch.rand(sizes.shape, device=sizes.device) * (limits - sizes + 1)).long()
    return box_mask(spatial, low, low + sizes)


def batch_erase(x: torch.Tensor, sizes: torch.Tensor, apply: torch.Tensor, fill: str = "zeros") -> torch.Tensor:
    """Erase a box of ``sizes`` [N, d] (in pixels) inside each sample where ``apply`` [N] is True.

    Boxes lie wholly inside the sample (Zhong et al. 2020), so each erases exactly its stated
    area. ``fill`` is ``zeros`` (the mean: DeVries & Taylor 2017's cutout) or ``noise``
    (standard normal values: Zhong et al.'s random erasing).
    """
    mask = random_box_mask(tuple(x.shape[2:]), sizes) & _per_sample(apply, x[:, 0])
    values = torch.randn_like(x) if fill == "noise" else torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(mask[:, None], values, x)


def cutmix_boxes(spatial: tuple[int, ...], lam: torch.Tensor) -> torch.Tensor:
    """Masks [len(lam), *spatial] of boxes covering 1 − λ of each sample, up to whole pixels.

    Each side is ``size·(1 − λ)^(1/d)`` long, rounded (Yun et al. 2019, for d = 1 or 2 axes).
    Yun et al. centre the box uniformly and clip it at the border, which shrinks boxes and biases
    λ upwards (a box drawn to cover everything covers (3/4)² ≈ 56% on average); placing it
    wholly inside keeps the pasted area at the drawn 1 − λ, so λ keeps its Beta(α, α) law.
    """
    d = len(spatial)
    sizes = torch.tensor(spatial, device=lam.device)
    cut = (sizes * (1 - lam[:, None]) ** (1 / d)).round().long().clamp(max=sizes)  # [N, d]
    return random_box_mask(spatial, cut)


# --- mixing ------------------------------------------------------------------------------------

def batch_mixup(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor):
    """Mixup (Zhang et al. 2018): λ·(x, y) + (1 − λ)·(x, y)[perm]; ``y`` are probability rows."""
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def batch_cutmix(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor):
    """CutMix (Yun et al. 2019): paste a box from ``x[perm]`` into each sample, mix targets by area.

    ``lam`` is [1] (one box for the batch) or [N] (a box per sample). The targets use λ
    corrected to the pasted box's exact area (sides are whole pixels). Works for images
    [N, C, H, W] and, with a segment for a box, signals [N, C, L].
    Returns (x, y, λ actually used [1 or N]).
    """
    mask = cutmix_boxes(tuple(x.shape[2:]), lam)  # [1 or N, *spatial]
    # λ corrected to the box actually pasted: the exact fraction of each sample left as it was.
    kept = (~mask).flatten(1).sum(1).to(y.dtype) / mask[0].numel()
    x = torch.where(mask[:, None], x[perm], x)
    return x, kept[:, None] * y + (1 - kept[:, None]) * y[perm], kept


# --- RandAugment -------------------------------------------------------------------------------

RANDAUGMENT_OPS = (
    "identity", "rotate", "shear_x", "shear_y", "translate_x", "translate_y",
    "brightness", "contrast", "solarize", "posterize",
)


def batch_randaugment(x: torch.Tensor, num_ops: int, magnitude: float) -> torch.Tensor:
    """RandAugment (Cubuk et al. 2020) on normalized images [N, C, H, W], batched.

    In each of ``num_ops`` rounds every sample picks one op uniformly from
    :data:`RANDAUGMENT_OPS`, applied with the shared ``magnitude`` M on the 0–10 scale of the
    paper's reference code (``_MAX_LEVEL = 10``) in a random direction. At M = 10: rotate ±30°,
    shear ±0.3, translate ±45% of the side (AutoAugment's 150/331), brightness ±0.9 std,
    contrast ×(1 ± 0.9); solarize above a threshold falling linearly from +3 std (M = 0) to
    −3 std; posterize to a grid whose step grows linearly to 0.5 std. Ops tied to uint8 pixels
    or RGB (equalize, autocontrast, color, sharpness) have no clean meaning on normalized floats
    of any channel count and are left out.
    """
    if num_ops == 0 or magnitude == 0:
        return x
    n, m = len(x), magnitude / 10
    ops = {name: i for i, name in enumerate(RANDAUGMENT_OPS)}
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    for _ in range(num_ops):  # rounds run in sequence; within a round, samples differ via masks
        op = torch.randint(len(RANDAUGMENT_OPS), (n,), device=x.device)
        v = random_sign(n, x) * m  # signed strength in [-1, 1]

        def when(name, value, neutral=zero):
            return torch.where(op == ops[name], value, neutral)

        # All geometric ops share one warp: a sample that chose another op keeps the identity
        # matrix, and only one of the terms below is non-zero for any sample.
        matrix = rotation_matrix(when("rotate", 30 * v))
        matrix[:, 0, 1] += when("shear_x", 0.3 * v)
        matrix[:, 1, 0] += when("shear_y", 0.3 * v)
        translate = torch.stack([when("translate_x", 0.45 * v), when("translate_y", 0.45 * v)], 1)
        geometric = (op >= ops["rotate"]) & (op <= ops["translate_y"])
        x = torch.where(_per_sample(geometric, x), batch_affine(x, matrix, translate), x)

        colour = (op == ops["brightness"]) | (op == ops["contrast"])
        jittered = batch_brightness_contrast(x, when("brightness", 0.9 * v), when("contrast", 1 + 0.9 * v, zero + 1))
        x = torch.where(_per_sample(colour, x), jittered, x)

        threshold = torch.full((n,), 3 - 6 * m, dtype=x.dtype, device=x.device)
        x = torch.where(_per_sample(op == ops["solarize"], x), batch_solarize(x, threshold), x)
        step = torch.full((n,), 0.5 * m, dtype=x.dtype, device=x.device)
        x = torch.where(_per_sample(op == ops["posterize"], x), batch_posterize(x, step), x)
    return x

