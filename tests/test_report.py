"""`trainbench report`: one self-contained HTML page holding compare's numbers, checked in a
real headless Chromium (Debian's package, driven by playwright): no console errors, no
network, the plot's traces and the table's rows as expected, a screenshot taken."""

from __future__ import annotations

import json
import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from test_trackers import fake_run  # tests/ is on sys.path (pytest's rootdir-relative import)
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.compare import compare, display_table, fmt_cost
from trainbench.fidelity import fidelity

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two recipes x two seeds (run directories written directly) and a fidelity result."""
    out = tmp_path_factory.mktemp("report-runs")
    for seed in (0, 1):
        fake_run(out, "digits-baseline", seed, accs=(0.6, 0.85, 0.9))
        fake_run(out, "digits-mixup", seed, accs=(0.55, 0.88, 0.93), sets=("methods={mixup: {alpha: 0.2}}",))
    cyc = [{"epoch": e, "test_acc": a, "train_time_s": t, "curve": 1}
           for e, a, t in ((2, 0.7, 1.0), (4, 0.8, 2.0), (8, 0.9, 4.0))]
    ref = [{**p, "test_acc": p["test_acc"] + 0.01, "train_time_s": p["train_time_s"] * 1.1} for p in cyc]
    fid = out / "fidelity" / "digits-cyclic"
    fid.mkdir(parents=True)
    (fid / "fidelity.json").write_text(fidelity("digits-cyclic", cyc, ref).to_json())
    return out


class Cells(HTMLParser):
    """The cells of the table with a given id."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", self.id) in attrs:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data


def cells(page: str, table_id: str) -> list[list[str]]:
    p = Cells(table_id)
    p.feed(page)
    return p.rows


@pytest.fixture(scope="module")
def page(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    result = runner.invoke(app, ["report", str(runs), "-o", str(path), "--baseline", "digits-baseline",
                                 "--target", "88"])
    assert result.exit_code == 0, result.output
    assert f"report: {path}" in result.output
    return path


def test_the_table_holds_compares_numbers(runs: Path, page: Path) -> None:
    html = page.read_text()
    c = compare([runs], baseline="digits-baseline", target=88)
    headers, rows = display_table(c)
    assert cells(html, "comparison") == [headers, *rows]
    assert rows[0][0] == "digits-baseline" and rows[1][0] == "digits-mixup"
    # The embedded data is compare --format json's document.
    cli = runner.invoke(app, ["compare", str(runs), "--baseline", "digits-baseline", "--target", "88",
                              "--format", "json"])
    embedded = html.split('<script type="application/json" id="comparison-data">')[1].split("</script>")[0]
    assert json.loads(embedded.replace("<\\/", "</")) == json.loads(cli.stdout)
    assert cells(html, "frontier")[1:] == [[label, str(i + 1), fmt_cost(x, "time"), f"{100 * v:.2f}"]
                                           for label, i, x, v in c.frontier]
    assert c.frontier and {f[0] for f in c.frontier} == {"digits-baseline", "digits-mixup"}
    env = cells(html, "environment")
    assert len(env) == 1 + 4 and {r[0] for r in env[1:]} == {"digits-baseline", "digits-mixup"}
    assert cells(html, "fidelity-table-1")[1][:5] == ["1", "2", "71.00", "70.00", "+1.00"]


def test_the_page_is_self_contained(page: Path) -> None:
    """No tag loads anything (scripts' contents, plotly.js among them, are not tags)."""

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[tuple[str, dict[str, str | None]]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append((tag, dict(attrs)))

    t = Tags()
    t.feed(page.read_text())
    assert not [(tag, a) for tag, a in t.tags if "src" in a or (tag == "link" and "href" in a)]
    assert all((a.get("href") or "#").startswith("#") for tag, a in t.tags if tag == "a")
    assert sum(tag == "script" for tag, _ in t.tags) >= 2  # plotly.js inlined, then each figure
    assert page.stat().st_size > 3_000_000


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium "
                    "(.ci/run installs it: apt-get install chromium)")
def test_the_report_renders_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    remote: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1300, "height": 900})
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:"))
                   else remote.append(r.url))
            tab.goto(page.as_uri())
            tab.wait_for_function("() => document.getElementById('tradeoff')?.data?.length > 0 && "
                                  "document.querySelector('#tradeoff .main-svg') !== null")
            traces: list[dict[str, Any]] = tab.evaluate(
                "() => document.getElementById('tradeoff').data.map(t => ({name: t.name, n: t.x.length, "
                "show: t.showlegend !== false, group: t.legendgroup}))")
            lr_traces = tab.evaluate("() => document.getElementById('lr-schedules').data.map(t => t.name)")
            rows = tab.evaluate("() => [...document.querySelectorAll('#comparison tbody tr')]"
                                ".map(r => r.cells[0].textContent)")
            xtype = tab.evaluate("() => document.getElementById('tradeoff').layout.xaxis.type")
            tab.locator("#tradeoff .updatemenu-button", has_text="linear x").click()
            xtype_after = tab.evaluate("() => document.getElementById('tradeoff').layout.xaxis.type")
            fid = tab.evaluate("() => document.getElementById('fidelity-1').data.length")
            shot = tmp_path / "report.png"
            tab.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == [] and remote == []
    names = {t["name"] for t in traces}
    assert {"digits-baseline (n=2)", "digits-mixup (n=2)", "Pareto frontier"} <= names
    for r in ("digits-baseline", "digits-mixup"):
        assert {f"{r}: seed 0", f"{r}: seed 1", f"{r}: seed band"} <= names
        assert all(t["n"] == 3 for t in traces if t["group"] == r and "band" not in t["name"])
    assert [t["name"] for t in traces if t["show"]] == ["digits-baseline (n=2)", "digits-mixup (n=2)",
                                                        "Pareto frontier"]
    assert rows == ["digits-baseline", "digits-mixup"]
    assert (xtype, xtype_after) == ("log", "linear")
    assert lr_traces == ["digits-baseline: LR", "digits-baseline: curve points", "digits-mixup: LR",
                         "digits-mixup: curve points"]
    assert fid == 2
    assert shot.stat().st_size > 20_000
    if os.environ.get("TRAINBENCH_SCREENSHOT"):  # keep it for a look
        shutil.copyfile(shot, os.environ["TRAINBENCH_SCREENSHOT"])


def test_report_without_plotly_is_exit_2(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    result = runner.invoke(app, ["report", str(runs), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and 'pip install "trainbench[report]"' in result.output
    assert not (tmp_path / "r.html").exists()
    bad = runner.invoke(app, ["report", str(runs), "-o", str(tmp_path / "r.png")])
    assert bad.exit_code == 2 and ".html" in bad.output
