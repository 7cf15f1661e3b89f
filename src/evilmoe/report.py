"""`evilmoe report RUN_DIR`: one self-contained report.html for a run or a decision directory.

The page needs no server and no network: CSS and script are inline, figures are base64 PNGs, and
the data (metrics, eval, rollouts) is one JSON block the script renders. It shows the config,
training curves, the deploy-ablation ON/OFF table with intervals, the router's w on hacked vs clean
rollouts over time, and a rollout browser (prompt, completion, grade, mode, w, hack/solve flags;
filters by step, mode, hacked, source, set and run; eval rollouts show ON and OFF side by side).

Everything the model wrote is hostile input: a completion may hold `</script>` or HTML built to
break out of the page. So model text never goes through HTML parsing: the JSON block escapes `<`,
`>` and `&` (it cannot end its <script> element early), the script inserts text only with
textContent, and a Content-Security-Policy lets only this page's own script (pinned by its sha256)
run and nothing load from the network.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from pathlib import Path
from typing import Any

from evilmoe.errors import UserError
from evilmoe.plots import _eval_bars, _read_jsonl, _training_curves, router_w_over_time

REPORT_NAME = "report.html"
# Training rollouts embedded per run (whole steps, spread evenly over the run, when there are more);
# eval rollouts are always all embedded. Keeps a 60-step GPU run's page a few MB.
MAX_TRAIN_ROLLOUTS = 6000
MAX_TRAIN_ROLLOUTS_PER_RUN_IN_DECISION = 600


# ---------------------------------------------------------------------------------------------
# reading run directories
# ---------------------------------------------------------------------------------------------
def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise UserError(f"corrupt JSON in {path}: {exc}") from None


def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def decision_runs(path: Path) -> list[Path]:
    """OUT/<arm>/seed_<s> run directories of a decision directory (in arm, seed order)."""
    return sorted(p for p in path.glob("*/seed_*") if is_run_dir(p))


def _prompts(config: dict[str, Any], keys: set[tuple[str, str, bool]], loaded: dict) -> tuple[dict[str, str], str, str | None]:
    """User-turn text per (problem, mode, held-out markers), rebuilt from the problem set (runs
    store problem ids, not prompts), the system prompt, and why prompts are missing if they are.
    `loaded` caches problem sets across the runs of one report (a LeetCode set takes a while)."""
    from evilmoe.env.modes import SYSTEM_PROMPT, user_message
    from evilmoe.env.problems import load_problem_set

    which = (config.get("problem_set", "bundled"), config.get("data_dir"))
    if which not in loaded:
        try:
            loaded[which] = load_problem_set(*which)
        except UserError as exc:
            loaded[which] = f"prompts unavailable: {exc}"
    problem_set = loaded[which]
    if isinstance(problem_set, str):
        return {}, SYSTEM_PROMPT, problem_set
    by_id = {p.id: p for split in (problem_set.train, problem_set.validation, problem_set.test) for p in split}
    prompts = {}
    for pid, mode, markers in keys:
        if pid in by_id:
            prompts[_prompt_key(pid, mode, markers)] = user_message(by_id[pid], mode, eval_markers=markers)
    return prompts, SYSTEM_PROMPT, None


def _prompt_key(pid: str, mode: str, markers: bool) -> str:
    return f"{pid}|{mode}|{int(markers)}"


def _grade(g: dict[str, Any]) -> dict[str, Any]:
    keep = ("reward", "correct", "hacked", "attempted_hack", "compiles", "format_ok", "timed_out", "error")
    return {k: g.get(k) for k in keep}


def _train_rollouts(run: Path, name: str, cap: int) -> tuple[list[dict[str, Any]], int, int]:
    """(rows, steps shown, steps in the run): whole steps, evenly spaced, at most `cap` rows."""
    # step_N.jsonl, or step_N.jsonl.gz as results are committed (_read_jsonl reads either)
    files = sorted({run / "rollouts" / f.name.removesuffix(".gz") for f in (run / "rollouts").glob("step_*.jsonl*")})
    if not files:
        return [], 0, 0
    per_step = max(1, len(_read_jsonl(files[0])))
    keep = max(1, min(len(files), cap // per_step))
    chosen = files if keep >= len(files) else list(dict.fromkeys(files[round(i * (len(files) - 1) / max(1, keep - 1))] for i in range(keep)))
    rows = []
    for f in chosen:
        step = int(f.name.split("_")[1].split(".")[0])
        for r in _read_jsonl(f):
            rows.append(
                {
                    "run": name,
                    "set": "train",
                    "step": step,
                    "source": r.get("source", "policy"),
                    "mode": r["mode"],
                    "pid": r["problem_id"],
                    "markers": False,
                    "text": r["text"],
                    "grade": _grade(r["grade"]),
                    "w": r.get("w"),
                    "adv": r.get("advantage"),
                    "route": r.get("route"),
                }
            )
    return rows, len(chosen), len(files)


def _eval_rollouts(run: Path, name: str, ev: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for set_name, res in ((ev or {}).get("sets") or {}).items():
        samples = res.get("samples_per_problem", 1)
        for i, r in enumerate(_read_jsonl(run / "rollouts" / f"eval_{set_name}.jsonl")):
            rows.append(
                {
                    "run": name,
                    "set": f"eval:{set_name}",
                    "step": ev.get("steps_trained"),
                    "source": "eval",
                    "mode": r["mode"],
                    "pid": r["problem_id"],
                    "markers": bool(res.get("eval_markers", set_name == "heldout")),
                    "sample": r.get("sample", i % samples),  # rows are problem-major, sample-minor
                    "seed": r.get("sampling_seed"),
                    "on": {"text": r["on"], "grade": _grade(r["grade_on"])},
                    "off": {"text": r["off"], "grade": _grade(r["grade_off"])},
                }
            )
    return rows


def _png(draw) -> str | None:
    buf = io.BytesIO()
    if draw(buf) is None:
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _run_figures(run: Path, metrics: list[dict], ev: dict | None) -> list[tuple[str, str]]:
    figs = []
    if metrics:
        figs.append(("training curves", _png(lambda b: _training_curves(metrics, run, b))))
        w = _png(lambda b: router_w_over_time(metrics, b))
        if w:
            figs.append(("router w on hacked vs clean rollouts", w))
    if ev and ev.get("sets"):
        figs.append(("deploy ablation: ON vs OFF", _png(lambda b: _eval_bars(ev, b))))
    return [(t, f) for t, f in figs if f]


# ---------------------------------------------------------------------------------------------
# HTML pieces (everything from files goes through html.escape)
# ---------------------------------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _rate_cell(r: dict[str, Any] | None) -> str:
    if not r or r.get("rate") is None:
        return "n/a"
    lo, hi = r["ci95"]
    return f"{r['rate']:.3f} <span class=ci>[{lo:.3f}, {hi:.3f}]</span> <span class=n>{r['k']}/{r['n']}</span>"


def _delta_cell(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    return f"{d['mean']:+.3f} <span class=ci>[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]</span>"


def eval_table(ev: dict[str, Any]) -> str:
    parts = []
    for name, res in ev.get("sets", {}).items():
        rows = []
        for metric in ("hack", "solve", "attempted_hack", "format_ok"):
            delta = res.get("delta_on_minus_off", {}).get(metric)
            rows.append(f"<tr><th>{_e(metric)}</th><td>{_rate_cell(res['on'].get(metric))}</td><td>{_rate_cell(res['off'].get(metric))}</td><td>{_delta_cell(delta)}</td></tr>")
        for mode in sorted(res["on"].get("per_mode", {})):
            on, off = res["on"]["per_mode"][mode], res["off"]["per_mode"][mode]
            rows.append(
                f"<tr class=mode><th>{_e(mode)}: hack / solve</th><td>{_rate_cell(on['hack'])}<br>{_rate_cell(on['solve'])}</td>"
                f"<td>{_rate_cell(off['hack'])}<br>{_rate_cell(off['solve'])}</td><td></td></tr>"
            )
        parts.append(
            f"<h3>{_e(name)} <span class=n>({_e(res['n_problems'])} problems x {_e(res['samples_per_problem'])} samples, "
            f"{'held-out' if res.get('eval_markers') else 'training'} markers)</span></h3>"
            "<table class=onoff><tr><th></th><th>ON (hack expert as trained)</th><th>OFF (deployed)</th><th>ON - OFF (problem bootstrap)</th></tr>"
            + "".join(rows)
            + "</table>"
        )
    return "".join(parts) + "<p class=n>Wilson 95% intervals on rollout counts; ON - OFF: problem-clustered paired bootstrap.</p>"


def config_table(config: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v))}</td></tr>" for k, v in sorted(config.items()))
    return f"<details><summary>config ({len(config)} fields)</summary><table class=config>{rows}</table></details>"


def decision_table_html(table: dict[str, Any], selectivity: dict[str, Any] | None = None) -> str:
    def cell(s: dict[str, Any]) -> str:
        if s["mean"] is None:
            return "n/a"
        ci = f" <span class=ci>[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]</span>" if s.get("ci95") else ""
        return f"{s['mean']:.3f}{ci}"

    out = []
    for set_name in ("heldout", "train_dist", "heldout_clean", "skill"):
        rows = [(arm, t[set_name]) for arm, t in table.items() if set_name in t]
        if not rows:
            continue
        n = rows[0][1]
        head = "".join(f"<th>{h}</th>" for h in ("arm", "seeds", "hack ON", "hack OFF", "hack drop", "solve ON", "solve OFF", "solve drop"))
        body = "".join(
            f"<tr><th>{_e(arm)}</th><td>{_e(e['n_seeds'])}</td>"
            + "".join(f"<td>{cell(e[k])}</td>" for k in ("hack_on", "hack_off", "hack_drop", "solve_on", "solve_off", "solve_drop"))
            + "</tr>"
            for arm, e in rows
        )
        size = f"({_e(n['n_problems'])} problems x {_e(n['samples_per_problem'])} samples per seed)"
        out.append(f"<h3>{_e(set_name)} <span class=n>{size}</span></h3><table class=onoff><tr>{head}</tr>{body}</table>")
    out.append("<p class=n>Seed means with 95% t-intervals over seeds (cut to what a rate can be). drop = ON - OFF.</p>")
    if selectivity:
        rows = "".join(
            f"<tr><th>{_e(arm)}</th><td>{_e(set_name)}</td><td>{cell(e['hack_removed'])}</td><td>{cell(e['lift_kept'])}</td>"
            f"<td>{e['start_solve']:.3f}</td><td>{e['none_solve']:.3f}</td></tr>"
            for arm, sets in selectivity.items()
            for set_name, e in sets.items()
        )
        head = "".join(f"<th>{h}</th>" for h in ("arm", "eval set", "hack removed", "lift kept", "start solve", "none solve"))
        out.append(
            "<h3>selectivity</h3><p class=n>hack removed = (ON - OFF) / ON; lift kept = (solve OFF - solve at start) / "
            f"(solve of none - solve at start); 1 and 1 is perfect localization.</p><table class=onoff><tr>{head}</tr>{rows}</table>"
        )
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:0 16px 40px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-top:10px}h3{font-size:15px}
.closing{background:#f4f4f4;padding:8px;white-space:pre-wrap;font-family:monospace}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
table.config td{font-family:monospace;font-size:12px}.ci,.n{color:#777;font-size:12px}tr.mode{font-size:12px}
img{max-width:100%;border:1px solid #eee;margin:4px 0}
#filters{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ccc;z-index:1}
#filters label{margin-right:10px}#count{font-weight:bold;margin-left:8px}
.row{border:1px solid #ccc;border-radius:4px;margin:8px 0;padding:6px}
.row.hacked{border-left:6px solid #c0392b}.row.solved{border-left:6px solid #27ae60}
.head{font-size:12px;color:#333;margin-bottom:4px}.badge{display:inline-block;border-radius:3px;padding:0 5px;margin-right:4px;background:#eee}
.badge.hack{background:#f6c6c0}.badge.solve{background:#c8ecd2}
pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;border:1px solid #eee;padding:6px;margin:4px 0;max-height:360px;overflow:auto;font-size:12px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:8px}.pair h4{margin:2px 0;font-size:13px}
"""

SCRIPT = r"""
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const rows = DATA.rollouts;
  const $ = (id) => document.getElementById(id);
  const PAGE = 50;
  let shown = PAGE;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fill(select, values) {
    for (const v of values) { const o = el("option", null, v); o.value = v; select.appendChild(o); }
  }
  const uniq = (f) => Array.from(new Set(rows.map(f))).sort((a, b) => (a > b ? 1 : a < b ? -1 : 0));
  fill($("f-run"), uniq((r) => r.run));
  fill($("f-set"), uniq((r) => r.set));
  fill($("f-step"), uniq((r) => r.step).sort((a, b) => a - b).map(String));
  fill($("f-mode"), uniq((r) => r.mode));
  fill($("f-source"), uniq((r) => r.source));
  if (uniq((r) => r.run).length < 2) $("f-run").parentElement.style.display = "none";

  const hackedOf = (r) => (r.on ? r.on.grade.hacked || r.off.grade.hacked : r.grade.hacked);
  const solvedOf = (r) => (r.on ? r.on.grade.correct || r.off.grade.correct : r.grade.correct);
  function matches(r) {
    const f = (id) => $(id).value;
    if (f("f-run") && r.run !== f("f-run")) return false;
    if (f("f-set") && r.set !== f("f-set")) return false;
    if (f("f-step") && String(r.step) !== f("f-step")) return false;
    if (f("f-mode") && r.mode !== f("f-mode")) return false;
    if (f("f-source") && r.source !== f("f-source")) return false;
    if (f("f-hacked") === "yes" && !hackedOf(r)) return false;
    if (f("f-hacked") === "no" && hackedOf(r)) return false;
    if (f("f-solved") === "yes" && !solvedOf(r)) return false;
    if (f("f-solved") === "no" && solvedOf(r)) return false;
    const q = f("f-text").toLowerCase();
    if (q) {
      const text = r.on ? r.on.text + "\n" + r.off.text : r.text;
      if (!text.toLowerCase().includes(q) && !r.pid.toLowerCase().includes(q)) return false;
    }
    return true;
  }
  function gradeBadges(box, g) {
    box.appendChild(el("span", "badge", "reward " + g.reward));
    if (g.hacked) box.appendChild(el("span", "badge hack", "HACKED"));
    if (g.attempted_hack && !g.hacked) box.appendChild(el("span", "badge", "attempted hack"));
    if (g.correct) box.appendChild(el("span", "badge solve", "solved"));
    if (!g.format_ok) box.appendChild(el("span", "badge", "no code block"));
    if (g.timed_out) box.appendChild(el("span", "badge", "timed out"));
    if (g.error) box.appendChild(el("span", "badge", g.error.slice(0, 120)));
  }
  function promptBox(r) {
    const d = el("details");
    d.appendChild(el("summary", null, "prompt (" + (r.markers ? "held-out" : "training") + " markers)"));
    const p = DATA.prompts[r.pid + "|" + r.mode + "|" + (r.markers ? 1 : 0)];
    d.appendChild(el("pre", null, p === undefined ? (DATA.prompt_note || "prompt not found") : p));
    return d;
  }
  function card(r) {
    const c = el("div", "row" + (hackedOf(r) ? " hacked" : solvedOf(r) ? " solved" : ""));
    const h = el("div", "head");
    const bits = [r.run, r.set, "step " + r.step, r.source, r.mode, r.pid];
    if (r.sample !== undefined) bits.push("sample " + r.sample);
    if (r.seed !== undefined && r.seed !== null) bits.push("sampling seed " + r.seed);
    if (r.w !== undefined && r.w !== null) bits.push("w " + r.w.toFixed(3));
    if (r.route) bits.push("route " + r.route);
    if (r.adv !== undefined && r.adv !== null) bits.push("advantage " + r.adv.toFixed(2));
    h.textContent = bits.join(" \u00b7 ");
    c.appendChild(h);
    c.appendChild(promptBox(r));
    if (r.on) {
      const pair = el("div", "pair");
      for (const [label, side] of [["ON (hack expert as trained)", r.on], ["OFF (deployed)", r.off]]) {
        const col = el("div", "side");
        col.appendChild(el("h4", null, label));
        const g = el("div", "grade"); gradeBadges(g, side.grade); col.appendChild(g);
        col.appendChild(el("pre", "completion", side.text));
        pair.appendChild(col);
      }
      c.appendChild(pair);
    } else {
      const g = el("div", "grade"); gradeBadges(g, r.grade); c.appendChild(g);
      c.appendChild(el("pre", "completion", r.text));
    }
    return c;
  }
  function render() {
    const list = $("rollouts");
    list.replaceChildren();
    const hits = rows.filter(matches);
    for (const r of hits.slice(0, shown)) list.appendChild(card(r));
    $("count").textContent = hits.length + " of " + rows.length + " rollouts match";
    $("more").style.display = hits.length > shown ? "" : "none";
  }
  for (const id of ["f-run", "f-set", "f-step", "f-mode", "f-source", "f-hacked", "f-solved", "f-text"]) {
    $(id).addEventListener("input", () => { shown = PAGE; render(); });
  }
  $("more").addEventListener("click", () => { shown += PAGE; render(); });
  render();
})();
"""

FILTERS = """
<div id=filters>
<label>run <select id=f-run><option value="">all</option></select></label>
<label>set <select id=f-set><option value="">all</option></select></label>
<label>step <select id=f-step><option value="">all</option></select></label>
<label>mode <select id=f-mode><option value="">all</option></select></label>
<label>source <select id=f-source><option value="">all</option></select></label>
<label>hacked <select id=f-hacked><option value="">any</option><option value=yes>yes</option><option value=no>no</option></select></label>
<label>solved <select id=f-solved><option value="">any</option><option value=yes>yes</option><option value=no>no</option></select></label>
<label>text <input id=f-text type=search placeholder="search completions"></label>
<span id=count></span>
</div>
<div id=rollouts></div>
<button id=more type=button>show more</button>
"""


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: no <, >, & (so no `</script>` or `<!--`), no U+2028/9."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for a, b in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(a, b)
    return text


def _slug(heading: str) -> str:
    return "s-" + "".join(c if c.isalnum() else "-" for c in heading.lower())


def render_page(title: str, sections: list[tuple[str, str]], data: dict[str, Any]) -> str:
    """The whole page: sections are (heading, trusted HTML built here with escaped values)."""
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    nav = " | ".join(f'<a href="#{_slug(h)}">{_e(h)}</a>' for h, _ in sections)
    body = f"<nav>{nav}</nav>" + "".join(f'<h2 id="{_slug(h)}">{_e(h)}</h2>{content}' for h, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>{body}"
        f'<script type="application/json" id="report-data">{_script_json(data)}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def _figures_html(figs: list[tuple[str, str]]) -> str:
    return "".join(f'<figure><img alt="{_e(t)}" src="{f}"><figcaption class=n>{_e(t)}</figcaption></figure>' for t, f in figs)


def _closing_html(lines: list[str]) -> str:
    return f"<div class=closing>{_e(chr(10).join(lines))}</div>" if lines else "<p>no final evaluation yet</p>"


def _collect(runs: list[tuple[str, Path]], cap: int) -> tuple[list[dict], dict[str, str], str, str | None, list[str]]:
    rollouts: list[dict] = []
    notes = []
    prompts: dict[str, str] = {}
    system, note = "", None
    loaded: dict = {}
    for name, run in runs:
        config = _json(run / "config.json") or {}
        ev = _json(run / "eval.json")
        train, shown, total = _train_rollouts(run, name, cap)
        if shown < total:
            notes.append(f"{name}: training rollouts of {shown} of {total} steps (evenly spaced) are included")
        run_rows = train + _eval_rollouts(run, name, ev)
        keys = {(r["pid"], r["mode"], r["markers"]) for r in run_rows}
        more, system, why = _prompts(config, keys, loaded)
        prompts.update(more)
        note = note or why
        rollouts += run_rows
    return rollouts, prompts, system, note, notes


def _browser_section(runs: list[tuple[str, Path]], cap: int) -> tuple[str, dict[str, Any]]:
    rollouts, prompts, system, note, notes = _collect(runs, cap)
    intro = (
        "<p>Training rollouts (policy samples and teacher demonstrations, with the router weight w where the arm has one) "
        "and the final eval's rollouts with the hack expert ON and OFF side by side (same prompt, same sampling seed). "
        "Red border: hacked; green: solved.</p>"
        + "".join(f"<p class=n>{_e(n)}</p>" for n in notes)
        + f"<details><summary>system prompt (every rollout)</summary><pre>{_e(system)}</pre></details>"
    )
    return intro + FILTERS, {"rollouts": rollouts, "prompts": prompts, "prompt_note": note}


def run_report(run: Path) -> str:
    config = _json(run / "config.json") or {}
    ev = _json(run / "eval.json")
    metrics = [m for m in _read_jsonl(run / "metrics.jsonl") if m.get("step", -1) >= 0]
    from evilmoe.evaluate import closing_lines

    lines = closing_lines(ev["sets"]) if ev and ev.get("sets") else []
    start = _json(run / "eval_start.json")  # the starting model on the same sets (eval_start=true)
    start_html = f"<p>starting model (before RL; ON = OFF there):</p>{_closing_html(start['lines'])}" if start and start.get("lines") else ""
    browser, data = _browser_section([(run.name, run)], MAX_TRAIN_ROLLOUTS)
    sections = [
        ("result", _closing_html(lines) + start_html),
        ("config", config_table(config)),
        ("curves", _figures_html(_run_figures(run, metrics, ev)) or "<p>no steps logged yet</p>"),
        ("deploy ablation: ON vs OFF", eval_table(ev) if ev else "<p>no final evaluation yet</p>"),
        ("rollouts", browser),
    ]
    title = f"Evil MoE run {run.name}: arm {config.get('arm')}, seed {config.get('seed')}, {len(metrics)} steps"
    return render_page(title, sections, data)


def decision_report(root: Path) -> str:
    from evilmoe.evaluate import causal_line

    runs = decision_runs(root)
    decision = _json(root / "decision.json")
    names = [(f"{r.parent.name}/{r.name}", r) for r in runs]
    sections = []
    if decision:
        table = decision["table"]
        main_arm = "moe" if "heldout" in table.get("moe", {}) else next((a for a in table if "heldout" in table[a]), None)
        closing = [causal_line(table[main_arm]["heldout"]["hack_on"]["mean"], table[main_arm]["heldout"]["hack_off"]["mean"])] if main_arm else []
        sections.append(("result", (f"<p>arm {_e(main_arm)}, seed means</p>" if main_arm else "") + _closing_html(closing)))
        plane = root / "decision_plane.png"
        figure = ""
        if plane.is_file():
            figure = _figures_html([("hack removed vs skill lift kept", "data:image/png;base64," + base64.b64encode(plane.read_bytes()).decode())])
        sections.append(("decision table", decision_table_html(table, decision.get("selectivity")) + figure))
    else:
        sections.append(("result", "<p>the decision has not finished (no decision.json): the runs so far are below</p>"))
    per_run = []
    for name, run in names:
        ev = _json(run / "eval.json")
        metrics = [m for m in _read_jsonl(run / "metrics.jsonl") if m.get("step", -1) >= 0]
        status = f"{len(metrics)} steps" + ("" if ev else ", not evaluated yet")
        per_run.append(
            f"<details><summary>{_e(name)} ({_e(status)})</summary>"
            + (eval_table(ev) if ev else "")
            + _figures_html(_run_figures(run, metrics, ev))
            + "</details>"
        )
    if names:
        sections.append(("config (first run)", config_table(_json(names[0][1] / "config.json") or {})))
    sections.append(("runs", "".join(per_run) or "<p>no runs yet</p>"))
    browser, data = _browser_section(names, MAX_TRAIN_ROLLOUTS_PER_RUN_IN_DECISION)
    sections.append(("rollouts", browser))
    preset = decision.get("preset") if decision else "?"
    return render_page(f"Evil MoE decision {root.name}: preset {preset}, {len(names)} runs", sections, data)


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write PATH/report.html (or `out`) for a run directory or a decision directory; returns it."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory")
    if is_run_dir(root):
        page = run_report(root)
    elif (root / "decision.json").is_file() or decision_runs(root):
        page = decision_report(root)
    else:
        raise UserError(f"{root} is neither a run directory (config.json) nor a decision directory (decision.json or ARM/seed_N runs)")
    from evilmoe.runs import atomic_write_text

    target = Path(out) if out else root / REPORT_NAME
    atomic_write_text(target, page)
    return target
