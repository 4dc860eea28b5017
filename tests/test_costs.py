"""What a point costs: device_time_s and energy_j (faked RAPL tree and NVML), and compare's
--x device_time / energy / cost (--price-per-device-hour) with the world-size note."""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from trainbench import costs
from trainbench.cli import app
from trainbench.engine import run_recipe
from trainbench.recipe import load_recipe
from trainbench.results import POINT_COLUMNS, RunDir

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


# --- readers ---


def zone(root: Path, name: str, energy: int, max_range: int, label: str) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    (d / "name").write_text(label + "\n")
    return d / "energy_uj"


def test_rapl_sums_packages_handles_wrap_and_skips_sub_zones(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", 900_000, 1_000_000, "package-0")
    p1 = zone(tmp_path, "intel-rapl:1", 0, 5_000_000, "package-1")
    core = zone(tmp_path, "intel-rapl:0:0", 0, 1_000_000, "core")  # part of package 0
    counter = costs.rapl_counter(tmp_path, guard=False)
    assert isinstance(counter, costs.RaplCounter)
    assert counter.source == f"rapl: package-0, package-1 ({tmp_path})"
    assert counter.read_j() == 0.0
    p0.write_text("950000\n")
    p1.write_text("2000000\n")
    core.write_text("999999\n")  # not added: already in package 0
    assert counter.read_j() == pytest.approx(0.05 + 2.0)
    p0.write_text("50000\n")  # wrapped at max_energy_range_uj: 50 000 to the end + 50 000
    assert counter.read_j() == pytest.approx(2.05 + 0.1)


def test_rapl_absent_or_unreadable_gives_the_reason(tmp_path: Path) -> None:
    assert costs.rapl_counter(tmp_path / "none", guard=False) == \
        f"none: no RAPL package zone (intel-rapl:N) under {tmp_path / 'none'}"
    zone(tmp_path, "intel-rapl:0", 1, 10, "package-0")
    (tmp_path / "intel-rapl:1").mkdir()
    (tmp_path / "intel-rapl:1" / "energy_uj").mkdir()  # unreadable as a file (as root, too)
    (tmp_path / "intel-rapl:1" / "max_energy_range_uj").write_text("10\n")
    why = costs.rapl_counter(tmp_path, guard=False)
    assert isinstance(why, str) and why.startswith("none: cannot read") and "intel-rapl:1/energy_uj" in why


def test_rapl_guard_thread_reads_between_evaluations(tmp_path: Path, monkeypatch) -> None:
    class Probe:
        def __init__(self) -> None:
            self.reads = threading.Semaphore(0)

        def read_j(self) -> float:
            self.reads.release()
            return 0.0

    counter = Probe()
    reads = counter.reads
    costs._start_guard(counter, 0.01)  # type: ignore[arg-type]
    assert reads.acquire(timeout=5) and reads.acquire(timeout=5)  # it reads, again and again
    (guard,) = [t for t in threading.enumerate() if t.name == "trainbench-rapl-guard"]
    del counter  # the thread holds it weakly: it ends with the counter
    gc.collect()
    guard.join(timeout=10)
    assert not guard.is_alive()
    # a RaplCounter starts one: the counter follows the file between the loop's reads
    d = zone(tmp_path, "intel-rapl:0", 10, 1_000, "package-0")
    monkeypatch.setattr(costs, "guard_period", lambda max_range: 0.01)
    rapl = costs.rapl_counter(tmp_path)
    d.write_text("990\n")
    deadline = time.monotonic() + 10
    while rapl._zones[0].last_uj != 990 and time.monotonic() < deadline:
        time.sleep(0.01)
    d.write_text("5\n")  # wrapped; then wraps again before the loop reads: 2 wraps seen
    deadline = time.monotonic() + 10
    while rapl._zones[0].last_uj != 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    d.write_text("500\n")
    assert rapl.read_j() == pytest.approx((980 + 15 + 495) / 1e6)
    monkeypatch.undo()
    assert costs.guard_period(262_143_328_850) == 60.0 and costs.guard_period(1000) == 1.0
    assert costs.guard_period(100_000_000_000) == 25.0  # 100 kJ: half a wrap at 2 kW


class FakeNvml(types.ModuleType):
    """nvidia-ml-py's pynvml, as far as trainbench uses it."""

    def __init__(self, supported: bool = True) -> None:
        super().__init__("pynvml")
        self.mj, self.supported, self.uuid = 5_000, supported, None

    def nvmlInit(self) -> None: ...

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.uuid = uuid
        return "handle"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.supported:
            raise RuntimeError("Not Supported")
        return self.mj

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"NVIDIA H200"


def test_nvml_counter_reads_the_runs_gpu_in_joules(monkeypatch) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: types.SimpleNamespace(uuid="ab-12"))
    counter = costs.energy_counter(torch.device("cuda", 0))
    assert isinstance(counter, costs.NvmlCounter) and nvml.uuid == "GPU-ab-12"
    assert counter.source == "nvml: NVIDIA H200 (GPU-ab-12), total energy"
    meter = costs.EnergyMeter(counter)
    meter.start()
    nvml.mj += 2_500  # millijoules
    assert meter.stop(10.0) == pytest.approx(12.5)
    nvml.supported = False
    assert costs.nvml_counter(torch.device("cuda", 0)).startswith("none: NVML cannot read this GPU's energy")


def test_without_nvml_installed_energy_is_empty_and_says_why(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    meter = costs.EnergyMeter.for_device(torch.device("cuda", 0))
    assert meter.counter is None and meter.zero is None
    assert 'pip install "trainbench[nvml]"' in meter.source
    meter.start()
    assert meter.stop(meter.zero) is None
    assert costs.point_costs(2.0, None) == {"device_time_s": 2.0}  # energy_j cell left empty
    assert costs.energy_counter(torch.device("meta")) == "none: no energy counter for 'meta' devices"


def test_meter_counts_only_between_start_and_stop() -> None:
    j = [0.0]
    meter = costs.EnergyMeter(types.SimpleNamespace(source="fake", read_j=lambda: j[0]))
    total = meter.zero
    meter.start()
    j[0] = 3.0
    total = meter.stop(total)
    j[0] = 100.0  # evaluation: not counted
    meter.start()
    j[0] = 104.0
    assert meter.stop(total) == 7.0
    assert meter.stop(None) is None  # an unmeasured interval before: no partial total


# --- the columns in a run ---


def test_columns_device_time_is_train_time_x_devices_and_energy_resumes(
        tmp_path: Path, monkeypatch, stop_after: type) -> None:
    assert POINT_COLUMNS[3:6] == ("train_time_s", "device_time_s", "energy_j")
    monkeypatch.setattr(costs, "num_devices", lambda: 4)
    # a 1 W counter: energy over the training intervals = their seconds, across the resume
    monkeypatch.setattr(costs, "energy_counter", lambda dev: types.SimpleNamespace(
        source="one watt", read_j=time.perf_counter))
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml",
                         ["schedule.warmup=0ba", "duration=4ba", "eval.every=2ba", "model.width=4"])
    run = RunDir(tmp_path / "r")
    assert run_recipe(recipe, run, stop=stop_after(3)).status == "interrupted"
    assert run_recipe(recipe, run, resume=True).status == "completed"
    header = run.points_path.read_text().splitlines()[0].split(",")
    assert header[3:6] == ["train_time_s", "device_time_s", "energy_j"]
    points = run.read_points()
    assert [p["step"] for p in points] == [2, 4]
    for p in points:
        assert p["device_time_s"] == pytest.approx(4 * p["train_time_s"])
        assert p["energy_j"] == pytest.approx(p["train_time_s"], rel=1e-3, abs=1e-4)
    assert run.read_meta()["energy"] == "one watt"
    # no counter: the energy_j cells are empty
    monkeypatch.setattr(costs, "energy_counter", lambda dev: "none: test")
    bare = RunDir(tmp_path / "bare")
    assert run_recipe(recipe, bare).status == "completed"
    assert [line.split(",")[5] for line in bare.points_path.read_text().splitlines()[1:]] == ["", ""]
    assert bare.read_meta()["energy"] == "none: test"


# --- compare ---


def cost_run(root: Path, name: str, times: list[float], *, devices: int | None = None,
             energy: list[float] | None = None, new: bool = True) -> None:
    """A run directory: ``new`` writes the cost columns (device_time_s = time x devices);
    an old one has neither; ``devices`` goes to meta.json's world_size when given."""
    run = RunDir(root / name / "seed0")
    run.start(f"name: {name}\n", {"name": name, "seed": 0})
    cols = [c for c in POINT_COLUMNS if new or c not in ("device_time_s", "energy_j")]
    w = run.points_writer(cols)
    for i, t in enumerate(times):
        row = {"step": i + 1, "epoch": float(i + 1), "samples": 64 * (i + 1), "train_time_s": t,
               "test_acc": 0.5 + 0.1 * i, "curve": 1}
        if new:
            row["device_time_s"] = t * (devices or 1)
        if energy:
            row["energy_j"] = energy[i]
        w.append(row)
    w.close()
    run.update_meta(status="completed", device="gpu", **({"world_size": devices} if devices else {}))


def compare_json(*args: str | Path) -> dict:
    result = invoke("compare", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_compare_device_time_old_runs_and_world_size_note(tmp_path: Path) -> None:
    cost_run(tmp_path, "one-gpu", [8.0, 16.0], energy=[800.0, 1600.0])
    cost_run(tmp_path, "eight-gpu", [1.0, 2.0], devices=8, energy=[900.0, 1800.0])
    cost_run(tmp_path, "old-two-gpu", [3.0, 6.0], devices=2, new=False)  # before the columns
    doc = compare_json(tmp_path, "--x", "device_time")
    costs_ = {r["recipe"]: r["cost"] for r in doc["recipes"]}
    assert costs_ == {"one-gpu": 16.0, "eight-gpu": 16.0, "old-two-gpu": 12.0}
    assert doc["x_column"] == "device_time_s"
    assert any("1 run has no device_time_s" in n and "world_size" in n for n in doc["notes"])
    assert any("different numbers of devices: 1 device (1 run), 2 devices (1 run), 8 devices (1 run)"
               in n for n in doc["notes"])
    # plain time: the same note, advising the consumption axes
    time_notes = compare_json(tmp_path)["notes"]
    assert any("--x device_time, --x energy or --price-per-device-hour" in n for n in time_notes)
    # one world size: no note
    single = compare_json(tmp_path / "one-gpu")
    assert not any("numbers of devices" in n for n in single["notes"])

    # energy: runs without it are left out with a problem line; none with it is exit 2
    result = invoke("compare", tmp_path, "--x", "energy", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {r["recipe"]: r["cost"] for r in doc["recipes"]} == {"one-gpu": 1600.0, "eight-gpu": 1800.0}
    assert "old-two-gpu" in result.stderr and "no energy_j measured" in result.stderr
    none = invoke("compare", tmp_path / "old-two-gpu", "--x", "energy")
    assert none.exit_code == 2
    assert "--x energy: none of the 1 runs has energy_j measured" in none.output
    assert "trainbench[nvml]" in none.output and "Use --x device_time" in " ".join(none.output.split())


def test_compare_price_axis(tmp_path: Path) -> None:
    cost_run(tmp_path, "one-gpu", [1800.0, 3600.0])
    cost_run(tmp_path, "eight-gpu", [450.0, 900.0], devices=8)
    doc = compare_json(tmp_path, "--price-per-device-hour", "2.5")  # --x cost by default then
    assert doc["x"] == "cost"
    assert {r["recipe"]: r["cost"] for r in doc["recipes"]} == pytest.approx(
        {"one-gpu": 2.5, "eight-gpu": 5.0})  # 1 device-hour vs 2 device-hours
    table = invoke("compare", tmp_path, "--x", "cost", "--price-per-device-hour", "2.5")
    assert table.exit_code == 0 and "cost ($)" in table.output
    for args, msg in ((["--x", "cost"], "--x cost needs --price-per-device-hour P"),
                      (["--x", "time", "--price-per-device-hour", "2"], "goes with --x cost"),
                      (["--price-per-device-hour", "0"], "give a price above 0")):
        bad = invoke("compare", tmp_path, *args)
        assert bad.exit_code == 2 and msg in bad.output, (args, bad.output)
