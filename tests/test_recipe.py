"""Recipes: defaults, ``extends``, ``--set`` overrides, validation messages, idempotent YAML."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from trainbench.errors import InputError
from trainbench.recipe import (
    Recipe,
    RecipeError,
    apply_override,
    deep_merge,
    load_recipe,
    parse_override,
)

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems(path: Path, overrides: tuple[str, ...] = ()) -> list[str]:
    """The problem lines of a recipe that must fail validation."""
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return [str(p) for p in info.value.problems]


def one_problem(path: Path, overrides: tuple[str, ...] = ()) -> str:
    found = problems(path, overrides)
    assert len(found) == 1, found
    return found[0]


# --- defaults ---


def test_minimal_recipe_gets_every_section_and_default(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "mini.yaml", "seed: 3\n"))
    d = r.data
    assert list(d) == ["name", "seed", "device", "precision", "duration", "log",
                       "data", "model", "optimizer", "schedule", "eval", "curve", "checkpoint", "methods"]
    assert d["name"] == "mini"  # the file's stem
    assert r.name == "mini" and r.seed == 3 and r["seed"] == 3
    assert (d["device"], d["precision"], d["duration"], d["log"]) == ("auto", "fp32", "10ep", [])
    assert d["data"]["dataset"] == "digits"
    assert d["data"]["batch_size"] == 128
    assert d["data"]["eval_batch_size"] == 1024
    assert d["data"]["augment"] == []
    assert d["data"]["train_subset"] is None
    assert d["checkpoint"] == {"curve_points": True, "every": None, "minutes": 10.0, "keep": 2}
    assert d["model"] == {"name": "small_cnn", "sync_bn": False, "width": 32, "norm": "batch"}
    assert d["optimizer"]["name"] == "sgd"
    assert d["optimizer"]["lr"] == 0.1
    assert d["optimizer"]["nesterov"] is False
    assert d["schedule"]["name"] == "cosine"
    assert d["schedule"]["warmup"] == "0ep"
    assert d["eval"] == {"every": "1ep"}
    assert d["methods"] == {}
    assert r.source == str(tmp_path / "mini.yaml")


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    empty = load_recipe(write(tmp_path, "empty.yaml", ""))
    mini = load_recipe(write(tmp_path, "empty2.yaml", "# just a comment\n"))
    assert empty.data == {**mini.data, "name": "empty"}
    assert empty.data["data"]["batch_size"] == 128


def test_defaults_are_plain_yaml_values(tmp_path: Path) -> None:
    """Defaults given by a dataclass default_factory or as Time objects are canonical too."""
    path = write(tmp_path, "ms.yaml", "schedule: {name: multistep}\n")
    r = load_recipe(path)
    assert r["data"]["augment"] == []
    assert r["schedule"]["milestones"] == ["0.5dur", "0.75dur"]
    assert yaml.safe_load(r.to_yaml()) == r.data


def test_explicit_name_wins_over_file_stem(tmp_path: Path) -> None:
    assert load_recipe(write(tmp_path, "f.yaml", "name: my-run\n")).name == "my-run"


def test_section_may_be_empty(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "r.yaml", "data:\nmodel:\nmethods:\n"))
    assert r["data"]["batch_size"] == 128
    assert r["methods"] == {}


def test_values_are_canonical(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """
        duration: 3
        optimizer: {lr: 1, weight_decay: 0}
        schedule: {warmup: "0.5 ep"}
        eval: {every: 100ba}
    """)
    r = load_recipe(path)
    assert r["duration"] == "3ep"
    assert r["optimizer"]["lr"] == 1.0 and isinstance(r["optimizer"]["lr"], float)
    assert r["schedule"]["warmup"] == "0.5ep"
    assert r["eval"]["every"] == "100ba"


# --- extends and merging ---


def test_deep_merge_merges_mappings_and_replaces_the_rest() -> None:
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "l": [1, 2], "s": 1, "only_base": True}
    over = {"a": {"y": {"q": 3}, "z": 4}, "l": [3], "s": {"now": "a mapping"}}
    merged = deep_merge(base, over)
    assert merged == {"a": {"x": 1, "y": {"p": 1, "q": 3}, "z": 4}, "l": [3],
                      "s": {"now": "a mapping"}, "only_base": True}
    assert base["a"]["y"] == {"p": 1, "q": 2}  # inputs untouched
    merged["l"].append(9)
    assert over["l"] == [3]


def test_extends_relative_to_the_including_file(tmp_path: Path) -> None:
    write(tmp_path, "bases/base.yaml", """
        seed: 7
        duration: 20ep
        data: {dataset: digits, batch_size: 32, augment: [random_crop, hflip], crop_padding: 2}
        optimizer: {name: sgd, lr: 0.3, momentum: 0.5}
    """)
    child = write(tmp_path, "exp/child.yaml", """
        extends: ../bases/base.yaml
        data: {augment: [hflip]}
        optimizer: {lr: 0.05}
    """)
    r = load_recipe(child)
    assert r.name == "child"  # not inherited from the base's file name
    assert r.seed == 7 and r["duration"] == "20ep"
    # mapping keys merge...
    assert r["optimizer"]["lr"] == 0.05
    assert r["optimizer"]["momentum"] == 0.5
    assert r["data"]["batch_size"] == 32 and r["data"]["crop_padding"] == 2
    # ...but lists are replaced, not concatenated
    assert r["data"]["augment"] == ["hflip"]


def test_extends_from_another_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "recipes/base/b.yaml", "seed: 5\n")
    write(tmp_path, "recipes/x.yaml", "extends: base/b.yaml\n")
    monkeypatch.chdir(tmp_path / "recipes" / "base")
    assert load_recipe(Path("../x.yaml")).seed == 5


def test_multi_level_extends(tmp_path: Path) -> None:
    write(tmp_path, "base/root.yaml", """
        seed: 1
        precision: bf16
        optimizer: {lr: 0.5, momentum: 0.8, weight_decay: 0.001}
    """)
    write(tmp_path, "base/mid.yaml", """
        extends: root.yaml
        seed: 2
        optimizer: {momentum: 0.7}
    """)
    top = write(tmp_path, "top.yaml", """
        extends: base/mid.yaml
        optimizer: {weight_decay: 0.0}
    """)
    r = load_recipe(top)
    assert r.seed == 2
    assert r["precision"] == "bf16"
    assert r["optimizer"]["lr"] == 0.5
    assert r["optimizer"]["momentum"] == 0.7
    assert r["optimizer"]["weight_decay"] == 0.0


def test_list_of_extends_later_wins(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "seed: 1\nduration: 4ep\noptimizer: {lr: 0.2}\n")
    write(tmp_path, "b.yaml", "seed: 2\noptimizer: {momentum: 0.1}\n")
    r = load_recipe(write(tmp_path, "c.yaml", "extends: [a.yaml, b.yaml]\nprecision: fp16\n"))
    assert r.seed == 2
    assert r["duration"] == "4ep"
    assert r["precision"] == "fp16"
    assert (r["optimizer"]["lr"], r["optimizer"]["momentum"]) == (0.2, 0.1)


def test_same_base_twice_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, "common.yaml", "seed: 4\n")
    write(tmp_path, "a.yaml", "extends: common.yaml\n")
    write(tmp_path, "b.yaml", "extends: common.yaml\n")
    assert load_recipe(write(tmp_path, "c.yaml", "extends: [a.yaml, b.yaml]\n")).seed == 4


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "extends: sub/b.yaml\n")
    write(tmp_path, "sub/b.yaml", "extends: ../a.yaml\n")
    with pytest.raises(InputError) as info:
        load_recipe(tmp_path / "a.yaml")
    msg = str(info.value)
    assert "cycle" in msg
    assert "a.yaml -> b.yaml -> a.yaml" in msg


def test_extends_self_is_a_cycle(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cycle \(me\.yaml -> me\.yaml\)"):
        load_recipe(write(tmp_path, "me.yaml", "extends: me.yaml\n"))


def test_extends_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "extends: nowhere/base.yaml\n")
    with pytest.raises(InputError, match="recipe file not found") as info:
        load_recipe(path)
    assert "base.yaml" in str(info.value)


@pytest.mark.parametrize("value", ["3", "{a: 1}", "[a.yaml, 3]"])
def test_extends_must_be_paths(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "r.yaml", f"seed: 0\nextends: {value}\n")
    with pytest.raises(InputError, match="extends: expected a file path or a list of paths") as info:
        load_recipe(path)
    assert f"{path}:2" in str(info.value)


def test_problem_in_a_base_points_at_the_base_file(tmp_path: Path) -> None:
    write(tmp_path, "base/b.yaml", "seed: 0\noptimizer:\n  lr: fast\n")
    top = write(tmp_path, "top.yaml", "extends: base/b.yaml\nseed: 1\n")
    msg = one_problem(top)
    assert msg.startswith(f"{(tmp_path / 'base' / 'b.yaml').resolve()}:3: optimizer.lr: ")


def test_methods_false_removes_a_base_method(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "methods:\n  label_smoothing: {smoothing: 0.2}\n")
    assert load_recipe(tmp_path / "base.yaml")["methods"] == {"label_smoothing": {"smoothing": 0.2}}
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nmethods:\n  label_smoothing: false\n")
    assert load_recipe(child)["methods"] == {}
    # and from the command line
    assert load_recipe(tmp_path / "base.yaml", ["methods.label_smoothing=false"])["methods"] == {}


def test_methods_true_enables_with_defaults(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "r.yaml", "methods: {label_smoothing: true}\n"))
    assert r["methods"] == {"label_smoothing": {"smoothing": 0.1}}
    r = load_recipe(write(tmp_path, "s.yaml", "methods: {label_smoothing: }\n"))
    assert r["methods"] == {"label_smoothing": {"smoothing": 0.1}}


# --- --set overrides ---


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("optimizer.lr=0.2", ("optimizer", "lr"), 0.2),
        ("seed=3", ("seed",), 3),
        ("data.augment=[hflip, random_crop]", ("data", "augment"), ["hflip", "random_crop"]),
        ("model.name=timm:resnet18", ("model", "name"), "timm:resnet18"),
        ("data.train_subset=null", ("data", "train_subset"), None),
        ("data.train_subset=", ("data", "train_subset"), None),
        ("name='my run'", ("name",), "my run"),
        ("methods.mixup.alpha=0.4", ("methods", "mixup", "alpha"), 0.4),
        ("optimizer.nesterov=true", ("optimizer", "nesterov"), True),
        ("model={name: resnet9, width: 16}", ("model",), {"name": "resnet9", "width": 16}),
        ("schedule.warmup=2ep", ("schedule", "warmup"), "2ep"),
        (" seed = 3", ("seed",), 3),
    ],
)
def test_parse_override(item: str, key: tuple[str, ...], value: object) -> None:
    assert parse_override(item) == (key, value)


@pytest.mark.parametrize("item", ["optimizer.lr", "=3", "optimizer..lr=1", ".lr=1", "a b=1", ""])
def test_parse_override_refuses_malformed_items(item: str) -> None:
    with pytest.raises(InputError, match="expected KEY=VALUE"):
        parse_override(item)


def test_parse_override_refuses_bad_yaml() -> None:
    with pytest.raises(InputError, match="not valid YAML"):
        parse_override("data.augment=[hflip")


def test_apply_override_creates_sections_and_refuses_scalars() -> None:
    raw: dict = {"optimizer": {"lr": 0.1}}
    apply_override(raw, ("methods", "label_smoothing", "smoothing"), 0.3)
    apply_override(raw, ("optimizer", "momentum"), 0.5)
    assert raw == {"optimizer": {"lr": 0.1, "momentum": 0.5},
                   "methods": {"label_smoothing": {"smoothing": 0.3}}}
    with pytest.raises(InputError, match=r"'optimizer\.lr' is 0\.1, not a section"):
        apply_override(raw, ("optimizer", "lr", "x"), 1)


def test_overrides_in_load_recipe(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """
        seed: 0
        data: {batch_size: 32, train_subset: 100}
        optimizer: {lr: 0.1}
    """)
    r = load_recipe(path, [
        "optimizer.lr=0.2",
        "seed=5",
        "data.augment=[hflip, random_crop]",
        "data.train_subset=null",
        "methods.label_smoothing.smoothing=0.3",  # 'methods' is not in the file
        "eval.every=null",
        "duration=2",
    ])
    assert r["optimizer"]["lr"] == 0.2
    assert r.seed == 5
    assert r["data"]["augment"] == ["hflip", "random_crop"]
    assert r["data"]["batch_size"] == 32
    assert r["data"]["train_subset"] is None
    assert r["methods"] == {"label_smoothing": {"smoothing": 0.3}}
    assert r["eval"]["every"] is None
    assert r["duration"] == "2ep"


def test_later_override_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "seed: 0\n")
    assert load_recipe(path, ["seed=1", "seed=2"]).seed == 2


def test_override_sets_an_external_model_name(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "model: {name: small_cnn}\n")
    r = load_recipe(path, ["model.name=timm:resnet18"])
    assert r["model"] == {"name": "timm:resnet18", "sync_bn": False, "kwargs": {}}


def test_override_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "optimizer: {lr: 0.1}\n")
    with pytest.raises(InputError, match="expected KEY=VALUE"):
        load_recipe(path, ["optimizer.lr"])
    with pytest.raises(InputError, match="not a section"):
        load_recipe(path, ["optimizer.lr.x=1"])


def test_override_problem_origin_is_the_set_item(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "data:\n  batch_size: 32\n")
    msg = one_problem(path, ("data.batch_size=0",))
    assert msg == "--set data.batch_size=0: data.batch_size: must be >= 1, got 0"


# --- validation: every problem at once, with origins ---


BAD = """\
sed: 1
precision: fp64
device: gpu
duration: 0.5dur
data:
  dataset: digits
  batch_size: 0
  augment: [rotate, hflip]
model: {name: resnet9x}
optimizer: {name: sgd, lr: fast}
schedule: {name: cosine, warmup: 3xx}
methods:
  label_smoothin: {smoothing: 0.1}
"""


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BAD)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["eval.every=soon"])
    err = info.value
    assert isinstance(err, InputError)
    found = [str(p) for p in err.problems]
    f = str(path)
    expected = [
        f"{f}:1: sed: unknown key 'sed' for a recipe (top level).",
        f"{f}:2: precision: expected one of fp32, bf16, fp16; got 'fp64'.",
        f"{f}:3: device: expected auto, cpu, cuda or cuda:N, got 'gpu'.",
        f"{f}:4: duration: the run's duration cannot be given in 'dur'; use 'ep', 'ba' or 'sp'.",
        f"{f}:7: data.batch_size: must be >= 1, got 0",
        f"{f}:8: data.augment: item 0: expected one of random_crop, hflip, random_resized_crop; "
        "got 'rotate'.",
        f"{f}:9: model.name: unknown model 'resnet9x'.",
        f"{f}:10: optimizer.lr: expected a number, got 'fast'",
        f"{f}:11: schedule.warmup: expected a time like '8ep', '500ba', '2048sp' or '0.25dur'",
        "--set eval.every=soon: eval.every: expected a time like",
        f"{f}:13: methods.label_smoothin: unknown method 'label_smoothin'.",
    ]
    assert len(found) == len(expected), "\n".join(found)
    for want in expected:
        assert sum(p.startswith(want) for p in found) == 1, (want, found)
    # the details each message carries
    by_path = {p.path: p.message for p in err.problems}
    assert "Did you mean 'seed'?" in by_path["sed"]
    assert "Allowed: name, seed, device" in by_path["sed"]
    assert "Did you mean 'fp16'?" in by_path["precision"]
    assert "Did you mean 'resnet9'?" in by_path["model.name"]
    assert "timm:<name> / torchvision:<name>" in by_path["model.name"]
    assert "See 'trainbench list models'." in by_path["model.name"]
    assert "Did you mean 'label_smoothing'?" in by_path["methods.label_smoothin"]
    assert "See 'trainbench list methods'." in by_path["methods.label_smoothin"]
    assert "got '3xx'" in by_path["schedule.warmup"]
    # and the error's own text lists them all, with a count
    text = str(err)
    assert text.startswith("11 problems in the recipe:")
    assert all(f"  - {p}" in text for p in found)


def test_unknown_dataset(tmp_path: Path) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", "data:\n  dataset: digitz\n"))
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:2: data.dataset: unknown dataset 'digitz'. Known: digits")
    assert "Did you mean 'digits'?" in msg
    assert msg.endswith("See 'trainbench list datasets'.")


@pytest.mark.parametrize(
    ("section", "name", "hint"),
    [("optimizer", "sgdd", "Did you mean 'sgd'? See 'trainbench list optimizers'."),
     ("schedule", "cosin", "Did you mean 'cosine'? See 'trainbench list schedules'.")],
)
def test_unknown_component_names(tmp_path: Path, section: str, name: str, hint: str) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", f"{section}: {{name: {name}}}\n"))
    assert f"{section}.name: unknown {section} '{name}'" in msg
    assert msg.endswith(hint)


def test_unknown_key_in_a_section_names_the_component(tmp_path: Path) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", "optimizer:\n  name: sgd\n  lrr: 0.1\n"))
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:3: optimizer.lrr: unknown key 'lrr' for optimizer 'sgd'.")
    assert "Did you mean 'lr'?" in msg


def test_unknown_key_without_a_close_match_has_no_suggestion(tmp_path: Path) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", "zzzzqqq: 1\n"))
    assert "unknown key 'zzzzqqq'" in msg
    assert "Did you mean" not in msg


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("seed: fast\n", "seed", "expected an integer, got 'fast' (str)"),
        ("seed: 1.5\n", "seed", "expected an integer, got 1.5 (float)"),
        ("seed: true\n", "seed", "expected an integer, got True (bool)"),
        ("optimizer: {lr: fast}\n", "optimizer.lr", "expected a number, got 'fast' (str)"),
        ("optimizer: {lr: true}\n", "optimizer.lr", "expected a number, got True (bool)"),
        ("optimizer: {lr: 0}\n", "optimizer.lr", "must be > 0, got 0"),
        ("optimizer: {momentum: 1.5}\n", "optimizer.momentum", "must be <= 1, got 1.5"),
        ("optimizer: {nesterov: 1}\n", "optimizer.nesterov", "expected true or false, got 1 (int)"),
        ("data: {batch_size: -3}\n", "data.batch_size", "must be >= 1, got -3"),
        ("data: {train_subset: 0}\n", "data.train_subset", "must be >= 1, got 0"),
        ("data: {crop_padding: -1}\n", "data.crop_padding", "must be >= 0, got -1"),
        ("data: {augment: hflip}\n", "data.augment", "expected a list of"),
        ("data: {augment: [hflip, flip]}\n", "data.augment",
         "item 1: expected one of random_crop, hflip, random_resized_crop; got 'flip'. "
         "Did you mean 'hflip'?"),
        ("data: [1, 2]\n", "data", "expected a mapping (key: value lines), got [1, 2]."),
        ("name: 5\n", "name", "expected a string, got 5 (int)"),
        ("methods: {label_smoothing: {smoothing: 1}}\n", "methods.label_smoothing.smoothing",
         "must be < 1, got 1"),
        ("methods: {label_smoothing: 0.1}\n", "methods.label_smoothing", "expected a mapping"),
        ("duration: 0\n", "duration", "must be greater than 0."),
        ("duration: -1ep\n", "duration", "expected a time like"),
        ("eval: {every: 3xx}\n", "eval.every", "got '3xx'"),
    ],
)
def test_single_field_problems(tmp_path: Path, text: str, path: str, message: str) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", text))
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:1: {path}: "), msg
    assert message in msg


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_good_devices(tmp_path: Path, device: str) -> None:
    assert load_recipe(write(tmp_path, "r.yaml", f"device: '{device}'\n"))["device"] == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda9x", "CPU", "cuda:1 ", "mps0"])
def test_bad_devices(tmp_path: Path, device: str) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", f"device: '{device}'\n"))
    assert f"device: expected auto, cpu, cuda or cuda:N, got '{device}'." in msg


@pytest.mark.parametrize("duration", ["1dur", "0.5dur"])
def test_duration_in_dur_is_refused(tmp_path: Path, duration: str) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", f"duration: {duration}\n"))
    assert "the run's duration cannot be given in 'dur'" in msg


@pytest.mark.parametrize(
    ("duration", "warmup", "bad"),
    [("10ep", "10ep", True), ("10ep", "12ep", True), ("10ep", "1dur", True), ("500ba", "500ba", True),
     ("10ep", "9.5ep", False), ("10ep", "0.5dur", False), ("10ep", "0ep", False)],
)
def test_warmup_must_be_shorter_than_the_run(tmp_path: Path, duration: str, warmup: str, bad: bool) -> None:
    path = write(tmp_path, "r.yaml", f"duration: {duration}\nschedule: {{warmup: {warmup}}}\n")
    if not bad:
        load_recipe(path)
        return
    msg = one_problem(path)
    assert msg.startswith(f"{path}:2: schedule.warmup: warmup {warmup} is not shorter than the run's "
                          f"duration {duration}")


def test_nesterov_needs_momentum(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "optimizer:\n  momentum: 0\n  nesterov: true\n")
    msg = one_problem(path)
    assert msg.startswith(f"{path}:3: optimizer.nesterov: Nesterov needs momentum > 0")
    assert load_recipe(path, ["optimizer.nesterov=false"])["optimizer"]["momentum"] == 0.0
    assert load_recipe(path, ["optimizer.momentum=0.9"])["optimizer"]["nesterov"] is True


def test_cross_field_check_reports_the_set_origin(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "duration: 10ep\n")
    msg = one_problem(path, ("schedule.warmup=10ep",))
    assert msg.startswith("--set schedule.warmup=10ep: schedule.warmup: warmup 10ep is not shorter")


def test_problem_without_a_line_names_the_file(tmp_path: Path) -> None:
    """A required value that is missing has no line of its own: the file is still named."""
    path = write(tmp_path, "r.yaml", "data: {dataset: imagefolder}\n")
    for msg in problems(path):
        assert msg.startswith(f"{path}:1: data.") or msg.startswith(f"{path}: ")


# --- bad files ---


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "seed: 0\ndata:\n  dataset: [digits\nmodel: x\n")
    with pytest.raises(InputError) as info:
        load_recipe(path)
    assert not isinstance(info.value, RecipeError)
    msg = str(info.value)
    assert msg.startswith(f"{path}:4: invalid YAML (")
    assert "Fix the syntax at that line." in msg


def test_yaml_syntax_error_bad_indent(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "seed: 0\na: 1\n  b: 2\n")
    with pytest.raises(InputError, match=rf"^{path}:3: invalid YAML \(mapping values are not allowed"):
        load_recipe(path)


def test_yaml_error_in_a_base_names_the_base(tmp_path: Path) -> None:
    write(tmp_path, "b/base.yaml", "seed: [\n")
    path = write(tmp_path, "r.yaml", "extends: b/base.yaml\n")
    with pytest.raises(InputError, match=r"base\.yaml:\d+: invalid YAML"):
        load_recipe(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="recipe file not found") as info:
        load_recipe(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)


def test_a_folder_is_not_a_recipe(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder, not a recipe file"):
        load_recipe(tmp_path)


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("3\n", "int")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, "r.yaml", text)
    with pytest.raises(InputError, match=f"a recipe must be a YAML mapping .*got a {kind}"):
        load_recipe(path)


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "seed: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_recipe(path)


# --- idempotence: recipe.yaml of a run directory re-runs the run ---


def reload(r: Recipe, folder: Path) -> Recipe:
    path = folder / "rerun" / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(r.to_yaml())
    return load_recipe(path)


def test_quickstart_round_trips(tmp_path: Path) -> None:
    r = load_recipe(QUICKSTART)
    again = reload(r, tmp_path)
    assert again.data == r.data
    assert again.to_yaml() == r.to_yaml()
    assert yaml.safe_load(r.to_yaml()) == r.data


def test_round_trip_with_extends_and_overrides(tmp_path: Path) -> None:
    write(tmp_path, "base/b.yaml", """
        duration: 12ep
        precision: bf16
        data: {dataset: synthetic, batch_size: 16, augment: [random_crop, hflip], train_subset: 64}
        optimizer: {name: adam, lr: 2.0e-3, eps: 1.0e-8, betas: [0.8, 0.99]}
        schedule: {name: multistep, warmup: 0.1dur, gamma: 0.5}
        methods:
          label_smoothing: {smoothing: 0.05}
    """)
    child = write(tmp_path, "child.yaml", """
        extends: base/b.yaml
        model: {name: resnet9, width: 8}
        eval: {every: 50ba}
    """)
    r = load_recipe(child, ["data.augment=[hflip]", "name='with spaces: and colon'", "seed=11",
                            "schedule.milestones=[3ep, 0.9dur, 100ba]", "eval.every=null"])
    assert r.name == "with spaces: and colon"
    assert r["schedule"]["milestones"] == ["3ep", "0.9dur", "100ba"]
    again = reload(r, tmp_path)
    assert again.data == r.data
    assert again.to_yaml() == r.to_yaml()


def test_round_trip_of_defaults_only(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "plain.yaml", ""))
    assert reload(r, tmp_path).data == r.data


def test_to_yaml_is_readable(tmp_path: Path) -> None:
    text = load_recipe(QUICKSTART).to_yaml()
    assert text.startswith("name: quickstart\n")
    assert "augment: [random_crop]\n" in text  # lists in flow style
    assert "\ndata:\n  dataset: digits\n" in text  # sections in block style
    assert "!!" not in text  # plain YAML, no Python tags


# --- seeds ---


def test_with_seed(tmp_path: Path) -> None:
    r = load_recipe(QUICKSTART)
    s = r.with_seed(42)
    assert s.seed == 42 and s["seed"] == 42
    assert r.seed == 0
    assert s.source == r.source
    assert {**s.data, "seed": 0} == r.data
    s.data["optimizer"]["lr"] = 99.0  # a deep copy: the original is untouched
    assert r["optimizer"]["lr"] == 0.05
    assert reload(s, tmp_path).data == s.data


# --- timm / torchvision models ---


def test_timm_model_validates(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "r.yaml", 'model: {name: "timm:resnet18", kwargs: {drop_rate: 0.1}}\n'))
    assert r["model"] == {"name": "timm:resnet18", "sync_bn": False, "kwargs": {"drop_rate": 0.1}}
    assert reload(r, tmp_path).data == r.data


def test_timm_model_typo_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", 'model: {name: "timm:resnet1888"}\n')
    msg = one_problem(path)
    assert msg.startswith(f"{path}:1: model.name: timm has no model 'resnet1888'.")
    assert "Did you mean 'resnet18'?" in msg
    assert "trainbench list models" in msg


def test_torchvision_model_validates(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "r.yaml", 'model: {name: "torchvision:resnet18"}\n'))
    assert r["model"] == {"name": "torchvision:resnet18", "sync_bn": False, "kwargs": {}}


def test_torchvision_model_typo(tmp_path: Path) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", 'model: {name: "torchvision:resnet180"}\n'))
    assert "torchvision has no model 'resnet180'." in msg
    assert "Did you mean 'resnet18'?" in msg


def test_external_model_unknown_key(tmp_path: Path) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", 'model: {name: "timm:resnet18", width: 3}\n'))
    assert "model.width: unknown key 'width' for model 'timm:resnet18'" in msg


def test_external_model_kwargs_must_be_a_mapping(tmp_path: Path) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", 'model: {name: "timm:resnet18", kwargs: [1]}\n'))
    assert "model.kwargs: expected a mapping, got [1]" in msg


def test_a_self_timed_schedules_own_problem_is_reported_not_a_missing_duration(tmp_path: Path) -> None:
    msg = one_problem(write(tmp_path, "r.yaml", "duration: null\nschedule: {name: cyclic, t0: 0ep}\n"))
    assert "schedule.t0: t0 must be a positive time" in msg and "needs the run's duration" not in msg


# --- merging: 'extends' lists and --set mappings layer like a file on its base ---


def test_extends_list_applies_the_component_switch_between_bases(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "optimizer: {name: sgd, lr: 0.3, momentum: 0.9, exempt_norm_bias: true}\n")
    write(tmp_path, "b.yaml", "optimizer: {name: adam, lr: 0.002}\n")
    both = load_recipe(write(tmp_path, "c.yaml", "extends: [a.yaml, b.yaml]\n"))
    inline = load_recipe(write(tmp_path, "d.yaml", "extends: a.yaml\noptimizer: {name: adam, lr: 0.002}\n"))
    assert both["optimizer"] == inline["optimizer"]
    assert both["optimizer"]["name"] == "adam" and "momentum" not in both["optimizer"]
    assert both["optimizer"]["exempt_norm_bias"] is True  # the section's common keys stay


def test_extends_list_switch_to_a_self_timed_schedule_drops_the_duration(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "duration: 20ep\nschedule: {name: cosine}\n")
    write(tmp_path, "b.yaml", "schedule: {name: cyclic, t0: 2ep, cycles: 2}\n")
    both = load_recipe(write(tmp_path, "c.yaml", "extends: [a.yaml, b.yaml]\n"))
    inline = load_recipe(write(tmp_path, "d.yaml",
                               "extends: a.yaml\nschedule: {name: cyclic, t0: 2ep, cycles: 2}\n"))
    assert both["duration"] == inline["duration"] != "20ep"


def test_a_problem_from_a_later_base_is_blamed_on_that_base(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "optimizer: {name: sgd, momentum: 0.9}\n")
    b = write(tmp_path, "b.yaml", "seed: 1\noptimizer: {name: adam, betas: fast}\n")
    msg = one_problem(write(tmp_path, "c.yaml", "extends: [a.yaml, b.yaml]\n"))
    assert msg.startswith(f"{b.resolve()}:2: optimizer.betas: ")


def test_set_mapping_merges_key_by_key(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """
        optimizer: {name: adam, lr: 0.002, betas: [0.8, 0.99]}
        methods:
          label_smoothing: {smoothing: 0.2}
    """)
    r = load_recipe(path, ["optimizer={lr: 0.01}"])
    assert (r["optimizer"]["name"], r["optimizer"]["lr"]) == ("adam", 0.01)
    assert r["optimizer"]["betas"] == [0.8, 0.99]
    r = load_recipe(path, ["methods={ema: {decay: 0.9}}"])
    assert set(r["methods"]) == {"label_smoothing", "ema"}
    assert r["methods"]["label_smoothing"] == {"smoothing": 0.2}


def test_set_mapping_switches_the_component_like_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml",
                 "optimizer: {name: sgd, lr: 0.3, momentum: 0.9, exempt_norm_bias: true}\n")
    r = load_recipe(path, ["optimizer={name: adam, lr: 0.01}"])
    assert (r["optimizer"]["name"], r["optimizer"]["lr"]) == ("adam", 0.01)
    assert "momentum" not in r["optimizer"] and r["optimizer"]["exempt_norm_bias"] is True
    # the same as a file on top of this one, and as switching key by key in any order
    child = write(tmp_path, "child.yaml", "extends: r.yaml\noptimizer: {name: adam, lr: 0.01}\n")
    assert load_recipe(child)["optimizer"] == r["optimizer"]
    assert load_recipe(path, ["optimizer.lr=0.01", "optimizer.name=adam"])["optimizer"] == r["optimizer"]


def test_set_null_then_keys_replaces_a_section_on_purpose(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """
        optimizer: {name: sgd, lr: 0.3, momentum: 0.9, exempt_norm_bias: true}
        methods:
          label_smoothing: {smoothing: 0.2}
    """)
    fresh = load_recipe(write(tmp_path, "fresh.yaml", "optimizer: {lr: 0.05}\n"))["optimizer"]
    for sets in (["optimizer=null", "optimizer={lr: 0.05}"], ["optimizer={lr: 0.05}", "optimizer=null"]):
        assert load_recipe(path, sets)["optimizer"] == fresh  # resets apply first
    assert load_recipe(path, ["methods=null"])["methods"] == {}
    assert set(load_recipe(path, ["methods.ema.decay=0.9", "methods=null"])["methods"]) == {"ema"}


def test_set_mapping_problem_is_blamed_on_the_set_item(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "optimizer: {lr: 0.1}\n")
    msg = one_problem(path, ("optimizer={lr: fast}",))
    assert msg.startswith("--set optimizer={lr: fast}: optimizer.lr: expected a number")


def test_apply_override_merges_mappings_through_the_switch_rule() -> None:
    raw: dict = {"optimizer": {"name": "adam", "lr": 0.1, "betas": [0.9, 0.99]}, "seed": 1}
    apply_override(raw, ("optimizer",), {"lr": 0.2})
    assert raw == {"optimizer": {"name": "adam", "lr": 0.2, "betas": [0.9, 0.99]}, "seed": 1}
    apply_override(raw, ("optimizer",), {"name": "sgd", "momentum": 0.5})
    assert raw == {"optimizer": {"name": "sgd", "momentum": 0.5}, "seed": 1}
    apply_override(raw, ("optimizer",), None)
    assert raw == {"optimizer": None, "seed": 1}
    apply_override(raw, ("optimizer", "lr"), 0.3)  # a null section is created again
    assert raw == {"optimizer": {"lr": 0.3}, "seed": 1}


def test_extends_hint_only_for_a_file_named_in_extends(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_recipe(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: recipe file not found. Check the path."
    child = write(tmp_path, "child.yaml", "seed: 0\nextends: sub/missing.yaml\n")
    with pytest.raises(InputError) as info:
        load_recipe(child)
    assert str(info.value) == (
        f"{tmp_path / 'sub' / 'missing.yaml'}: recipe file not found (named in 'extends' at "
        f"{child}:2). Check the path: relative paths in 'extends' are resolved from the including "
        "file's folder.")
