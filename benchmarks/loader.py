"""Stream mode's speed: trainbench's loader against timm's, and stream against device mode.

1. Loader throughput. A folder of JPEGs (``--images``, default 5,000 at 256x256 in 10
   class folders; made once and cached under the temp folder) is read as decoded,
   random-resized-cropped (to 224) and flipped uint8 batches by trainbench's stream loader
   (:class:`trainbench.data.stream.StreamData`: normalisation and flip on the device, here
   the CPU) and by timm's ``timm.data.create_loader`` (same workers, batch size, crop scale
   and ratio, flip; no colour jitter; normalised in the workers, no prefetcher). Rounds are
   interleaved (trainbench, timm, trainbench, ...), each one pass over the images; the
   median images per second of each are compared. Goal: >= 1.0x timm.
2. End to end. scikit-learn's digits written as PNGs (imagefolder layout, the same split as
   ``dataset: digits``) trained by the quickstart recipe with ``data.loader: device`` and
   ``data.loader: stream``, same seed, interleaved: final test accuracy (goal: within 0.3
   pp) and training throughput, samples / train_time_s (goal: stream >= 0.9x device).

    .venv/bin/python benchmarks/loader.py                    # both, 2 workers
    .venv/bin/python benchmarks/loader.py --workers 8 --device cuda
    .venv/bin/python benchmarks/loader.py --images 64 --rounds 1 --e2e-epochs 2   # a quick check
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trainbench.data import choose
from trainbench.engine import run_recipe
from trainbench.recipe import load_recipe
from trainbench.results import RunDir

ROOT = Path(__file__).parent.parent
CACHE = Path(tempfile.gettempdir()) / "trainbench-bench"
CLASSES = 10


def jpeg_folder(n: int, side: int = 256) -> Path:
    """``n`` smooth random JPEGs (quality 90) in train/<class>/ (and 10 in val/), made once."""
    from PIL import Image

    root = CACHE / f"jpegs-{n}-{side}"
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("val", CLASSES)):
        for i in range(count):
            folder = root / split / f"c{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            img = Image.fromarray(coarse).resize((side, side), Image.BICUBIC)
            noise = rng.integers(-20, 21, (side, side, 3))
            pixels = np.clip(np.asarray(img, dtype=np.int64) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    done.touch()
    return root


def digits_folder() -> Path:
    """The digits dataset as 8x8 greyscale PNGs, split as ``dataset: digits`` splits it."""
    from PIL import Image

    from trainbench.data.digits import digits

    root = CACHE / "digits-png"
    done = root / ".complete"
    if done.exists():
        return root
    data = digits()
    for split, xs, ys in (("train", data.train_x, data.train_y), ("val", data.test_x, data.test_y)):
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            folder = root / split / str(int(y))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[0].numpy()).save(folder / f"{i:04d}.png")
    done.touch()
    return root


def trainbench_pass(root: Path, workers: int, batch: int, device: str) -> float:
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [
        "data.dataset=imagefolder", f"data.root={root}", "data.image_size=224",
        "data.loader=stream", f"data.workers={workers}", f"data.batch_size={batch}",
        "data.augment=[random_resized_crop, hflip]", "data.normalize=false"])
    data = choose.stream_data(recipe["data"], torch.device(device), batch_size=batch, seed=0)
    it = data.train_batches()
    t = time.perf_counter()
    for _ in range(data.steps_per_epoch):
        x, _ = next(it)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    rate = data.steps_per_epoch * batch / (time.perf_counter() - t)
    it.close()
    del it, data  # stop the persistent workers before timm's loader forks its own
    gc.collect()
    return rate


def timm_pass(root: Path, workers: int, batch: int, device: str) -> float:
    from timm.data import ImageDataset, create_loader

    loader = create_loader(
        ImageDataset(str(root / "train")), input_size=(3, 224, 224), batch_size=batch,
        is_training=True, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, color_jitter=0.0,
        num_workers=workers, use_prefetcher=False, pin_memory=device == "cuda",
        persistent_workers=False, device=torch.device(device))
    n, t = 0, time.perf_counter()
    for x, _ in loader:  # timm's train loader drops the last partial batch too
        x = x.to(device, non_blocking=True)
        n += x.shape[0]
    if device == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


def end_to_end(workers: int, epochs: int, device: str) -> tuple[float, float]:
    """Final accuracy and samples/s of one quickstart run on the digits PNGs."""
    root = digits_folder()
    out = {}
    for mode in ("device", "stream"):
        recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [
            "data.dataset=imagefolder", f"data.root={root}", "data.image_size=8",
            f"data.loader={mode}", f"data.workers={workers}", f"duration={epochs}ep",
            f"device={device}", "eval.every=null"])
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run_recipe(recipe, RunDir(Path(tmp) / "run"))
        if outcome.status != "completed":
            raise SystemExit(f"{mode} run {outcome.status}: {outcome.message}")
        last = outcome.points[-1]
        out[mode] = (last["test_acc"], last["samples"] / last["train_time_s"])
    return out["device"], out["stream"]  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000, help="JPEGs in the generated folder")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (both loaders)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved passes of each loader")
    ap.add_argument("--e2e-epochs", type=int, default=None,
                    help="epochs of the end-to-end runs (default: the quickstart recipe's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-loader", action="store_true")
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()

    if not args.skip_loader:
        root = jpeg_folder(args.images)
        tb, tm = [], []
        for _ in range(args.rounds):
            tb.append(trainbench_pass(root, args.workers, args.batch, args.device))
            tm.append(timm_pass(root, args.workers, args.batch, args.device))
        a, b = statistics.median(tb), statistics.median(tm)
        print(f"loader, {args.images} JPEGs 256px -> random resized crop 224 + flip, "
              f"{args.workers} workers, batch {args.batch}, {args.rounds} interleaved rounds:")
        print(f"  trainbench stream: {a:8.1f} images/s  (rounds: {', '.join(f'{v:.1f}' for v in tb)})")
        print(f"  timm create_loader: {b:7.1f} images/s  (rounds: {', '.join(f'{v:.1f}' for v in tm)})")
        print(f"loader throughput ratio trainbench/timm = {a / b:.2f}x (goal >= 1.0x)")
    if not args.skip_e2e:
        accs: dict[str, list[float]] = {"device": [], "stream": []}
        speeds: dict[str, list[float]] = {"device": [], "stream": []}
        epochs = args.e2e_epochs or load_recipe(ROOT / "recipes" / "quickstart.yaml").data[
            "duration"].removesuffix("ep")
        for _ in range(args.rounds):
            for mode, (acc, speed) in zip(("device", "stream"), end_to_end(args.workers, int(epochs),
                                                                         args.device), strict=True):
                accs[mode].append(acc)
                speeds[mode].append(speed)
        dev_acc, str_acc = statistics.median(accs["device"]), statistics.median(accs["stream"])
        dev_s, str_s = statistics.median(speeds["device"]), statistics.median(speeds["stream"])
        print(f"end to end, digits as PNGs, quickstart recipe, {epochs} epochs, {args.workers} workers:")
        print(f"  device mode: test acc {100 * dev_acc:.2f}%, {dev_s:8.1f} samples/s")
        print(f"  stream mode: test acc {100 * str_acc:.2f}%, {str_s:8.1f} samples/s")
        print(f"accuracy gap stream-device = {100 * (str_acc - dev_acc):+.2f} pp (goal within 0.3 pp)")
        print(f"end-to-end throughput ratio stream/device = {str_s / dev_s:.2f}x (goal >= 0.9x)")


if __name__ == "__main__":
    main()
