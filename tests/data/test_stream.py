"""Stream mode (trainbench/data/stream.py): the same stream for any worker count, exact
mid-epoch resume, the auto choice, unreadable files and dead workers, the imagenet and
webdataset readers on tiny real files, and the data-wait metric."""

from __future__ import annotations

import io
import itertools
import os
import tarfile
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from trainbench.data import DATASETS, check_dataset, choose, stream
from trainbench.data.stream import StreamData
from trainbench.engine import run_recipe
from trainbench.errors import DataMissingError
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import TIMING_COLUMNS as TIMING
from trainbench.results import RunDir
from trainbench.runner import data_wait_warning

ROOT = Path(__file__).parent.parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
CLASSES = ("cat", "dog", "eel")


def write_images(folder: Path, n: int, start: int = 0, fmt: str = "PNG") -> None:
    """``n`` images per class, of varied sizes, coloured by class (learnable)."""
    for c, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + n):
            g = torch.Generator().manual_seed(100 * c + i)
            h, w = 14 + i % 5, 12 + (3 * i) % 7
            x = (torch.rand(h, w, 3, generator=g) * 90 + 80 * c).to(torch.uint8).numpy()
            Image.fromarray(x).save(folder / name / f"{i:03d}.{fmt.lower()}", fmt)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imgs")
    write_images(root / "train", 12)
    write_images(root / "val", 3, start=50)
    return root


def section(root: Path, **over: object) -> dict:
    r = load_recipe(QUICKSTART, ["data.dataset=imagefolder", f"data.root={root}",
                                 "data.image_size=10", "data.loader=stream", "data.batch_size=8"])
    return {**r["data"], **over}


def make(root: Path, workers: int, augment: list[str], **over: object) -> StreamData:
    s = section(root, augment=augment, workers=workers, **over)
    return choose.stream_data(s, torch.device("cpu"), batch_size=8, seed=3)


def take(data: StreamData, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    it = data.train_batches()
    return [next(it) for _ in range(n)]


AUG = ["random_resized_crop", "random_crop", "hflip"]


def test_the_stream_is_the_same_for_0_1_and_2_workers(folder: Path) -> None:
    # 36 images in batches of 8: 4 steps a pass; 6 batches cross into the second pass.
    runs = [take(make(folder, w, AUG), 6) for w in (0, 1, 2)]
    for other in runs[1:]:
        for (xa, ya), (xb, yb) in zip(runs[0], other, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # Augmented indeed: random resized crops differ from the plain resize + center crop.
    plain = take(make(folder, 0, []), 1)[0][0]
    assert not torch.equal(runs[0][0][0], plain)
    # A sample's crop depends on (seed, pass, index): the two passes see different crops.
    d = make(folder, 0, ["random_resized_crop"])
    ds = d._train
    assert not torch.equal(ds[(0, 5)][0], ds[(1, 5)][0])
    assert torch.equal(ds[(0, 5)][0], ds[(0, 5)][0])


def test_the_order_is_a_function_of_seed_and_epoch_and_ranks_take_contiguous_slices(folder: Path) -> None:
    whole = make(folder, 0, [])
    order = stream.epoch_order(3, 0, whole.train_size)
    batch = [k for _, k in next(iter(stream._TrainBatches(whole)))]
    assert batch == order[:8].tolist()
    halves = [make(folder, 0, [], ) for _ in range(2)]
    for r, h in enumerate(halves):
        h.rank, h.world_size = r, 2
    got = [[k for _, k in next(iter(stream._TrainBatches(h)))] for h in halves]
    assert got == [order[:4].tolist(), order[4:8].tolist()]
    assert not torch.equal(stream.epoch_order(3, 1, 36), order)


def test_state_dict_resumes_at_the_exact_batch(folder: Path) -> None:
    a = make(folder, 2, AUG)
    whole = take(a, 7)
    b = make(folder, 2, AUG)
    it = b.train_batches()
    for _ in range(5):  # into the second pass (4 steps a pass)
        next(it)
    state = b.state_dict()
    c = make(folder, 1, AUG)
    c.load_state_dict(state)
    rest = take(c, 2)
    for (xa, ya), (xb, yb) in zip(whole[5:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def tiny_recipe(root: Path, *extra: str):
    return load_recipe(QUICKSTART, [
        "data.dataset=imagefolder", f"data.root={root}", "data.image_size=10",
        "data.batch_size=8", "data.workers=1", "duration=2ep", "eval.every=4ba",
        "data.augment=[random_resized_crop, hflip]", "model.width=4", "data.eval_batch_size=8",
        *extra])


def test_mid_epoch_resume_equals_an_uninterrupted_run(folder: Path, tmp_path: Path, stop_after: type,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # loader: auto with a faked memory budget of 1 KiB: the dataset does not fit -> stream.
    monkeypatch.setattr(choose, "free_memory", lambda dev: 1024)
    recipe = tiny_recipe(folder)
    whole, cut = RunDir(tmp_path / "whole"), RunDir(tmp_path / "cut")
    assert run_recipe(recipe, whole).status == "completed"
    meta = whole.read_meta()
    assert meta["data_loader"]["mode"] == "stream" and "exceeds" in meta["data_loader"]["reason"]
    assert run_recipe(recipe, cut, stop=stop_after(5)).status == "interrupted"  # 5 of 8: mid-pass 2
    assert run_recipe(recipe, cut, resume=True).status == "completed"
    a, b = whole.read_points(), cut.read_points()
    assert [p["step"] for p in a] == [4, 8]
    assert [{k: v for k, v in p.items() if k not in TIMING} for p in a] == \
           [{k: v for k, v in p.items() if k not in TIMING} for p in b]
    # data_wait_s: present, cumulative (non-decreasing), part of the training time
    for points in (a, b):
        waits = [p["data_wait_s"] for p in points]
        assert all(0 <= w1 <= w2 for w1, w2 in itertools.pairwise(waits))
        assert all(p["data_wait_s"] <= p["train_time_s"] for p in points)


def test_auto_picks_device_when_the_dataset_fits(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = section(folder, loader="auto")
    need = (36 + 9) * 3 * 10 * 10
    monkeypatch.setattr(choose, "free_memory", lambda dev: 2 * need)  # exactly AUTO_FRACTION
    c = choose.choose_loader(s, torch.device("cpu"), smoke=False)
    assert c.mode == "device" and "fits in 50%" in c.reason
    monkeypatch.setattr(choose, "free_memory", lambda dev: 2 * need - 1)
    assert choose.choose_loader(s, torch.device("cpu"), smoke=False).mode == "stream"
    # Explicit modes and in-memory datasets are not second-guessed.
    assert choose.choose_loader({**s, "loader": "device"}, torch.device("cpu"), False).mode == "device"
    assert choose.choose_loader({"dataset": "digits", "loader": "auto"}, torch.device("cpu"),
                                False).mode == "device"
    assert choose.free_memory(torch.device("cpu")) > 0  # the real /proc/meminfo reading
    # A resumed run keeps the mode it started with (its checkpoint's data position is that mode's).
    started = {"mode": "stream", "reason": "auto: ..."}
    assert choose.choose_loader(s, torch.device("cpu"), False, started_with=started).mode == "stream"


def test_stream_on_an_in_memory_dataset_is_refused() -> None:
    with pytest.raises(RecipeError, match="dataset 'digits' is held in memory and cannot stream"):
        load_recipe(QUICKSTART, ["data.loader=stream"])
    with pytest.raises(RecipeError, match="random_resized_crop crops each image"):
        load_recipe(QUICKSTART, ["data.augment=[random_resized_crop]"])
    with pytest.raises(RecipeError, match="crop_scale"):
        load_recipe(QUICKSTART, ["data.crop_scale=[0.5, 0.1]"])


@pytest.fixture
def broken(folder: Path, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(folder, root)
    (root / "train" / "dog" / "003.png").write_bytes(b"not an image at all")
    return root


def test_a_corrupt_file_fails_the_run_naming_it_and_the_fix_resumes(broken: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(broken, "data.loader=stream")
    run = RunDir(tmp_path / "r")
    out = run_recipe(recipe, run)
    bad = broken / "train" / "dog" / "003.png"
    assert out.status == "failed" and f"cannot read image {bad}" in out.message
    assert "Original Traceback" not in out.message  # the worker's traceback stays out of it
    assert run.read_meta()["status"] == "failed"
    write_images(broken / "train", 12)  # the file replaced
    assert run_recipe(recipe, run, resume=True).status == "completed"


def test_skip_corrupt_skips_counts_and_keeps_batches_whole(broken: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(broken, "data.loader=stream", "data.skip_corrupt=true")
    run = RunDir(tmp_path / "r")
    assert run_recipe(recipe, run).status == "completed"
    meta = run.read_meta()
    assert meta["skipped_corrupt"] == 1
    assert meta["skipped_files"] == [str(broken / "train" / "dog" / "003.png")]
    # The substitute is the next file in stored order (label included), whoever decodes it.
    ds = make(broken, 0, [], skip_corrupt=True)._train
    i = next(k for k, (p, _) in enumerate(ds.source.samples) if p.endswith("dog/003.png"))
    img, label, skipped = ds[(0, i)]
    nxt, label_next, _ = ds[(0, i + 1)]
    assert torch.equal(img, nxt) and label == label_next and skipped == [ds.source.samples[i][0]]


def _die_in_worker(source, i):  # module level: the forked worker runs it
    if torch.utils.data.get_worker_info() is not None:
        os._exit(7)
    return real_decode(source, i)


real_decode = stream.decode


def test_a_crashed_worker_fails_the_run_instead_of_hanging(folder: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "decode", _die_in_worker)
    t = time.perf_counter()
    out = run_recipe(tiny_recipe(folder, "data.loader=stream"), RunDir(tmp_path / "r"))
    assert out.status == "failed" and "DataLoader worker" in out.message
    assert "exited unexpectedly" in out.message
    assert time.perf_counter() - t < 60


def test_a_hung_worker_times_out(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(source, i):
        if torch.utils.data.get_worker_info() is not None:
            time.sleep(30)
        return real_decode(source, i)

    monkeypatch.setattr(stream, "decode", hang)
    monkeypatch.setattr(stream, "WORKER_TIMEOUT_S", 1.0)
    data = make(folder, 1, [], normalize=False)  # no statistics pass: the first batch hangs
    with pytest.raises(RuntimeError, match=r"DataLoader timed out after 1"):
        next(data.train_batches())


# --- the imagenet and webdataset readers ---


def test_imagenet_reads_the_folder_layout_and_fails_fast_without_it(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match=r"imagenet: no class folders in .*train"):
        check_dataset("imagenet", {"root": str(tmp_path)})
    write_images(tmp_path / "train", 4, fmt="JPEG")
    write_images(tmp_path / "val", 2, fmt="JPEG")
    check_dataset("imagenet", {"root": str(tmp_path)})
    r = load_recipe(QUICKSTART, ["data.dataset=imagenet", f"data.root={tmp_path}",
                                 "data.image_size=16", "data.augment=[random_resized_crop, hflip]",
                                 "data.workers=0", "data.batch_size=4"])
    d = choose.stream_data(r["data"], torch.device("cpu"), batch_size=4, seed=0)
    x, _ = next(d.train_batches())
    assert x.shape == (4, 3, 16, 16) and d.num_classes == 3
    assert d.eval_resize == 18  # 16 / 0.875: the evaluation crop is the central 87.5 %
    xt, yt = next(d.test_batches())
    assert xt.shape == (6, 3, 16, 16) and yt.tolist() == [0, 0, 1, 1, 2, 2]
    # ImageNet's standard statistics, not estimated ones
    assert torch.allclose(d.shift.flatten(), -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor(
        [0.229, 0.224, 0.225]))


def write_shards(folder: Path, pattern: str, shards: int, per_shard: int) -> list[tuple[bytes, int]]:
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for s in range(shards):
        with wds.TarWriter(str(folder / pattern.format(s))) as sink:
            for i in range(per_shard):
                label = (s * per_shard + i) % 3
                x = torch.full((9, 11, 3), 40 * label + i, dtype=torch.uint8).numpy()
                buf = io.BytesIO()
                Image.fromarray(x).save(buf, "PNG")
                sink.write({"__key__": f"s{s}-{i:04d}", "png": buf.getvalue(), "cls": label})
                written.append((buf.getvalue(), label))
    return written


def test_webdataset_shards_local_and_by_url_with_brace_expansion(tmp_path: Path) -> None:
    written = write_shards(tmp_path / "shards", "train-{:03d}.tar", 2, 6)
    write_shards(tmp_path / "shards", "val-{:03d}.tar", 1, 3)
    base = ["data.dataset=webdataset", "data.num_classes=3", "data.image_size=8",
            f"data.test_shards={tmp_path}/shards/val-000.tar", "data.workers=1",
            f"data.cache_dir={tmp_path}/cache", "data.batch_size=4"]
    r = load_recipe(QUICKSTART, [*base, f"data.train_shards={tmp_path}/shards/train-{{000..001}}.tar"])
    check_dataset("webdataset", r["data"])
    splits = DATASETS.entry("webdataset").extra["stream"](r["data"])
    assert len(splits.train) == 12 and splits.train.labels.tolist() == [y for _, y in written]
    assert splits.train.read(7) == written[7][0]  # random access by offset, bytes intact
    d = choose.stream_data(r["data"], torch.device("cpu"), batch_size=4, seed=0)
    x, _ = next(d.train_batches())
    assert x.shape == (4, 3, 8, 8) and d.steps_per_epoch == 3
    # A URL (here a pipe: command, as webdataset.gopen runs it) is fetched into the cache once.
    url = f"pipe:cat {tmp_path}/shards/train-{{000..001}}.tar"
    r2 = load_recipe(QUICKSTART, [*base, f"data.train_shards={url}"])
    assert choose.choose_loader(r2["data"], torch.device("cpu"), False).mode == "stream"
    remote = DATASETS.entry("webdataset").extra["stream"](r2["data"])
    assert [remote.train.read(i) for i in range(12)] == [b for b, _ in written]
    assert len(list((tmp_path / "cache").iterdir())) == 2
    with pytest.raises(DataMissingError, match=r"train-009\.tar .*does not exist"):
        check_dataset("webdataset", {**r["data"], "train_shards": f"{tmp_path}/shards/train-009.tar"})


def test_a_tar_without_samples_is_refused(tmp_path: Path) -> None:
    from trainbench.errors import InputError

    with tarfile.open(tmp_path / "x.tar", "w") as tar:
        info = tarfile.TarInfo("a.txt")
        tar.addfile(info, io.BytesIO(b""))
    r = load_recipe(QUICKSTART, ["data.dataset=webdataset", "data.num_classes=3",
                                 f"data.train_shards={tmp_path}/x.tar", f"data.test_shards={tmp_path}/x.tar",
                                 "data.batch_size=1"])
    with pytest.raises(InputError, match="holds no sample"):
        DATASETS.entry("webdataset").extra["stream"](r["data"])


def test_the_data_wait_warning_names_the_fix() -> None:
    assert data_wait_warning("r", 0.10) is None
    w = data_wait_warning("r", 0.25)
    assert w is not None and "25%" in w and "raise data.workers or use a GPU decoder" in w


def test_on_a_cpu_stream_mode_trains_exactly_as_device_mode(tmp_path: Path) -> None:
    # Same-size PNGs (no resize in either mode): same order, same crops and flips, same
    # statistics, and the loaders leave torch's global RNG (model init) alone.
    for split, n in (("train", 8), ("val", 2)):
        for c, name in enumerate(CLASSES):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                x = (torch.rand(10, 10, generator=torch.Generator().manual_seed(9 * c + i)) * 60
                     + 70 * c).to(torch.uint8).numpy()
                Image.fromarray(x).save(tmp_path / split / name / f"{i}.png")
    points = {}
    for mode in ("device", "stream"):
        recipe = tiny_recipe(tmp_path, f"data.loader={mode}", "data.augment=[random_crop, hflip]",
                             "data.crop_padding=2")
        run = RunDir(tmp_path / mode)
        assert run_recipe(recipe, run).status == "completed"
        assert run.read_meta()["data_loader"]["mode"] == mode
        points[mode] = [{k: v for k, v in p.items() if k not in TIMING} for p in run.read_points()]
    assert points["device"] == points["stream"] and len(points["device"]) == 2
