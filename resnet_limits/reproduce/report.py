"""What a reproduction writes for people: ``DIR/NAME/report.md`` and ``DIR/index.md``.

:func:`report_markdown` sets the paper's numbers beside ours with their verdicts, the figures
(with the paper's figure each one shows), the command, package versions and hardware
(:func:`environment`); :func:`index_markdown` lists every reproduction under ``DIR`` with its
one-line verdict.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from resnet_limits.reproduce.entries import Experiment, availability
from resnet_limits.reproduce.verdicts import RULE, number_text
from resnet_limits.sweeps.folder import write_text

__all__ = ["INDEX", "RECORD", "REPORT", "RESULT", "environment", "index_markdown", "read_record", "report_markdown",
           "write_index"]

VERSIONS = ("jax", "jaxlib", "flax", "optax", "diffrax", "equinox", "numpy", "resnet-limits")
#: In ``DIR/NAME``: the record of a finished reproduction, its report, the result it was judged on;
#: in ``DIR``: the index.
RECORD, REPORT, RESULT, INDEX = "reproduction.json", "report.md", "result.json", "index.md"


def environment() -> dict[str, Any]:
    """Package versions and hardware: what made the numbers."""
    import jax

    versions = {}
    for pkg in VERSIONS:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    devices = jax.devices()
    return {
        "versions": versions, "python": platform.python_version(), "platform": platform.platform(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "usable_cores": cores,
        "jax_backend": jax.default_backend(),
        "jax_devices": [f"{d.platform}:{d.id} ({getattr(d, 'device_kind', '')})" for d in devices],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _sd(x: float) -> str:
    """A spread: two decimals, or one significant digit below 0.01 (0.004, not 0.00)."""
    return f"{x:.1g}" if 0 < abs(x) < 0.005 else number_text(x)


def _ours_cell(r: Mapping[str, Any]) -> str:
    if isinstance(r["paper"], str) or r["ours"] is None:
        return "not in our result" if r["ours"] is None else str(r["ours"])
    cell = number_text(r["ours"]) + (f" ± {_sd(r['ours_sd'])}" if r.get("ours_sd") is not None else "")
    seeds = [s for s in (r.get("ours_seeds") or []) if s is not None]
    if seeds:
        cell += f" (sd over {len(seeds)} seeds: {', '.join(number_text(s) for s in seeds)})"
    elif r.get("sd_is") and r.get("ours_sd") is not None:
        cell += f" ({r['sd_is']})"
    return cell


def _cell(x) -> str:
    """``x`` as the text of a Markdown table cell (a ``|`` inside would end the cell)."""
    return " ".join(str(x).split()).replace("|", "\\|")


def _comparison_table(rows: Sequence[Mapping[str, Any]], compared: bool = True) -> list[str]:
    lines = ["| quantity | paper | ours | difference | tolerance | reproduced | paper's source |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        sd = f" ± {number_text(r['paper_sd'])}" if r.get("paper_sd") is not None else ""
        paper = str(r["paper"]) if isinstance(r["paper"], str) else number_text(float(r["paper"])) + sd
        diff = "-" if r.get("difference") is None else f"{r['difference']:+.2f}"
        tol = "equal" if isinstance(r["paper"], str) else {
            "both": "± ", "at most": "at most paper + ", "at least": "at least paper − "}[r.get("side", "both")] + \
            f"{r['tolerance']:.2f}"
        judged = ("yes" if r["ok"] else "no") if compared else "not compared"
        cells = (r["quantity"], paper, _ours_cell(r), diff, tol, judged, r["source"])
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return lines


def _why_lines(rows: Sequence[Mapping[str, Any]], compared: bool) -> list[str]:
    """Under the table: for each number outside its tolerance, why we think ours differs."""
    bad = [r for r in rows if not r["ok"]] if compared else []
    if not bad:
        return []
    lines = ["Why we think these differ:", ""]
    lines += [f"- {r['quantity']}: {' '.join((r.get('why') or 'no explanation recorded yet').split())}" for r in bad]
    return lines + [""]


def _kept_text(record: Mapping[str, Any]) -> str:
    """How much of a sweep this run trained, where it resumed a folder trained earlier."""
    sweep = record.get("sweep") or {}
    n, now = sweep.get("depths"), sweep.get("trained_now")
    if n is None or now is None or now == n:
        return ""
    return f" ({now} of {n} depths trained in this run, the others kept from an earlier one)"


def report_markdown(record: Mapping[str, Any], text: str) -> str:
    """``report.md`` of one reproduction from its record and the study's printed summary."""
    lines = [f"# {record['name']}: {record['reproduces']}", "",
             f"**Verdict: {record['verdict']}.**", "",
             f"Mode: {record['mode']}" + (f": {record['note']}" if record.get("note") else "") + ". "
             f"Wall-clock {record['seconds']:.0f} s{_kept_text(record)}, finished {record['finished']}.", "",
             f"Rule: {record['rule']}.", ""]
    if record["comparisons"]:
        compared = record.get("compared", True)
        lines += ["## The paper's numbers beside ours", "", *_comparison_table(record["comparisons"], compared), ""]
        lines += _why_lines(record["comparisons"], compared)
    if record["context"]:
        lines += ["## Made with", ""]
        lines += [f"- {k}: {_context_text(v)}" for k, v in record["context"].items()]
        lines.append("")
    if record["figures"]:
        lines += _figure_lines(record)
    if record["links"]:
        lines += ["## Files", ""]
        lines += [f"- [{lk['file']}]({lk['file']}): {lk['shows']}" + ("" if lk["present"] else " (not written)")
                  for lk in record["links"]]
        lines.append("")
    lines += ["## Summary printed by the run", "", "```text", text.rstrip(), "```", "",
              "## Command", "", "```bash", record["command"], "```", ""]
    if record["settings"].get("extra"):
        lines += [f"(with test-only arguments {record['settings']['extra']})", ""]
    if record.get("equivalent"):
        lines += ["The same run folder, step by step:", "", "```bash", record["equivalent"], "```", ""]
    lines += _environment_lines(record["environment"])
    return "\n".join(lines) + "\n"


def _figure_lines(record: Mapping[str, Any]) -> list[str]:
    """The figures, each under the paper's figure it shows; with a companion, which run is dashed."""
    lines = ["## Figures", ""]
    comp = record.get("companion")
    if comp:
        lines += [f"The figures of two runs draw the companion reproduction [{comp['name']}]({comp['report']}) "
                  f"dashed (verdict: {comp['verdict']}) and this run solid, in the same panels, as the paper "
                  f"draws its synthetic and MNIST runs.", ""]
    for fig in record["figures"]:
        caption = fig["shows"] or Path(fig["file"]).name
        lines += [f"### {caption}", "",
                  f"![{Path(fig['file']).name}]({fig['file']})" if fig["drawn"] else
                  f"({fig['file']} was not drawn in this run)", ""]
    return lines


def _context_text(v) -> str:
    if isinstance(v, list) and len(v) > 6 and all(isinstance(x, (int, float)) for x in v):
        return f"{v[0]} … {v[-1]} ({len(v)} values)"
    if isinstance(v, float):
        return f"{v:.3g}"
    return "-" if v is None else str(v)


def _environment_lines(env: Mapping[str, Any]) -> list[str]:
    lines = ["## Environment", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env["versions"].items()]
    lines += ["", f"- Python {env['python']} on {env['platform']} ({env['machine']})",
              f"- CPU: {env['cpu_count']} cores ({env['usable_cores']} usable by this process)",
              f"- JAX backend {env['jax_backend']}; devices: {', '.join(env['jax_devices'])}",
              f"- XLA_FLAGS: `{env['xla_flags'] or '(none)'}`", ""]
    return lines


def index_markdown(out, experiments: Mapping[str, Experiment], problems: Mapping[str, str]) -> str:
    """``DIR/index.md``: each experiment with its verdict (finished ones under ``out``), or why
    it has none (``problems``: name -> one line), linking the reports."""
    out = Path(out)
    lines = [f"# Reproductions in {out}", "", f"Rule: {RULE}.", "",
             "| reproduction | what it reproduces | mode | verdict | wall-clock |", "|---|---|---|---|---|"]
    for name, e in experiments.items():
        rec = read_record(out / name)
        if rec is not None:
            mode = rec["mode"] + (f": {rec['note']}" if rec.get("note") else "")
            wall = f"{rec['seconds']:.0f} s{_kept_text(rec)}"
            cells = (f"[{name}]({name}/{REPORT})", e.reproduces, mode, rec["verdict"], wall)
        else:
            why = problems.get(name) or (f"not available: {availability(e)}" if availability(e) else "not run")
            cells = (name, e.reproduces, "-", why, "-")
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return "\n".join(lines) + "\n"


def read_record(folder: Path) -> Optional[dict]:
    try:
        rec = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return rec if (folder / REPORT).is_file() else None


def write_index(out, experiments: Mapping[str, Experiment], problems: Optional[Mapping[str, str]] = None) -> Path:
    """Write ``out/index.md`` (:func:`index_markdown`); returns its path."""
    path = Path(out) / INDEX
    write_text(path, index_markdown(out, experiments, problems or {}))
    return path
