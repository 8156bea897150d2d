"""The verdict of a reproduction: the paper's numbers against ours, by :data:`RULE`.

:func:`lookup` finds our number in a result by the path an entry's ``[[compare]]`` gives,
:func:`compare` judges every one, :func:`verdict` says it in one line.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from resnet_limits.reproduce.entries import Experiment
from resnet_limits.scaling import finite_or_none

__all__ = ["RULE", "compare", "lookup", "number_text", "verdict", "why_text"]

#: How a verdict is decided (printed in every report and index).
RULE = ("a number is reproduced when |ours − paper| ≤ max(tolerance, 2·√(sd_paper² + sd_ours²)), the "
        "spreads being those reported beside each number (0 where none is); where the paper's number is a "
        "bound (a rate its proof gives: 'at most', or a limit that is not reached: 'at least') only the side "
        "it bounds counts; a verdict (text) must be equal; a result is reproduced when every number is")


def number_text(x, digits: int = 2) -> str:
    """``x`` in a report: "-" for None, a float with ``digits`` decimals, anything else as text."""
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def lookup(result: Any, path: Sequence[Any]) -> Any:
    """The element of ``result`` at ``path``: a string is a key, an integer an index, a table the
    element of a list whose fields equal all of its own (e.g. ``{lr = 0.01, batch_size = 32}``).
    None where nothing is there."""
    node = result
    for step in path:
        if isinstance(step, Mapping):
            node = next((x for x in node or [] if isinstance(x, Mapping) and all(
                _same(x.get(k), v) for k, v in step.items())), None)
        elif isinstance(step, int) and isinstance(node, list):
            node = node[step] if -len(node) <= step < len(node) else None
        elif isinstance(node, Mapping):
            node = node.get(str(step))
        else:
            return None
        if node is None:
            return None
    return node


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def why_text(spec: Mapping[str, Any], mode: str) -> Optional[str]:
    """The entry's explanation of a difference in this number (``why``: one text, or a table of
    texts by mode, ``{quick = "...", full = "..."}``); None where it gives none."""
    why = spec.get("why")
    if isinstance(why, Mapping):
        why = why.get(mode)
    return str(why) if why else None


def _judge(spec: Mapping[str, Any], result: Any, default_tol: float, mode: str) -> dict[str, Any]:
    """One row of the comparison: our number (and spread) at ``spec['ours']`` against the paper's."""
    paper = spec["paper"]
    row = {k: spec.get(k) for k in ("quantity", "source", "paper", "paper_sd")}
    row["side"] = spec.get("side", "both")
    row["why"] = why_text(spec, mode)
    raw = lookup(result, spec["ours"])
    if isinstance(paper, str):
        return {**row, "ours": raw, "ok": raw == paper, "missing": raw is None}
    scale = float(spec.get("ours_scale", 1.0))
    ours, sd = finite_or_none(raw), finite_or_none(lookup(result, spec["ours_sd"])) if "ours_sd" in spec else None
    seeds = lookup(result, spec["ours_seeds"]) if "ours_seeds" in spec else None
    if ours is not None:
        ours, sd = ours * scale, (sd * scale if sd is not None else None)
    if spec.get("log10"):
        ours, sd = (math.log10(ours) if ours and ours > 0 else None), None
    tol = max(float(spec.get("tolerance", default_tol)), 2 * math.hypot(spec.get("paper_sd") or 0.0, sd or 0.0))
    row.update(ours=ours, ours_sd=sd, tolerance=tol, log10=bool(spec.get("log10")), sd_is=spec.get("sd_is"),
               ours_seeds=[None if finite_or_none(v) is None else finite_or_none(v) * scale for v in seeds] if seeds else None,
               missing=ours is None)
    diff = row["difference"] = None if ours is None else ours - float(paper)
    beyond = None if diff is None else {"both": abs(diff), "at most": diff, "at least": -diff}[row["side"]]
    row["ok"] = beyond is not None and beyond <= tol
    return row


def compare(exp: Experiment, result: Any, mode: str = "full") -> list[dict[str, Any]]:
    """Every ``[[compare]]`` of ``exp`` judged on ``result`` (:data:`RULE`); ``mode`` ("quick" or
    "full") picks each row's ``why`` (its own, else the entry's)."""
    default = {"why": exp.why} if exp.why else {}
    return [_judge({**default, **spec}, result, exp.tolerance, mode) for spec in exp.compare]


def verdict(rows: Sequence[Mapping[str, Any]], mode: Mapping[str, Any]) -> str:
    """The one-line verdict of a reproduction from its compared rows (:data:`RULE`)."""
    if mode.get("compare") is False:
        return f"not compared: {mode.get('why', 'this mode is not comparable with the paper')}"
    if not rows:
        return "no paper numbers to compare with"
    bad = [r for r in rows if not r["ok"]]
    if not bad:
        return f"reproduced: all {len(rows)} numbers within tolerance"
    text = f"differs: {len(bad)} of {len(rows)} numbers outside tolerance"
    off = [r for r in bad if not r["missing"] and not isinstance(r["paper"], str)]
    if off:
        worst = max(off, key=lambda r: abs(r["difference"]) / r["tolerance"] if r["tolerance"] else math.inf)
        text += (f"; furthest {worst['quantity']}: ours {number_text(worst['ours'])} vs paper "
                 f"{number_text(float(worst['paper']))} (off by {worst['difference']:+.2f}, "
                 f"tolerance {worst['tolerance']:.2f})")
    for r in bad:
        if isinstance(r["paper"], str) and not r["missing"]:
            text += f"; {r['quantity']}: {r['ours']} (paper: {r['paper']})"
    missing = [r["quantity"] for r in bad if r["missing"]]
    if missing:
        text += f"; not in our result: {', '.join(missing)}"
    whys = list(dict.fromkeys(" ".join(r["why"].split()).rstrip(".") for r in bad if r.get("why")))
    if len(whys) == 1:
        text += f". Why we think so: {whys[0]}"
    elif whys:
        text += ". Why we think so: " + " ".join(f"({i}) {w};" for i, w in enumerate(whys, 1)).rstrip(";")
    return text
