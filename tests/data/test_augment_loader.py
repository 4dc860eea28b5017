"""Batched on-device augmentation and the in-memory DeviceData loader."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainbench.data.augment import hflip, random_crop
from trainbench.data.base import ImageData
from trainbench.data.loader import DeviceData

CPU = torch.device("cpu")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def crop_offsets(x: torch.Tensor, out: torch.Tensor, p: int) -> list[tuple[int, int]]:
    """For each sample, the one (dy, dx) in [0, 2p]^2 whose window of the reflect-padded
    input equals the output (brute force); fails if none or several match."""
    h, w = x.shape[2:]
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    found = []
    for i in range(x.shape[0]):
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                if torch.equal(out[i], padded[i, :, dy:dy + h, dx:dx + w])]
        assert len(hits) == 1, f"sample {i}: matching offsets {hits}"
        found.append(hits[0])
    return found


@pytest.mark.parametrize(("p", "shape"), [(1, (16, 3, 5, 7)), (2, (16, 2, 6, 6)), (4, (8, 1, 8, 8))])
def test_random_crop_is_a_shift_of_the_reflect_padded_input(p: int, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=gen(123))
    out = random_crop(x, p, gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = crop_offsets(x, out, p)
    assert all(0 <= dy <= 2 * p and 0 <= dx <= 2 * p for dy, dx in offsets)


def test_random_crop_reflects_at_the_border() -> None:
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    # find a seed that shifts by the full padding up-left (dy = dx = 0)
    for seed in range(200):
        out = random_crop(x, 1, gen(seed))
        if crop_offsets(x, out, 1) == [(0, 0)]:
            break
    else:
        pytest.fail("no seed gave offset (0, 0)")
    expected = torch.tensor([[5, 4, 5, 6], [1, 0, 1, 2], [5, 4, 5, 6], [9, 8, 9, 10]], dtype=torch.float32)
    assert torch.equal(out[0, 0], expected)


def test_random_crop_padding_zero_is_identity() -> None:
    x = torch.randn(5, 3, 4, 4, generator=gen(1))
    assert torch.equal(random_crop(x, 0, gen(0)), x)


def test_random_crop_offsets_differ_across_the_batch() -> None:
    p = 2
    x = torch.randn(64, 1, 6, 6, generator=gen(5))
    offsets = crop_offsets(x, random_crop(x, p, gen(0)), p)
    assert len(set(offsets)) >= 15  # 25 possible; 64 uniform draws hit ~23 of them
    assert {dy for dy, _ in offsets} == set(range(5))
    assert {dx for _, dx in offsets} == set(range(5))
    assert len({dy for dy, dx in offsets if dx == 0}) > 1  # dy and dx are drawn independently


def test_random_crop_deterministic_for_a_seeded_generator() -> None:
    x = torch.randn(32, 3, 8, 8, generator=gen(2))
    a, b, c = random_crop(x, 2, gen(9)), random_crop(x, 2, gen(9)), random_crop(x, 2, gen(10))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the generator advances: two calls on one generator give different crops
    g = gen(9)
    assert not torch.equal(random_crop(x, 2, g), random_crop(x, 2, g))


def test_hflip_each_image_is_itself_or_its_mirror() -> None:
    x = torch.randn(1000, 2, 3, 5, generator=gen(3))
    out = hflip(x, gen(0))
    assert out.shape == x.shape
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert (same ^ mirrored).all()  # exactly one of the two for every image
    assert 430 <= int(mirrored.sum()) <= 570  # p = 1/2: mean 500, sd ~16


def test_hflip_deterministic_per_seed() -> None:
    x = torch.randn(64, 1, 4, 4, generator=gen(4))
    assert torch.equal(hflip(x, gen(1)), hflip(x, gen(1)))
    assert not torch.equal(hflip(x, gen(1)), hflip(x, gen(2)))


# --- DeviceData ---


def image_data(n_train: int = 50, n_test: int = 23, c: int = 3, size: int = 4) -> ImageData:
    g = gen(0)
    # labels are the sample indices, so batches say which samples they hold
    return ImageData(
        torch.randint(0, 256, (n_train, c, size, size), generator=g, dtype=torch.uint8),
        torch.arange(n_train),
        torch.randint(0, 256, (n_test, c, size, size), generator=g, dtype=torch.uint8),
        torch.arange(n_test),
        num_classes=max(n_train, n_test),
    )


def device_data(data: ImageData, **kw) -> DeviceData:
    args = dict(batch_size=8, eval_batch_size=10, augment=[], crop_padding=1, normalize=False, seed=0)
    return DeviceData(data, CPU, **{**args, **kw})


def test_normalisation_gives_zero_mean_unit_std_per_channel() -> None:
    data = image_data(n_train=200)
    data.train_x[:, 1] //= 4  # channels with clearly different statistics
    data.train_x[:, 2] = data.train_x[:, 2] // 2 + 100
    dd = device_data(data, normalize=True)
    z = dd.normalize(dd.train_x).double()
    per_channel = z.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    assert dd.normalize(dd.train_x).dtype == torch.float32


def test_without_normalisation_pixels_are_scaled_to_0_1() -> None:
    data = image_data()
    dd = device_data(data, normalize=False)
    torch.testing.assert_close(dd.normalize(dd.train_x), data.train_x.float() / 255, rtol=1e-6, atol=0)
    ends = dd.normalize(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 1, 1))
    assert ends[0].tolist() == [[[0.0]]] * 3
    assert ends[1].flatten().tolist() == pytest.approx([1.0] * 3, abs=1e-7)


def test_steps_per_epoch_and_sizes() -> None:
    dd = device_data(image_data(n_train=50), batch_size=8)
    assert dd.train_size == 50 and dd.steps_per_epoch == 6
    assert dd.shape == (3, 4, 4)
    assert device_data(image_data(n_train=48), batch_size=8).steps_per_epoch == 6
    assert device_data(image_data(n_train=50), batch_size=64).steps_per_epoch == 0


def passes(dd: DeviceData, n_passes: int) -> list[list[list[int]]]:
    it = dd.train_batches()
    out = []
    for _ in range(n_passes):
        batches = []
        for _ in range(dd.steps_per_epoch):
            x, y = next(it)
            assert x.shape == (dd.batch_size, *dd.shape) and y.shape == (dd.batch_size,)
            assert x.dtype == torch.float32
            batches.append(y.tolist())
        out.append(batches)
    return out


def test_train_batches_are_permutations_without_repeats() -> None:
    data = image_data(n_train=50)
    dd = device_data(data, batch_size=8)
    ps = passes(dd, 3)
    for p in ps:
        idx = [i for b in p for i in b]
        assert len(idx) == 48 == 50 // 8 * 8  # the last partial batch is dropped
        assert len(set(idx)) == 48  # no repeats within a pass
        assert set(idx) <= set(range(50))
    flat = [[i for b in p for i in b] for p in ps]
    assert flat[0] != flat[1] and flat[1] != flat[2]  # reshuffled every pass
    assert flat[0] != sorted(flat[0])  # shuffled, not in storage order


def test_train_batches_pair_images_with_their_labels() -> None:
    data = image_data(n_train=30)
    dd = device_data(data, batch_size=7)
    it = dd.train_batches()
    for _ in range(8):  # crosses a pass boundary
        x, y = next(it)
        assert torch.equal(x, dd.normalize(data.train_x[y]))


def test_train_order_depends_only_on_the_seed() -> None:
    data = image_data(n_train=50)
    a = passes(device_data(data, seed=3), 2)
    b = passes(device_data(data, seed=3), 2)
    c = passes(device_data(data, seed=4), 2)
    assert a == b
    assert a != c
    # adding augmentations does not change the data order (separate generator)
    d = passes(device_data(data, seed=3, augment=["random_crop", "hflip"]), 2)
    assert d == a


def test_train_batches_are_augmented() -> None:
    data = image_data(n_train=64, size=6)
    dd = device_data(data, batch_size=64, augment=["hflip"])
    x, y = next(dd.train_batches())
    clean = dd.normalize(data.train_x[y])
    same = (x == clean).flatten(1).all(1)
    mirrored = (x == clean.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and 10 < int(mirrored.sum()) < 54

    dd = device_data(data, batch_size=64, augment=["random_crop"], crop_padding=2)
    x, y = next(dd.train_batches())
    offsets = crop_offsets(dd.normalize(data.train_x[y]), x, 2)
    assert len(set(offsets)) > 5


@pytest.mark.parametrize("normalize", [False, True])
def test_eval_batches_are_ordered_clean_and_complete(normalize: bool) -> None:
    data = image_data(n_train=50, n_test=23)
    dd = device_data(data, batch_size=8, eval_batch_size=10, normalize=normalize,
                     augment=["random_crop", "hflip"], crop_padding=2)
    test = list(dd.test_batches())
    assert [len(y) for _, y in test] == [10, 10, 3]  # the last partial batch is kept
    assert torch.cat([y for _, y in test]).tolist() == list(range(23))
    assert torch.equal(torch.cat([x for x, _ in test]), dd.normalize(data.test_x))

    train = list(dd.clean_train_batches())
    assert [len(y) for _, y in train] == [10] * 5
    assert torch.cat([y for _, y in train]).tolist() == list(range(50))
    assert torch.equal(torch.cat([x for x, _ in train]), dd.normalize(data.train_x))

    train16 = list(dd.clean_train_batches(16))
    assert [len(y) for _, y in train16] == [16, 16, 16, 2]
    assert torch.equal(torch.cat([x for x, _ in train16]), dd.normalize(data.train_x))
    # and again: every call is a fresh ordered pass
    assert torch.equal(torch.cat([x for x, _ in dd.test_batches()]), dd.normalize(data.test_x))
