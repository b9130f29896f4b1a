"""The report's reading: sentences made from the measured figures alone, comparing means against the seeds'
spread, so the text follows the numbers (a remedy that does not help at this budget is said not to)."""
from __future__ import annotations

from typing import Any

from gankit.lessons.measures import MEASURES, fmt

RULE = ("a difference counts when the two means differ by more than the sum of the two runs' standard "
        "deviations over seeds; otherwise it is within the seeds' spread")


def compare(run: dict[str, Any], base: dict[str, Any], better: str | None) -> dict[str, Any]:
    """One measure of ``run`` against ``base`` (aggregates from :func:`measures.aggregate`): the
    difference (``by``: its size), the spread it is judged against, and a verdict: better / worse (ranked measures),
    higher / lower (descriptive ones), within (inside the spread), one-seed (no spread) or missing."""
    if run["mean"] is None or base["mean"] is None:
        return {"verdict": "missing", "diff": None, "by": None, "spread": None}
    diff = run["mean"] - base["mean"]
    if run["std"] is None or base["std"] is None:
        return {"verdict": "one-seed", "diff": diff, "by": abs(diff), "spread": None}
    spread = run["std"] + base["std"]
    if abs(diff) <= spread:
        verdict = "within"
    elif better is None:
        verdict = "higher" if diff > 0 else "lower"
    else:
        verdict = "better" if (diff < 0 if better == "lower" else diff > 0) else "worse"
    return {"verdict": verdict, "diff": diff, "by": abs(diff), "spread": spread}


def shown(agg: dict[str, Any], integer: bool = False) -> str:
    """``mean ± std`` (or the mean alone for one seed)."""
    if agg["std"] is None:
        return fmt(agg["mean"], integer)
    return f"{fmt(agg['mean'], integer)} ± {fmt(agg['std'])}"


def sentence(measure: str, what: str, run: str, base: str, a: dict[str, Any], b: dict[str, Any],
             c: dict[str, Any]) -> str:
    """The sentence of one comparison ``c`` of run ``run`` (figures ``a``) against ``base`` (``b``)."""
    integer = MEASURES[measure].integer
    ra, rb = f"{run} ({shown(a, integer)})", f"{base} ({shown(b, integer)})"
    verdict = c["verdict"]
    if verdict == "missing":
        gone = run if a["mean"] is None else base
        return f"{what}: no figure for {gone} (every seed diverged), so no comparison."
    by, spread = fmt(c["by"], integer), fmt(c["spread"]) if c["spread"] is not None else ""
    if verdict == "one-seed":
        return (f"{what}: {ra} against {rb}, a difference of {by}; with one seed there is no spread to judge "
                "it against.")
    if verdict == "within":
        return (f"{what}: {ra} and {rb} differ by {by}, within the seeds' spread ({spread}): no difference at "
                "this budget.")
    if verdict == "better":
        return f"{what}: {ra} beat {rb} by {by}, more than the seeds' spread ({spread})."
    if verdict == "worse":
        return f"{what}: {ra} did worse than {rb} by {by}, more than the seeds' spread ({spread})."
    return f"{what}: {ra} is {verdict} than {rb} by {by}, more than the seeds' spread ({spread})."


def headline(measure: str, what: str, labels: dict[str, str], figures: dict[str, dict[str, Any]]) -> str | None:
    """The best run by the first ranked measure, and whether it is clear of every other run."""
    better = MEASURES[measure].better
    ranked = [k for k in labels if figures[k][measure]["mean"] is not None]
    if better is None or len(ranked) < 2:
        return None
    ranked.sort(key=lambda k: figures[k][measure]["mean"], reverse=better == "higher")
    best, rest = ranked[0], ranked[1:]
    ties = [k for k in rest if compare(figures[best][measure], figures[k][measure], better)["verdict"]
            in ("within", "one-seed")]
    integer = MEASURES[measure].integer
    head = f"Best {what}: {labels[best]} ({shown(figures[best][measure], integer)})"
    if not ties:
        return head + ", ahead of every other run by more than the seeds' spread."
    names = ", ".join(labels[k] for k in ties)
    return head + f", but not clear of {names} (within the seeds' spread, or one seed only)."


def reading(labels: dict[str, str], figures: dict[str, dict[str, Any]], measures: list[str],
            whats: dict[str, str], diverged: dict[str, int] | None = None, seeds: int = 0
            ) -> tuple[list[str], list[dict[str, Any]]]:
    """(sentences, comparisons) for runs ``labels`` (key -> label, the first the baseline) with ``figures``
    (key -> measure -> aggregate); ``whats``: measure -> its label in the report; ``diverged``: key -> seeds
    (of ``seeds``) whose training stopped on a non-finite loss."""
    keys = list(labels)
    base = keys[0]
    sentences, comparisons = [], []
    first_ranked = next((m for m in measures if MEASURES[m].better is not None), None)
    if first_ranked is not None:
        line = headline(first_ranked, whats[first_ranked], labels, figures)
        if line:
            sentences.append(line)
    for key, count in (diverged or {}).items():
        if count:
            sentences.append(f"{labels[key]} diverged in {count} of {seeds} seeds (training stopped on a "
                             "non-finite loss); its figures are those of the other seeds.")
    for measure in measures:
        for key in keys[1:]:
            c = compare(figures[key][measure], figures[base][measure], MEASURES[measure].better)
            comparisons.append({"measure": measure, "run": key, "against": base, **c})
            sentences.append(sentence(measure, whats[measure], labels[key], labels[base], figures[key][measure],
                                      figures[base][measure], c))
    return sentences, comparisons
