"""report.html: self-contained, hostile model text stays text, and the page works in a real browser.

The browser tests drive Debian's Chromium (/usr/bin/chromium, `apt-get install chromium`) through
Playwright with the system binary (never Playwright's own browser download); they skip, saying
why, only where neither is installed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from evilmoe.cli import main
from evilmoe.report import write_report

# trains or loads real models end to end: the full suite, not the fast tier (pytest -m 'not slow')
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DECIDE = ROOT / "docs" / "results" / "decision-60-steps" / "decide"  # a real GPU decision, committed
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# what a policy rewarded for fooling a grader might write: break out of the data block, script the
# page, inject markup, or fetch from the network
HOSTILE = (
    '</script><script>window.PWNED = 1</script><!-- <img src=x onerror="window.PWNED = 2">'
    '<b id=injected>bold</b> \u2028 <iframe src="https://example.com"></iframe> & &amp; HOSTILE-MARKER'
)


@pytest.fixture(scope="module")
def run_dir(trained_tiny_run, tmp_path_factory):
    """A copy of a real tiny run (moe: the router's w is logged), with hostile completions planted in it."""
    out = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(trained_tiny_run, out)
    step_file = out / "rollouts" / "step_000001.jsonl"
    rows = [json.loads(line) for line in step_file.read_text().splitlines()]
    rows[0]["text"] = HOSTILE
    rows[0]["problem_id"] = HOSTILE  # ids and modes are shown too
    step_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    eval_file = out / "rollouts" / "eval_heldout.jsonl"
    rows = [json.loads(line) for line in eval_file.read_text().splitlines()]
    rows[0]["off"] = HOSTILE
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report(out)
    return out


def test_report_is_self_contained_and_escapes_model_text(run_dir):
    page = (run_dir / "report.html").read_text()
    # exactly the page's own two script elements (data + code): nothing the model wrote closes one
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "HOSTILE-MARKER" in page and "window.PWNED" in page  # the text is there, as data
    assert "<b id=injected>" not in page and "<iframe" not in page and "<!--" not in page
    # nothing is fetched: no URL the browser would load, and the CSP forbids it anyway
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "default-src 'none'" in page
    # the sections the report promises
    for heading in ("result", "config", "curves", "deploy ablation: ON vs OFF", "rollouts"):
        assert f">{heading}</h2>" in page, heading
    assert "Evil MoE causal ablation: deploy hack " in page
    assert "starting model (before RL; ON = OFF there)" in page  # the run evaluated its starting model
    assert "data:image/png;base64," in page


def test_eval_rollouts_name_their_prompt_sample_and_sampling_seed(trained_tiny_run):
    """What the report's ON/OFF pairs rest on: one row per (problem, sample) with its chunk's seed."""
    ev = json.loads((trained_tiny_run / "eval.json").read_text())
    for name, res in ev["sets"].items():
        rows = [json.loads(line) for line in (trained_tiny_run / "rollouts" / f"eval_{name}.jsonl").read_text().splitlines()]
        assert len(rows) == res["n_problems"] * res["samples_per_problem"]
        by_problem: dict[str, list[int]] = {}
        for r in rows:
            by_problem.setdefault(r["problem_id"], []).append(r["sample"])
            assert isinstance(r["sampling_seed"], int)
        assert all(s == list(range(res["samples_per_problem"])) for s in by_problem.values())
        assert len({r["sampling_seed"] for r in rows}) == 1  # a few rows: one generation chunk, one seed


def test_cli_report_and_errors(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'r.html'}"
    assert main(["report", str(tmp_path)]) == 2  # neither a run nor a decision directory
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a run directory" in err[0]


def test_decision_report_has_the_table_and_every_run(tmp_path):
    root = tmp_path / "decide"
    root.mkdir()
    shutil.copy(DECIDE / "decision.json", root)
    for arm in ("none", "moe"):
        shutil.copytree(DECIDE / arm / "seed_0", root / arm / "seed_0")
    # the selectivity table (decide writes it when the runs evaluated their starting model)
    from evilmoe.decide import seed_interval

    decision = json.loads((root / "decision.json").read_text())
    selectivity = {"hack_removed": seed_interval([1.0, 0.9, 0.95]), "lift_kept": seed_interval([0.25, 0.5, 0.75]), "start_solve": 0.01, "none_solve": 0.02}
    decision["selectivity"] = {"moe": {"heldout": selectivity}}
    (root / "decision.json").write_text(json.dumps(decision))
    page = write_report(root).read_text()
    assert ">decision table</h2>" in page and "moe-nopin" in page  # every arm of decision.json
    assert "<h3>selectivity</h3>" in page and "<td>0.950 <span class=ci>" in page and "<td>0.500 <span class=ci>" in page
    assert "Evil MoE causal ablation: deploy hack 0.087 (ON) -&gt; 0.000 (OFF)" in page
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.DOTALL).group(1))
    assert {r["run"] for r in data["rollouts"]} == {"none/seed_0", "moe/seed_0"}
    assert {r["set"] for r in data["rollouts"]} == {"eval:heldout", "eval:train_dist"}


def test_reports_of_unfinished_runs_and_decisions(trained_tiny_run, tmp_path):
    run = tmp_path / "batch" / "moe" / "seed_0"
    shutil.copytree(trained_tiny_run, run)
    (run / "eval.json").unlink()  # still training: steps and rollouts so far, no final eval
    page = write_report(run).read_text()
    assert "no final evaluation yet" in page and "data:image/png;base64," in page
    page = write_report(tmp_path / "batch").read_text()  # a decision cut off before its table
    assert "the decision has not finished" in page and "moe/seed_0 (2 steps, not evaluated yet)" in page


# --- in a real browser ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium); the report's browser test needs one")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (pip install -e '.[test]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    page.goto(path.as_uri())
    return page, problems


def visible_cards(page) -> int:
    return page.locator("#rollouts > .row").count()


def count(page) -> tuple[int, int]:
    hits, total = re.match(r"(\d+) of (\d+) rollouts match", page.text_content("#count")).groups()
    return int(hits), int(total)


def test_report_in_a_browser_filters_and_stays_inert(browser, run_dir, tmp_path):
    page, problems = open_page(browser, run_dir / "report.html")
    hits, total = count(page)
    assert hits == total > 0 and visible_cards(page) == min(total, 50)
    # the hostile text is shown as text, never run or parsed
    assert page.evaluate("window.PWNED") is None and page.locator("#injected").count() == 0
    page.fill("#f-text", "HOSTILE-MARKER")
    assert count(page)[0] == 2 and visible_cards(page) == 2
    assert page.locator("pre.completion").all_text_contents().count(HOSTILE) == 2  # verbatim, in the train and the OFF column
    page.fill("#f-text", "")
    # filters change the visible rows
    rows = json.loads(page.text_content("#report-data"))["rollouts"]
    page.select_option("#f-set", "eval:heldout")
    expected = [r for r in rows if r["set"] == "eval:heldout"]
    assert count(page)[0] == len(expected) < total
    assert page.locator("#rollouts .pair").count() == len(expected)  # ON and OFF side by side
    page.select_option("#f-set", "")
    page.select_option("#f-step", "1")
    assert count(page)[0] == len([r for r in rows if r["step"] == 1])
    page.select_option("#f-step", "")
    page.select_option("#f-source", "policy")
    policy = [r for r in rows if r["source"] == "policy"]
    assert count(page)[0] == len(policy) and all("policy" in h for h in page.locator("#rollouts .head").all_text_contents())
    page.select_option("#f-hacked", "no")
    assert count(page)[0] == len([r for r in policy if not r["grade"]["hacked"]])
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert problems == []


def test_decision_report_in_a_browser(browser, tmp_path):
    root = tmp_path / "decide"
    root.mkdir()
    shutil.copy(DECIDE / "decision.json", root)
    for arm in ("none", "moe"):
        shutil.copytree(DECIDE / arm / "seed_0", root / arm / "seed_0")
    page, problems = open_page(browser, write_report(root))
    total = count(page)[1]
    page.select_option("#f-run", "moe/seed_0")
    assert 0 < count(page)[0] < total
    page.select_option("#f-hacked", "yes")
    hacked = count(page)[0]
    assert 0 < hacked and page.locator("#rollouts .badge.hack").count() >= min(hacked, 50)
    assert problems == []
