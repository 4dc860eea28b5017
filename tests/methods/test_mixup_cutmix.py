"""Mixup and CutMix: exact values of the pure functions, the switch between them when both are
on, interaction with label smoothing, batch sizes, determinism, recipe checks, a short run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import build_state
from torch import nn

import trainbench.methods.cutmix as cutmix_mod
import trainbench.methods.mixup as mixup_mod
from trainbench.engine import run_recipe
from trainbench.methods import METHODS, Method, TrainState
from trainbench.methods.cutmix import CutMix, cutmix_batch, cutmix_box
from trainbench.methods.label_smoothing import LabelSmoothing
from trainbench.methods.mixup import Mixup, mix_targets, mixup_batch
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import RunDir

QUICKSTART = Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml"


def rand_images(b: int, c: int = 1, h: int = 6, w: int = 6, seed: int = 0) -> torch.Tensor:
    """Continuous random pixels: two images never share a pixel value."""
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def state_for(methods: dict[str, Any], num_classes: int = 8, seed: int = 0) -> TrainState:
    return build_state(recipe={"methods": methods}, num_classes=num_classes,
                       generator=torch.Generator().manual_seed(seed),
                       host_rng=np.random.default_rng(seed))


def start(methods: dict[str, Any], num_classes: int = 8, seed: int = 0) -> tuple[TrainState, list[Method]]:
    """A state and the recipe's method instances, after on_fit_start (as the engine does)."""
    s = state_for(methods, num_classes, seed)
    ms = [METHODS.get(name)(**params) for name, params in methods.items()]
    for m in ms:
        m.on_fit_start(s)
    return s, ms


def step(s: TrainState, ms: list[Method], x: torch.Tensor,
         y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for m in ms:
        x, y = m.on_batch(s, x, y)
    return x, y


# --- mixup: pure functions ---


def test_mixup_batch_exact_values() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]],
                      [[[10.0, 20.0], [30.0, 40.0]]],
                      [[[-1.0, 0.0], [0.5, 8.0]]]])
    before = x.clone()
    y = torch.tensor([0, 2, 1])
    perm = torch.tensor([2, 0, 1])
    lam = 0.75
    xm, soft = mixup_batch(x, y, 3, lam, perm)
    assert torch.equal(xm, lam * x + (1 - lam) * x[perm])
    # by hand, image 0: 0.75 * [1, 2, 3, 4] + 0.25 * [-1, 0, 0.5, 8]
    torch.testing.assert_close(xm[0, 0], torch.tensor([[0.5, 1.5], [2.375, 5.0]]), rtol=0, atol=0)
    torch.testing.assert_close(xm[1, 0], torch.tensor([[7.75, 15.5], [23.25, 31.0]]), rtol=0, atol=0)
    # rows: own class 0.75, partner's class 0.25; partners are y[perm] = [1, 0, 2]
    expected = torch.tensor([[0.75, 0.25, 0.0], [0.25, 0.0, 0.75], [0.0, 0.75, 0.25]])
    assert soft.dtype == torch.float32
    torch.testing.assert_close(soft, expected, rtol=0, atol=0)
    assert torch.equal(x, before)  # inputs are not modified


def test_mix_targets_same_class_pair_and_identity() -> None:
    y = torch.tensor([1, 1, 0])
    soft = mix_targets(y, 2, 0.3, torch.tensor([1, 0, 2]))
    torch.testing.assert_close(soft, torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), rtol=0, atol=1e-7)


def test_mix_targets_of_already_soft_targets() -> None:
    y = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    soft = mix_targets(y, 3, 0.25, torch.tensor([1, 0]))
    # row 0: 0.25 * [.5, .5, 0] + 0.75 * [0, 0, 1]; row 1: 0.25 * [0, 0, 1] + 0.75 * [.5, .5, 0]
    torch.testing.assert_close(soft, torch.tensor([[0.125, 0.125, 0.75], [0.375, 0.375, 0.25]]),
                               rtol=0, atol=0)
    # soft input as the one-hot of index input gives the same result
    y_idx = torch.tensor([2, 0, 1, 1])
    perm = torch.tensor([3, 2, 0, 1])
    torch.testing.assert_close(mix_targets(F.one_hot(y_idx, 3).float(), 3, 0.6, perm),
                               mix_targets(y_idx, 3, 0.6, perm), rtol=0, atol=0)


# --- mixup: the method draws lam on the host and the permutation on the device generator ---


def test_mixup_method_uses_host_rng_and_generator() -> None:
    s = state_for({"mixup": {"alpha": 0.4}}, num_classes=5, seed=3)
    m = Mixup(alpha=0.4)
    m.on_fit_start(s)
    x, y = rand_images(6), torch.tensor([0, 1, 2, 3, 4, 0])
    xm, soft = m.on_batch(s, x, y)
    rng = np.random.default_rng(3)
    rng.random()  # the method's first draw: apply-or-not (prob)
    lam = float(rng.beta(0.4, 0.4))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    ex, es = mixup_batch(x, y, 5, lam, perm)
    assert torch.equal(xm, ex) and torch.equal(soft, es)


# --- cutmix: boxes and pastes ---


class FixedRng:
    """Stands in for numpy's Generator: integers() returns the given values in turn."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)

    def integers(self, low: int, high: int | None = None, endpoint: bool = False) -> int:
        v = self.values.pop(0)
        assert low <= v < high + endpoint
        return v


@pytest.mark.parametrize(("h", "w", "lam", "centre", "box"), [
    # lam 0.25: side ratio sqrt(0.75) = 0.866, 4 * 0.866 -> 3 pixels, half side 1
    (4, 4, 0.25, (2, 1), (1, 3, 0, 2)),
    (4, 4, 0.25, (0, 0), (0, 1, 0, 1)),  # clipped at the top-left corner
    (4, 4, 0.25, (3, 3), (2, 4, 2, 4)),  # clipped at the bottom-right edge
    # 5 x 8, lam 0.36: ratio 0.8, sides 4 and 6, half sides 2 and 3
    (5, 8, 0.36, (2, 4), (0, 4, 1, 7)),
    (5, 8, 0.36, (4, 7), (2, 5, 4, 8)),  # clipped
    (5, 8, 0.99, (2, 4), (2, 2, 4, 4)),  # ratio 0.1: sides 0 -> empty box
])
def test_cutmix_box_by_hand(h: int, w: int, lam: float, centre: tuple[int, int],
                            box: tuple[int, int, int, int]) -> None:
    assert cutmix_box(h, w, lam, FixedRng(*centre)) == box  # type: ignore[arg-type]


def check_paste(x: torch.Tensor, y: torch.Tensor, k: int, box: tuple[int, int, int, int],
                perm: torch.Tensor) -> float:
    y0, y1, x0, x1 = box
    h, w = x.shape[-2:]
    before = x.clone()
    out, soft, lam = cutmix_batch(x, y, k, box, perm)
    assert out is not x and torch.equal(x, before)  # a new tensor; x untouched
    area = (y1 - y0) * (x1 - x0)
    assert lam == 1 - area / (h * w)
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert torch.equal(out[:, :, inside], x[perm][:, :, inside])
    assert torch.equal(out[:, :, ~inside], x[:, :, ~inside])
    changed = (out != x).any(1)  # [B, H, W]
    moved = perm != torch.arange(len(perm))
    assert torch.equal(changed.sum((1, 2)), moved.long() * area)  # exactly the box, in moved rows
    # label weight of the original class = share of pixels kept, exactly
    for i in range(len(y)):
        if y[i] != y[perm[i]]:
            assert soft[i, y[i]].item() == pytest.approx(lam, abs=1e-7)
            assert soft[i, y[perm[i]]].item() == pytest.approx(area / (h * w), abs=1e-7)
    torch.testing.assert_close(soft.sum(1), torch.ones(len(y)), rtol=0, atol=1e-6)
    return lam


@pytest.mark.parametrize(("h", "w"), [(4, 4), (5, 7), (8, 3), (32, 32)])
@pytest.mark.parametrize("lam", [0.05, 0.3, 0.5, 0.77, 0.95])
def test_cutmix_area_matches_label_weight(h: int, w: int, lam: float) -> None:
    x = rand_images(5, c=2, h=h, w=w)
    y = torch.tensor([0, 1, 2, 3, 4])
    perm = torch.tensor([3, 0, 4, 1, 2])
    rng = np.random.default_rng(int(lam * 100) + h)
    clipped = 0
    for _ in range(20):
        box = cutmix_box(h, w, lam, rng)
        y0, y1, x0, x1 = box
        assert 0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w
        clipped += y0 == 0 or y1 == h or x0 == 0 or x1 == w
        check_paste(x, y, 5, box, perm)
    if lam < 0.9:
        assert clipped > 0  # border boxes (clipped) are among those checked


def test_cutmix_hand_values_with_clipped_box() -> None:
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    y = torch.tensor([0, 1])
    out, soft, lam = cutmix_batch(x, y, 2, (0, 2, 1, 3), torch.tensor([1, 0]))
    assert lam == 1 - 4 / 9
    assert out[0, 0].tolist() == [[0, 10, 11], [3, 13, 14], [6, 7, 8]]
    assert out[1, 0].tolist() == [[9, 1, 2], [12, 4, 5], [15, 16, 17]]
    torch.testing.assert_close(soft, torch.tensor([[5 / 9, 4 / 9], [4 / 9, 5 / 9]]), rtol=0, atol=1e-7)


@pytest.mark.parametrize(("h", "w", "minmax"),
                         [(16, 16, (0.25, 0.5)), (7, 10, (0.3, 0.9)), (5, 5, (0.5, 1.0))])
def test_cutmix_minmax_box_sizes_within_bounds(h: int, w: int, minmax: tuple[float, float]) -> None:
    lo, hi = minmax
    rng = np.random.default_rng(0)
    heights, widths = set(), set()
    for _ in range(300):
        y0, y1, x0, x1 = cutmix_box(h, w, 0.5, rng, minmax)
        assert 0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w  # wholly inside: never clipped
        assert int(h * lo) <= y1 - y0 <= int(h * hi)
        assert int(w * lo) <= x1 - x0 <= int(w * hi)
        heights.add(y1 - y0)
        widths.add(x1 - x0)
    assert len(heights) > 1 and len(widths) > 1  # sizes vary across the range
    # alpha/lam is not used with minmax: the same draws give the same boxes for any lam
    a = [cutmix_box(h, w, 0.1, np.random.default_rng(1), minmax) for _ in range(5)]
    b = [cutmix_box(h, w, 0.9, np.random.default_rng(1), minmax) for _ in range(5)]
    assert a == b


def test_cutmix_method_with_minmax() -> None:
    s, ms = start({"cutmix": {"minmax": [0.25, 0.5]}})
    x, y = rand_images(8, h=16, w=16), torch.arange(8)
    perms = torch.Generator().manual_seed(0)  # draws the method's permutations alike
    boxes = set()
    for _ in range(30):
        out, soft = step(s, ms, x, y)
        perm = torch.randperm(8, generator=perms)
        moved = perm != torch.arange(8)
        changed = (out != x).any(1)  # [B, H, W]; continuous pixels: a paste changes every one
        # prob 1 and a box side of at least 4 pixels: every image with a partner gets a paste
        assert torch.equal(changed.flatten(1).any(1), moved)
        batch_box = None
        for i in moved.nonzero().flatten().tolist():
            rows, cols = changed[i].any(1).nonzero().flatten(), changed[i].any(0).nonzero().flatten()
            box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            r0, r1, c0, c1 = box
            assert 4 <= r1 - r0 <= 8 and 4 <= c1 - c0 <= 8  # side ratios within [0.25, 0.5]
            area = (r1 - r0) * (c1 - c0)
            assert changed[i].sum().item() == area  # one solid box
            assert batch_box in (None, box)  # one box for the whole batch
            batch_box = box
            assert torch.equal(out[i, :, r0:r1, c0:c1], x[perm[i], :, r0:r1, c0:c1])  # the partner's
            assert soft[i, i].item() == pytest.approx(1 - area / 256, abs=1e-6)
            assert soft[i, perm[i]].item() == pytest.approx(area / 256, abs=1e-6)
        for i in (~moved).nonzero().flatten().tolist():
            assert torch.equal(soft[i], F.one_hot(y[i], 8).float())
        boxes.add(batch_box)
    assert len(boxes) > 10  # sizes and places vary from batch to batch


def test_cutmix_method_uses_host_rng_and_generator() -> None:
    s, ms = start({"cutmix": {"alpha": 1.0}}, num_classes=5, seed=7)
    x, y = rand_images(6, h=8, w=8), torch.tensor([0, 1, 2, 3, 4, 0])
    out, soft = step(s, ms, x, y)
    rng = np.random.default_rng(7)
    rng.random()  # the method's first draw: apply-or-not (prob)
    box = cutmix_box(8, 8, float(rng.beta(1.0, 1.0)), rng)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(7))
    ex, es, _ = cutmix_batch(x, y, 5, box, perm)
    assert torch.equal(out, ex) and torch.equal(soft, es)


# --- with label smoothing: smoothed once, in the loss ---


@pytest.mark.parametrize("e", [0.1, 0.3])
def test_mixup_with_label_smoothing_smooths_once(e: float) -> None:
    k = 4
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, k, generator=g) * 2
    y = torch.tensor([0, 3, 1, 1, 2])
    perm = torch.tensor([1, 2, 3, 4, 0])
    lam = 0.6
    _, soft = mixup_batch(torch.zeros(5, 1, 2, 2), y, k, lam, perm)
    s = build_state(num_classes=k)
    LabelSmoothing(smoothing=e).on_init(s)
    loss = s.loss_fn(logits, soft)
    logp = F.log_softmax(logits, 1)
    once = torch.zeros(5, k)
    for i in range(5):  # by hand: mix the one-hots, then smooth once
        once[i, y[i]] += lam
        once[i, y[perm[i]]] += 1 - lam
    once = once * (1 - e) + e / k
    hand = -(once * logp).sum(1).mean()
    torch.testing.assert_close(loss, hand, rtol=0, atol=1e-6)
    twice = once * (1 - e) + e / k
    assert abs(float(loss - (-(twice * logp).sum(1).mean()))) > 1e-3
    # equivalently: the lam-weighted mix of the smoothed index-target losses
    ce = nn.CrossEntropyLoss(label_smoothing=e)
    torch.testing.assert_close(loss, lam * ce(logits, y) + (1 - lam) * ce(logits, y[perm]),
                               rtol=0, atol=1e-6)


# --- both on: one method per batch ---


def classify(x: torch.Tensor, out: torch.Tensor, soft: torch.Tensor) -> set[str]:
    """Which mixings explain ``out`` for labels ``y = arange(B)``: 'cutmix' (every pixel is
    exactly x's or the partner's, the partner's forming one box whose area is the partner's
    label weight) and/or 'mixup' (a pixelwise convex combination with the label weights)."""
    b = x.shape[0]
    own = soft.diagonal()
    others = soft - torch.diag_embed(own)
    perm = torch.where(own > 1 - 1e-6, torch.arange(b), others.argmax(1))
    xp = x[perm]
    kinds = set()
    lam = own.view(b, 1, 1, 1)
    if torch.allclose(out, lam * x + (1 - lam) * xp, rtol=0, atol=1e-5):
        kinds.add("mixup")
    if bool(((out == x) | (out == xp)).all()):
        h, w = x.shape[-2:]
        boxes = set()
        for i in range(b):
            if perm[i] == i:
                continue
            changed = (out[i] != x[i]).any(0)
            rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
            area = int(changed.sum())
            if area:
                r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
                assert area == (r1 - r0) * (c1 - c0), "pasted pixels are not one box"
                boxes.add((r0, r1, c0, c1))
            else:
                boxes.add(None)
            assert abs(float(own[i]) - (1 - area / (h * w))) < 1e-6
        assert len(boxes) <= 1, "one box per batch"
        kinds.add("cutmix")
    return kinds


@pytest.mark.parametrize("switch_prob", [0.5, 0.2])
def test_switch_between_mixup_and_cutmix(monkeypatch: pytest.MonkeyPatch, switch_prob: float) -> None:
    calls: list[str] = []

    def spy(name: str, fn: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            calls.append(name)
            return fn(*args)
        return wrapped

    monkeypatch.setattr(mixup_mod, "mixup_batch", spy("mixup", mixup_batch))
    monkeypatch.setattr(cutmix_mod, "cutmix_batch", spy("cutmix", cutmix_batch))
    s, ms = start({"mixup": {"alpha": 0.4}, "cutmix": {"alpha": 1.0, "switch_prob": switch_prob}})
    mixup, cutmix = ms
    assert isinstance(mixup, Mixup) and not mixup.active
    assert isinstance(cutmix, CutMix) and cutmix.mixup is not None and cutmix.mixup.alpha == 0.4
    x, y = rand_images(8), torch.arange(8)
    n, n_cutmix = 400, 0
    for _ in range(n):
        calls.clear()
        out, soft = step(s, ms, x, y)
        assert len(calls) == 1  # every batch mixed (prob 1), by exactly one method
        kinds = classify(x, out, soft)
        assert calls[0] in kinds, f"{calls[0]} batch does not look like one: {kinds}"
        # both explain it only for a degenerate (numerically unchanged) mix
        assert kinds != {"mixup", "cutmix"} or torch.allclose(out, x, rtol=0, atol=1e-5)
        n_cutmix += calls[0] == "cutmix"
    sd = math.sqrt(n * switch_prob * (1 - switch_prob))
    assert abs(n_cutmix - n * switch_prob) < 4 * sd


def test_mixed_twice_would_be_detected() -> None:
    """The classifier of the switch test rejects a batch mixed by both methods."""
    x, y = rand_images(8), torch.arange(8)
    perm = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])
    xm, soft = mixup_batch(x, y, 8, 0.7, perm)
    out, soft2, _ = cutmix_batch(xm, soft, 8, (1, 4, 2, 5), perm)
    assert classify(x, out, soft2) == set()
    assert classify(x, xm, soft) == {"mixup"}
    assert classify(x, *cutmix_batch(x, y, 8, (1, 4, 2, 5), perm)[:2]) == {"cutmix"}


def test_coordination_is_decided_at_fit_start() -> None:
    alone, _ = start({"mixup": {"alpha": 0.3, "prob": 0.5}})
    m = Mixup(alpha=0.3, prob=0.5)
    m.on_fit_start(alone)
    assert m.active
    c = CutMix()
    c.on_fit_start(state_for({"cutmix": {}}))
    assert c.mixup is None
    c.on_fit_start(state_for({"cutmix": {}, "mixup": {"alpha": 0.3, "prob": 0.5}}))
    assert c.mixup is not None and (c.mixup.alpha, c.mixup.prob) == (0.3, 0.5)
    c.on_fit_start(state_for({"cutmix": {}, "mixup": {}}))  # mixup's defaults
    assert c.mixup is not None and (c.mixup.alpha, c.mixup.prob) == (0.2, 1.0)


def test_both_on_respects_each_methods_prob() -> None:
    # cutmix prob 0, mixup prob 1, switch 0.5: about half the batches mixed, all by mixup
    s, ms = start({"mixup": {"prob": 1.0}, "cutmix": {"prob": 0.0, "switch_prob": 0.5}})
    x, y = rand_images(8), torch.arange(8)
    mixed = 0
    for _ in range(200):
        out, soft = step(s, ms, x, y)
        if out is x:
            assert soft is y
        else:
            mixed += 1
            assert "mixup" in classify(x, out, soft)
    assert 60 < mixed < 140


# --- probabilities, determinism, batch sizes, syncs ---


@pytest.mark.parametrize("methods", [
    {"mixup": {"prob": 0.0}},
    {"cutmix": {"prob": 0.0}},
    {"cutmix": {"prob": 0.0, "minmax": [0.2, 0.6]}},
    {"mixup": {"prob": 0.0}, "cutmix": {"prob": 0.0}},
])
def test_prob_zero_leaves_batches_untouched(methods: dict[str, Any]) -> None:
    s, ms = start(methods)
    x, y = rand_images(8), torch.arange(8)
    for _ in range(20):
        out, t = step(s, ms, x, y)
        assert out is x and t is y


@pytest.mark.parametrize("methods", [
    {"mixup": {"alpha": 0.4}},
    {"cutmix": {"alpha": 1.0}},
    {"mixup": {"alpha": 0.4}, "cutmix": {"alpha": 1.0}},
])
def test_determinism_for_a_seed(methods: dict[str, Any]) -> None:
    def run(seed: int) -> list[torch.Tensor]:
        s, ms = start(methods, seed=seed)
        x, y = rand_images(8), torch.arange(8)
        outs = []
        for _ in range(10):
            out, soft = step(s, ms, x, y)
            outs += [out, soft]
        return outs

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(a, c, strict=True))


@pytest.mark.parametrize("methods", [
    {"mixup": {}},
    {"cutmix": {}},
    {"cutmix": {"minmax": [0.3, 0.8]}},
    {"mixup": {}, "cutmix": {}},
])
def test_odd_batch_and_batch_of_one(methods: dict[str, Any]) -> None:
    s, ms = start(methods, num_classes=3)
    for b in (7, 1):
        x = rand_images(b, c=3, h=8, w=8)
        y = torch.arange(b) % 3
        for _ in range(10):
            out, soft = step(s, ms, x, y)
            assert out.shape == x.shape and soft.shape == (b, 3)
            torch.testing.assert_close(soft.sum(1), torch.ones(b), rtol=0, atol=1e-6)
            if b == 1:  # the only permutation is the identity: nothing changes (up to rounding)
                torch.testing.assert_close(out, x, rtol=0, atol=1e-6)
                torch.testing.assert_close(soft, F.one_hot(y, 3).float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("methods", [
    {"mixup": {}}, {"cutmix": {}}, {"cutmix": {"minmax": [0.3, 0.8]}}, {"mixup": {}, "cutmix": {}},
])
def test_on_batch_reads_no_device_value(monkeypatch: pytest.MonkeyPatch, methods: dict[str, Any]) -> None:
    s, ms = start(methods)
    x, y = rand_images(8), torch.arange(8)

    def forbidden(*_: Any, **__: Any) -> Any:
        raise AssertionError("host sync in on_batch")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    for _ in range(20):
        step(s, ms, x, y)


# --- recipes ---


def test_registry_and_defaults() -> None:
    assert METHODS.get("mixup") is Mixup and METHODS.get("cutmix") is CutMix
    m, c = Mixup(), CutMix()
    assert (m.alpha, m.prob) == (0.2, 1.0)
    assert (c.alpha, c.minmax, c.prob, c.switch_prob) == (1.0, None, 1.0, 0.5)


def test_recipe_refuses_decreasing_minmax() -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(QUICKSTART, ["methods.mixup.alpha=0.4", "methods.cutmix.minmax=[0.5,0.2]"])
    msg = str(err.value)
    assert "methods.cutmix.minmax" in msg and "increasing" in msg and "[0.5, 0.2]" in msg


@pytest.mark.parametrize("bad", ["[0.0,0.5]", "[0.5]", "[0.2,0.3,0.4]", "[0.4,0.4]", "[0.5,1.5]"])
def test_recipe_refuses_bad_minmax(bad: str) -> None:
    with pytest.raises(RecipeError, match=r"methods\.cutmix\.minmax"):
        load_recipe(QUICKSTART, [f"methods.cutmix.minmax={bad}"])


def test_recipe_accepts_good_minmax() -> None:
    r = load_recipe(QUICKSTART, ["methods.cutmix.minmax=[0.2,1.0]", "methods.mixup.prob=0.5"])
    assert r["methods"]["cutmix"] == {"alpha": 1.0, "minmax": [0.2, 1.0], "prob": 1.0, "switch_prob": 0.5}
    assert r["methods"]["mixup"] == {"alpha": 0.2, "prob": 0.5}


def test_short_run_with_mixup_cutmix_and_label_smoothing(tmp_path: Path) -> None:
    recipe = load_recipe(QUICKSTART, ["duration=20ba", "schedule.warmup=0ba",
                                      "eval.every=null", "methods.mixup.alpha=0.2",
                                      "methods.cutmix.alpha=1.0", "methods.label_smoothing.smoothing=0.1"])
    outcome = run_recipe(recipe, RunDir(tmp_path / "r"))
    assert outcome.status == "completed", outcome.message
    assert outcome.points and all(math.isfinite(p["train_loss"]) for p in outcome.points)
    assert outcome.points[-1]["step"] == 20
