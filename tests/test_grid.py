"""`--grid KEY=V1,V2,...`: expansion order, names, YAML values, bad input, run/validate/show/compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.errors import InputError
from trainbench.grid import load_grid, parse_grid, point_names, split_values
from trainbench.recipe import NAME_MAX_BYTES, check_name, load_recipe
from trainbench.results import read_points

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
TINY = ("--set", "schedule.warmup=0ba", "--set", "duration=2ba")
runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch) -> None:
    from trainbench import cli

    monkeypatch.setattr(cli.console, "width", 400)
    monkeypatch.setattr(cli.err, "width", 400)


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def test_split_on_top_level_commas_only() -> None:
    assert split_values("[hflip],[hflip,random_crop]") == ["[hflip]", "[hflip,random_crop]"]
    assert split_values("{a: 1, b: [2,3]},x") == ["{a: 1, b: [2,3]}", "x"]
    assert split_values("'a,b',\"c,\\\"d\",it's,'it''s,x'") == ["'a,b'", '"c,\\"d"', "it's", "'it''s,x'"]
    assert split_values("0.1,,0.2") == ["0.1", "", "0.2"]


def test_expansion_order_names_and_yaml_values() -> None:
    axes = parse_grid(["optimizer.lr=0.05,1e-1", "data.augment=[hflip],[hflip,random_crop]"])
    points = load_grid(QUICKSTART, ["optimizer.momentum=0.8"], axes)
    # first --grid slowest, last fastest; values parsed as YAML (1e-1 is PyYAML's string,
    # which the recipe accepts as a number); --set applies to every point
    assert [(r["optimizer"]["lr"], r["data"]["augment"]) for r in points] == [
        (0.05, ["hflip"]), (0.05, ["hflip", "random_crop"]),
        (0.1, ["hflip"]), (0.1, ["hflip", "random_crop"])]
    assert {r["optimizer"]["momentum"] for r in points} == {0.8}
    assert [r.name for r in points] == [
        "quickstart[lr=0.05,augment=[hflip]]", "quickstart[lr=0.05,augment=[hflip,random_crop]]",
        "quickstart[lr=1e-1,augment=[hflip]]", "quickstart[lr=1e-1,augment=[hflip,random_crop]]"]
    # recipe.yaml of a point re-runs as is, under the same name, without --grid
    again = yaml.safe_load(points[1].to_yaml())
    assert again["name"] == points[1].name and again["data"]["augment"] == ["hflip", "random_crop"]
    # a mapping value switches a component as --set does (the switch rule drops sgd's momentum)
    (adam,) = load_grid(QUICKSTART, [], parse_grid(["optimizer={name: adam, lr: 0.01}"]))
    assert adam["optimizer"]["name"] == "adam" and "momentum" not in adam["optimizer"]
    assert adam.name == "quickstart[optimizer={name:adam,lr:0.01}]"
    # no --grid: exactly load_recipe
    assert load_grid(QUICKSTART, [], parse_grid([])) == [load_recipe(QUICKSTART)]


def test_names_are_safe_unique_and_stable_for_hostile_values() -> None:
    axes = parse_grid([
        "optimizer.lr=0.1,1,1.0,'1',true,null",  # alike once written without types: all distinct
        "methods.swa.lr=../../etc,'a\\b',\"tab\\there\",'" + "z" * 60 + "'",  # separators, control, long
        "model.kwargs={width: 8},[1,2]",
    ])
    names = point_names("base", axes)
    assert len(names) == len(set(names)) == 6 * 4 * 2
    assert all(check_name(n) is None for n in names)
    assert names == point_names("base", axes)  # deterministic
    first = [n for n in names if n.endswith("kwargs={width:8}]")][:4]
    # labels: last segments 'lr' coincide, so both use the full key; 'kwargs' is unique
    assert first[0].startswith("base[optimizer.lr=0.1,methods.swa.lr=#")
    assert '"1"' in names[3 * 8]  # the string '1' is quoted: not the integer 1's name
    assert "/" not in "".join(names) and "\\" not in "".join(names)
    # values written alike (the float 1e-05 and the string '1e-05') are told apart by hash
    alike = point_names("n", parse_grid(["a.b=1.0e-5,1e-05"]))
    assert len(set(alike)) == 2 and all("[b=#" in n for n in alike)
    # values holding ',' and '=' that would spell another point's name: whole-point hashes
    spelled = point_names("n", parse_grid(["x.a='1,b=2',1", "x.b=3,'2,b=3'"]))
    assert len(set(spelled)) == 4 and "n[a=1,b=2,b=3]" not in spelled
    # a name over the limit: the base cut and the whole point hashed
    long = point_names("n" * 118, parse_grid(["a.b=1,2"]))
    assert all(len(n.encode()) <= NAME_MAX_BYTES and "[#" in n for n in long) and long[0] != long[1]
    # a base of multibyte characters is cut at a character boundary
    assert all(check_name(n) is None for n in point_names("é" * 60, parse_grid(["a.b=1,2"])))


def test_bad_grid_input_lists_every_problem_exit_2() -> None:
    with pytest.raises(InputError) as e:
        parse_grid(["optimizer.lr=0.1,0.1", "data.augment=", "optimizer.lr=1", "seed=1,2", "foo",
                    "optimizer.momentum=0.9,,0.8", "model.name=[oops", "optimizer.nesterov=true"],
                   ["optimizer.nesterov=false"])
    msg = str(e.value)
    for part in ("value '0.1' is listed twice", "'data.augment=': no values",
                 "the key optimizer.lr is given twice", "'seed' cannot be a grid key: use --seeds",
                 "--grid 'foo': expected KEY=V1,V2,...", "value 2 is empty",
                 "--grid 'model.name=[oops': VALUE is not valid YAML",
                 "optimizer.nesterov is also given with --set optimizer.nesterov"):
        assert part in msg, part
    with pytest.raises(InputError, match="overlaps --grid optimizer"):
        parse_grid(["optimizer={name: adam}", "optimizer.lr=0.1,0.2"])
    with pytest.raises(InputError, match="1024 points, more than the 1000"):
        parse_grid([f"a.k{i}=1,2" for i in range(10)])
    # through the CLI: exit 2, the option named, nothing trained
    result = invoke("run", QUICKSTART, "--grid", "optimizer.lr=", "--out", "/nonexistent/x")
    assert result.exit_code == 2 and "--grid 'optimizer.lr=': no values" in result.output


def test_recipe_problems_of_grid_values_once_each(tmp_path: Path) -> None:
    result = invoke("validate", QUICKSTART, "--grid", "optimizer.lrr=0.05,0.1",
                    "--grid", "data.augment=[hflip],[rotate]")
    assert result.exit_code == 2
    out = result.output
    assert "2 problems in the recipe:" in out  # 4 points fail; each problem said once
    assert "--grid optimizer.lrr=0.05: optimizer.lrr: unknown key 'lrr'" in out
    assert "Did you mean 'lr'?" in out
    assert "--grid data.augment=[rotate]: data.augment: item 0: expected one of" in out
    assert "ok " not in out


def test_validate_and_show_print_the_expanded_list() -> None:
    result = invoke("validate", QUICKSTART, "--grid", "optimizer.lr=0.05,0.1")
    assert result.exit_code == 0, result.output
    assert [line.split("(")[-1] for line in result.output.splitlines() if line.startswith("ok ")] == [
        "quickstart[lr=0.05])", "quickstart[lr=0.1])"]
    result = invoke("show", QUICKSTART, "--grid", "optimizer.lr=0.05,0.1", "--grid", "model.name=small_cnn")
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["name"] for d in docs] == ["quickstart[lr=0.05,name=small_cnn]",
                                         "quickstart[lr=0.1,name=small_cnn]"]
    assert [d["optimizer"]["lr"] for d in docs] == [0.05, 0.1]
    assert "# grid point 2/2: quickstart[lr=0.1,name=small_cnn]" in result.stdout
    refused = invoke("show", QUICKSTART, "--grid", "optimizer.lr=0.05,0.1", "--lr-plot", "x.png")
    assert refused.exit_code == 2 and "--lr-plot draws one recipe" in refused.output


def test_run_grid_end_to_end_and_compare_rows(tmp_path: Path) -> None:
    result = invoke("run", QUICKSTART, *TINY, "--grid", "data.augment=[],[hflip]", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    names = ["quickstart[augment=[]]", "quickstart[augment=[hflip]]"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name, augment in zip(names, ([], ["hflip"]), strict=True):
        run = tmp_path / name / "seed0"
        assert json.loads((run / "meta.json").read_text())["status"] == "completed"
        assert yaml.safe_load((run / "recipe.yaml").read_text())["data"]["augment"] == augment
        assert read_points(run / "points.csv")[-1]["step"] == 2
    # compare groups the runs by the point names: one row per point
    shown = invoke("compare", tmp_path, "--format", "json")
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.stdout)["recipes"]
    assert [r["recipe"] for r in rows] == names and [r["n"] for r in rows] == [1, 1]
    # the same command again skips both points (their run directories are found by name)
    again = invoke("run", QUICKSTART, *TINY, "--grid", "data.augment=[],[hflip]", "--out", tmp_path)
    assert again.exit_code == 0 and again.output.count("already completed") == 2
