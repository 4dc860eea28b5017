"""Hostile or broken recipe files and --set items: each is refused fast (well under 2 s) with
one message naming the file (and line) and the fix, exit code 2 from the CLI, no traceback,
nothing written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.errors import InputError
from trainbench.recipe import RecipeError, load_recipe
from trainbench.recipe_files import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    YamlRefused,
    bounded_loader,
    parse_yaml,
)

FAST_S = 2.0  # the bound for refusing any of these


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def refused(path: Path, overrides: tuple[str, ...] = ()) -> str:
    """The message of a recipe that must be refused as bad input (not as field problems),
    checking that refusing it is fast."""
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        load_recipe(path, overrides)
    elapsed = time.perf_counter() - start
    assert not isinstance(info.value, RecipeError)
    assert elapsed < FAST_S, f"took {elapsed:.2f} s"
    return str(info.value)


def laughs(levels: int = 9) -> str:
    """The 'billion laughs' shape: 9 aliases per level, 9**levels values once expanded."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


SET_BOMB = "model.kwargs={" + laughs().strip().replace("\n", ", ") + "}"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- alias bombs and recursive aliases ---


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    text = laughs()
    assert len(text) < 1024  # a 1 KB file that would expand to 9**9 (387 million) values
    msg = refused(write(tmp_path, "bomb.yaml", text))
    assert msg.startswith(f"{tmp_path / 'bomb.yaml'}:4: more than {MAX_VALUES} keys and values "
                          "once YAML aliases (*name) are expanded")
    assert "a recipe has a few hundred" in msg


def test_alias_bomb_inside_a_section_and_in_a_base(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "model:\n  kwargs:\n" + textwrap.indent(laughs(), "    "))
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nseed: 1\n")
    msg = refused(child)
    assert msg.startswith(f"{tmp_path / 'base.yaml'}:6: more than {MAX_VALUES} keys and values")


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """
        data: {augment: &aug [hflip]}
        optimizer: {lr: &lr 0.2, weight_decay: 0.0}
        schedule: {name: multistep, milestones: [3ep, 6ep]}
        methods:
          label_smoothing: {smoothing: *lr}
    """)
    r = load_recipe(path)
    assert r["data"]["augment"] == ["hflip"]
    assert r["methods"]["label_smoothing"]["smoothing"] == 0.2


def test_too_many_plain_values_are_refused_early(tmp_path: Path) -> None:
    path = write(tmp_path, "flat.yaml", "".join(f"k{i}: {i}\n" for i in range(60_000)))
    assert path.stat().st_size < MAX_FILE_BYTES
    msg = refused(path)
    assert msg.startswith(f"{path}:{MAX_VALUES // 2}: more than {MAX_VALUES} keys and values")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    for text in ("data: &d {dataset: digits, again: *d}\n", "seed: 0\nx: &x [1, *x]\n"):
        path = write(tmp_path, "rec.yaml", text)
        msg = refused(path)
        assert msg.startswith(f"{path}:{text.count(chr(10))}: this alias refers to a value that "
                              "contains it (a recursive structure)")


def test_undefined_alias_is_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "seed: 0\noptimizer: {lr: *nope}\n")
    msg = refused(path)
    assert msg.startswith(f"{path}:2: invalid YAML (found undefined alias")


# --- files that are not UTF-8 text ---


def test_latin1_file_names_the_byte_and_offset(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.yaml", "seed: 0\nname: caf\xe9\n".encode("latin-1"))
    msg = refused(path)
    assert msg == (f"{path}:2: not UTF-8 text: byte 0xE9 at offset 17 (invalid continuation byte). "
                   "Save the file as UTF-8.")


def test_utf16_file_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path, "u16.yaml", "seed: 0\n".encode("utf-16"))
    msg = refused(path)
    assert msg.startswith(f"{path}:1: not UTF-8 text: byte 0xFF at offset 0")
    assert "It looks like UTF-16 text. Save the file as UTF-8." in msg


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.yaml", "\ufeffseed: 4\n".encode())
    assert load_recipe(path).seed == 4


def test_control_characters_name_the_line(tmp_path: Path) -> None:
    # (libyaml counts bytes, the 'é's make that differ from the character offset)
    path = write(tmp_path, "nul.yaml", "# éééééééééé\nname: \x00\nseed: 0\n")
    msg = refused(path)
    assert msg.startswith(f"{path}:2: invalid YAML (character #x0000 is not allowed in YAML text)")


# --- paths that are not small regular files ---


def test_a_folder(tmp_path: Path) -> None:
    msg = refused(tmp_path)
    assert msg == f"{tmp_path}: is a folder, not a recipe file. Give a .yaml file, e.g. {tmp_path}/*.yaml."


def test_a_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    msg = refused(fifo)
    assert msg.startswith(f"{fifo}: is a named pipe (FIFO), not a regular file; recipes are read "
                          "only from regular files.")


def test_a_device() -> None:
    msg = refused(Path("/dev/zero"))  # reading it would never end
    assert msg.startswith("/dev/zero: is a character device, not a regular file")


def test_a_file_larger_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.truncate(3 * MAX_FILE_BYTES)  # sparse: no 3 MiB written to disk
    msg = refused(path)
    assert msg.startswith(f"{path}: is 3.0 MiB, larger than the 1 MiB a recipe file may be")


def test_a_file_that_grows_after_stat_is_still_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "r.yaml", "# " + "x" * (MAX_FILE_BYTES + 10) + "\n")
    real_stat = os.stat

    def small_stat(p: object, *args: object, **kwargs: object) -> os.stat_result:
        st = real_stat(p, *args, **kwargs)  # type: ignore[arg-type]
        return os.stat_result((*st[:6], 10, *st[7:]))  # st_size, as /proc files report 0

    monkeypatch.setattr(os, "stat", small_stat)
    monkeypatch.setattr(os, "fstat", lambda fd: small_stat(path))
    msg = refused(path)
    assert msg.startswith(f"{path}: is larger than the 1 MiB a recipe file may be")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.yaml", "seed: 0\n")
    path.chmod(0)
    try:
        msg = refused(path)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert msg == f"{path}: cannot read the recipe file (permission denied). Check its permissions, " \
                  f"e.g. chmod u+r {path}."


def test_permission_denied_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same as above where the tests run as root (who may read any file)."""
    path = write(tmp_path, "secret.yaml", "seed: 0\n")

    def denied(*_args: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    msg = refused(path)
    assert msg == f"{path}: cannot read the recipe file (permission denied). Check its permissions, " \
                  f"e.g. chmod u+r {path}."


def test_nul_in_an_extends_path(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", 'extends: "a\\0b.yaml"\n')
    msg = refused(path)
    assert "cannot read the recipe file (embedded null byte) (named in 'extends' at " \
           f"{path}:1)" in msg


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "huge", "latin1"])
def test_the_same_checks_for_a_base(tmp_path: Path, kind: str) -> None:
    """A bad file reached through 'extends' is named, with the file and line that named it."""
    base = {"folder": tmp_path / "base", "fifo": tmp_path / "base.yaml", "device": Path("/dev/null"),
            "huge": tmp_path / "base.yaml", "latin1": tmp_path / "base.yaml"}[kind]
    if kind == "folder":
        base.mkdir()
    elif kind == "fifo":
        os.mkfifo(base)
    elif kind == "huge":
        with base.open("wb") as f:
            f.truncate(2 * MAX_FILE_BYTES)
    elif kind == "latin1":
        base.write_bytes(b"seed: 1\nname: \xe9\n")
    child = write(tmp_path, "child.yaml", f"seed: 0\nextends: {base}\n")
    msg = refused(child)
    expected = {"folder": "is a folder, not a recipe file", "fifo": "is a named pipe (FIFO)",
                "device": "is a character device", "huge": "is 2.0 MiB, larger than",
                "latin1": "not UTF-8 text: byte 0xE9 at offset 14"}[kind]
    assert msg.startswith(f"{base}{':2' if kind == 'latin1' else ''}: {expected}")
    assert f"(named in 'extends' at {child}:2)" in msg


# --- nesting ---


def test_deep_nesting_in_a_file(tmp_path: Path) -> None:
    for text in (f"seed: 0\nx: {nested(MAX_DEPTH)}\n",  # our limit
                 f"seed: 0\nx: {nested(100_000)}\n"):  # also beyond libyaml's own (1000 levels)
        path = write(tmp_path, "deep.yaml", text)
        msg = refused(path)
        assert msg == (f"{path}:2: values are nested deeper than {MAX_DEPTH} levels; a recipe "
                       "needs a few. Flatten them.")


def test_deep_block_mapping(tmp_path: Path) -> None:
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5))
    path = write(tmp_path, "deep.yaml", text)
    msg = refused(path)
    assert msg.startswith(f"{path}:{MAX_DEPTH}: values are nested deeper than {MAX_DEPTH} levels")


def test_nesting_at_the_limit_parses() -> None:
    value, _ = parse_yaml(nested(MAX_DEPTH - 1), "x")
    assert isinstance(value, list)


def test_aliases_that_nest_too_deep(tmp_path: Path) -> None:
    half = MAX_DEPTH // 2 + 2
    path = write(tmp_path, "r.yaml", f"a: &a {nested(half)}\nb: {'[' * half}*a{']' * half}\n")
    msg = refused(path)
    assert msg.startswith(f"{path}:2: this alias nests values deeper than {MAX_DEPTH} levels")


def test_long_extends_chain(tmp_path: Path) -> None:
    for i in range(30):
        write(tmp_path, f"r{i}.yaml", f"extends: r{i + 1}.yaml\n")
    write(tmp_path, "r30.yaml", "seed: 3\n")
    msg = refused(tmp_path / "r0.yaml")
    assert msg.startswith(f"{tmp_path / 'r19.yaml'}:1: 'extends' goes more than 20 files deep "
                          "(r0.yaml -> ... -> r20.yaml)")


def test_extends_diamonds_are_read_once(tmp_path: Path) -> None:
    """Each file extends the next one twice: 2**16 loads without reading each file once."""
    for i in range(16):
        write(tmp_path, f"d{i}.yaml", f"extends: [d{i + 1}.yaml, d{i + 1}.yaml]\n")
    write(tmp_path, "d16.yaml", "seed: 8\n")
    start = time.perf_counter()
    assert load_recipe(tmp_path / "d0.yaml").seed == 8
    assert time.perf_counter() - start < FAST_S


# --- duplicate keys and merge keys ---


def test_duplicate_key_is_an_error_with_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yaml", """
        seed: 0
        optimizer:
          lr: 0.1
          momentum: 0.9
          lr: 0.2
    """)
    msg = refused(path)
    assert msg == (f"{path}:5: key 'lr' is written twice in the same mapping (lines 3 and 5); YAML "
                   "would silently keep the last one. Remove one of them.")


def test_duplicate_top_level_section(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yaml", "data: {batch_size: 8}\nseed: 1\ndata: {augment: [hflip]}\n")
    assert refused(path).startswith(f"{path}:3: key 'data' is written twice in the same mapping "
                                    "(lines 1 and 3)")


def test_keys_that_yaml_reads_as_the_same_value_are_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yaml", "methods:\n  mixup: {alpha: 0.2}\n  'mixup': {alpha: 0.4}\n")
    assert refused(path).startswith(f"{path}:3: key 'mixup' is written twice")


def test_the_same_key_in_different_mappings_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "optimizer: {name: sgd}\nmodel: {name: small_cnn}\n")
    assert load_recipe(path)["model"]["name"] == "small_cnn"


def test_merge_keys_work_and_explicit_keys_win(tmp_path: Path) -> None:
    """YAML merge keys are supported: the keys written next to them win, as YAML says."""
    r = load_recipe(write(tmp_path, "r.yaml", """
        optimizer:
          <<: {name: sgd, lr: 0.3, momentum: 0.1}
          momentum: 0.5
        methods:
          mixup: &mix {alpha: 0.3}
          cutmix: {<<: *mix, prob: 0.5}
    """))
    assert (r["optimizer"]["lr"], r["optimizer"]["momentum"]) == (0.3, 0.5)
    assert (r["methods"]["cutmix"]["alpha"], r["methods"]["cutmix"]["prob"]) == (0.3, 0.5)


def test_a_problem_in_a_merged_key_points_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """
        optimizer:
          <<: {lr: fast, momentum: 0.1}
          momentum: 0.5
    """)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:2: optimizer.lr: expected a number, got 'fast' (str)"]


# --- the same limits without libyaml (PyYAML's pure-Python parser) ---


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (laughs(), 4, f"more than {MAX_VALUES} keys and values"),
        ("x: &x [1, *x]\n", 1, "this alias refers to a value that contains it"),
        (f"x: {nested(MAX_DEPTH)}\n", 1, f"values are nested deeper than {MAX_DEPTH} levels"),
        (f"x: {nested(300)}\n", 1, f"values are nested deeper than {MAX_DEPTH} levels"),
        ("a: 1\nb: 2\na: 3\n", 3, "key 'a' is written twice in the same mapping (lines 1 and 3)"),
    ],
)
def test_both_parsers_refuse_alike(text: str, line: int, expected: str) -> None:
    for libyaml in ([False, True] if __import__("yaml").__with_libyaml__ else [False]):
        start = time.perf_counter()
        with pytest.raises(YamlRefused) as info:
            parse_yaml(text, "r.yaml", bounded_loader(libyaml))
        assert time.perf_counter() - start < FAST_S
        assert (info.value.line, info.value.message[: len(expected)]) == (line, expected)
    value, lines = parse_yaml("a: {b: 1, <<: {c: 2}}\n", "r.yaml", bounded_loader(False))
    assert value == {"a": {"b": 1, "c": 2}} and str(lines[("a", "c")]) == "r.yaml:1"


# --- the same classes through --set ---


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (SET_BOMB,
         f"VALUE: more than {MAX_VALUES} keys and values once YAML aliases (*name) are expanded"),
        ("model.kwargs=&x [1, *x]", "VALUE: this alias refers to a value that contains it"),
        (f"model.kwargs={nested(MAX_DEPTH + 1)}", f"VALUE: values are nested deeper than {MAX_DEPTH} levels"),
        (f"model.kwargs={nested(100_000)}", f"VALUE: values are nested deeper than {MAX_DEPTH} levels"),
        (f"model.kwargs={nested(MAX_DEPTH - 1)}", "KEY and VALUE together nest deeper than 50 levels"),
        ("a." * 60 + "b=1", f"KEY has more than {MAX_DEPTH} levels"),
        ("optimizer={lr: 0.1, lr: 0.2}", "VALUE: key 'lr' is written twice in the same mapping; YAML "
                                          "would silently keep the last one."),
        ("name=caf\udce9", "not UTF-8 text: byte 0xE9 at offset 8 (unexpected end of data). The shell "
                           "passed bytes that are not UTF-8"),
        ("name=\ud800", "character '\\ud800' at offset 5 is not text"),
        ("name=" + "x" * (MAX_FILE_BYTES + 1), "VALUE is longer than 1 MiB"),
        ("name=a\x00b", "VALUE is not valid YAML (character #x0000 is not allowed in YAML text)"),
    ],
)
def test_hostile_set_items(tmp_path: Path, item: str, expected: str) -> None:
    path = write(tmp_path, "r.yaml", "seed: 0\n")
    msg = refused(path, (item,))
    assert msg.startswith("--set '")
    assert expected in msg
    assert len(msg) < 400  # a huge item is cut in the message


def test_memory_and_recursion_errors_become_input_errors(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A last resort: no traceback even if a limit above were missed."""
    import trainbench.recipe as recipe

    path = write(tmp_path, "r.yaml", "seed: 0\n")
    for exc in (RecursionError, MemoryError):
        def boom(*_args: object, exc: type[Exception] = exc) -> None:
            raise exc()

        monkeypatch.setattr(recipe, "read_yaml", boom)
        msg = refused(path)
        assert msg == (f"{path}: the recipe (with its 'extends' and --set items) is too large or too "
                       f"deeply nested to load ({exc.__name__}).")


# --- the command line: exit 2, the message, no traceback, nothing written ---


def _hostile(tmp_path: Path) -> Iterator[tuple[str, Path, list[str], str]]:
    yield "bomb", write(tmp_path, "bomb.yaml", laughs()), [], "once YAML aliases (*name) are expanded"
    yield "latin1", write(tmp_path, "l1.yaml", b"seed: 0\nname: caf\xe9\n"), [], "not UTF-8 text: byte 0xE9"
    yield "deep", write(tmp_path, "deep.yaml", f"x: {nested(10_000)}\n"), [], "nested deeper than 50"
    yield "dup", write(tmp_path, "dup.yaml", "seed: 0\nseed: 1\n"), [], "key 'seed' is written twice"
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    yield "fifo", fifo, [], "is a named pipe (FIFO)"
    yield "folder", tmp_path, [], "is a folder, not a recipe file"
    ok = write(tmp_path, "ok.yaml", "seed: 0\n")
    yield "set-bomb", ok, [SET_BOMB], "VALUE: more than"


@pytest.fixture
def hostile(tmp_path: Path) -> Callable[[str], tuple[Path, list[str], str]]:
    cases = {name: (path, sets, expected) for name, path, sets, expected in _hostile(tmp_path / "in")}
    return cases.__getitem__


CASES = ["bomb", "latin1", "deep", "dup", "fifo", "folder", "set-bomb"]


@pytest.fixture(scope="module", autouse=True)
def _warm_cli(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The first command imports what the CLI loads lazily: time the refusals, not that."""
    CliRunner().invoke(app, ["validate", str(tmp_path_factory.mktemp("warm") / "none.yaml")])


@pytest.mark.parametrize("command", ["validate", "run", "show"])
@pytest.mark.parametrize("case", CASES)
def test_cli_refuses_with_exit_2(tmp_path: Path, hostile: Callable[[str], tuple[Path, list[str], str]],
                                 command: str, case: str) -> None:
    path, sets, expected = hostile(case)
    out = tmp_path / "out"
    args = [command, str(path), *(a for s in sets for a in ("--set", s))]
    if command == "run":
        args += ["--out", str(out)]
    start = time.perf_counter()
    result = CliRunner().invoke(app, args)
    assert time.perf_counter() - start < FAST_S
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # not an exception that escaped
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert text.startswith("error: ")
    assert expected in text
    assert not out.exists()  # nothing written


def test_run_refuses_before_importing_torch(tmp_path: Path) -> None:
    """Importing torch takes seconds: 'run' must refuse a bad recipe before it does."""
    bomb = write(tmp_path, "bomb.yaml", laughs())
    code = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from trainbench.cli import app
        result = CliRunner().invoke(app, ["run", {str(bomb)!r}, "--out", {str(tmp_path / 'out')!r}])
        print(result.exit_code, "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.stdout.split() == ["2", "False"], done.stderr
