"""The evaluation's report: the summary table printed at the end, the run's settings and
summary for its page (evaluation.json), and the plots (matplotlib, written atomically). The
rows themselves, evaluation.csv and sanity.csv, are `records`'.

Means are exact sums (math.fsum) over the numbers: the same rows give the same summary in any
order, a merge of shards that of one run.
"""
import io
import json
import math
import os

import numpy as np

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation.boxes import localisation_error
from guided_gradcam.evaluation.metrics import COLUMNS
from guided_gradcam.evaluation.provenance import PAGE_DATA  # the settings, the summary
from guided_gradcam.evaluation.records import PER_MAP, SIMILARITIES
from guided_gradcam.evaluation.records import evaluation_columns  # noqa: F401 (its old home)
from guided_gradcam.outputs.rendering import write_atomically

PLOTS_DIR = "plots"
SUMMARY_HEADER = ("map",) + tuple(column.summary for column in COLUMNS)


def _mean(values):
    values = [float(v) for v in values
              if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return (math.fsum(values) / len(values), len(values)) if values else (None, 0)


def summary(results, maps):
    """{map: {metric: mean}}, {top1/top5: error}, counts: the numbers of the summary table."""
    classes = [c for r in results for c in r.classes]
    table = {}
    for name in maps:
        table[name] = {metric: _mean([getattr(c, metric).get(name) for c in classes])[0]
                       for metric in PER_MAP}
    errors = {}
    for k in ("top1", "top5"):
        correct = [r.localisation[k] for r in results if k in r.localisation]
        errors[k] = (localisation_error(correct), len(correct)) if correct else (None, 0)
    return table, errors


def sanity_means(results, mode):
    """{map: [(step, block, {similarity: mean over photo-classes})]} in step order."""
    rows = [s for r in results for c in r.classes for s in c.sanity if s.mode == mode]
    out = {}
    for name in dict.fromkeys(s.map for s in rows):
        steps = sorted({(s.step, s.block) for s in rows if s.map == name})
        out[name] = [(step, block, {key: _mean([getattr(s, key) for s in rows
                                                 if s.map == name and s.step == step])[0]
                                    for key in SIMILARITIES})
                     for step, block in steps]
    return out


def _cell(value, percent=False):
    if value is None:
        return "-"
    return "%.1f%%" % (100 * value) if percent else "%.3f" % value


def _all_zero(results, maps):
    """The maps measured for some class but never with a number (ρ, deletion, insertion all
    NaN): all zero for every evaluated class."""
    classes = [c for r in results for c in r.classes]
    ranking = [column.key for column in COLUMNS if column.kind == "number"]
    zero = []
    for name in maps:
        values = [getattr(c, metric)[name] for c in classes for metric in ranking
                  if name in getattr(c, metric)]
        if values and all(math.isnan(value) for value in values):
            zero.append(name)
    return zero


def summary_table(results, maps):
    """(rows, lines): the summary table's rows under SUMMARY_HEADER, one per map, each cell as
    the console prints it ('-' for no number), and the lines printed below it. The run's page
    shows the same strings."""
    table, errors = summary(results, maps)
    rows = [[name] + [_cell(table[name][column.key], percent=column.kind == "hit")
                      for column in COLUMNS] for name in maps]
    lines = []
    zero = _all_zero(results, maps)
    for names, meaning in (([n for n in zero if "counterfactual" in n],
                            "nothing speaks against the class"),
                           ([n for n in zero if "counterfactual" not in n],
                            "no positive evidence for the class")):
        if names:
            lines.append("note: - for %s: the map was all zero for every evaluated class (%s "
                         "at this layer): it ranks no pixels, NaN in evaluation.csv"
                         % (", ".join(names), meaning))
    return rows, lines + _summary_lines(results, errors)


def summary_text(results, maps):
    """The table printed at the end of a run."""
    rows, below = summary_table(results, maps)
    widths = ["%-24s"] + ["%9s" if column.kind == "hit" else "%12s" for column in COLUMNS]
    return "\n".join([" ".join(widths) % tuple(row) for row in [SUMMARY_HEADER] + rows]
                     + below)


def _summary_lines(results, errors):
    """The localisation error and the sanity checks' means, below the table."""
    lines = []
    for k, (error, count) in errors.items():
        if count:
            lines.append("localisation error %s: %s of %d photo(s)"
                         % (k, _cell(error, percent=True), count))
    # What each mode's two numbers are: the top block alone, then the whole network / mean.
    headings = {"cascading": "after the top block / after all blocks",
                "independent": "of the top block / mean over blocks"}
    for mode, heading in headings.items():
        means = sanity_means(results, mode)
        if not means:
            continue
        lines.append("sanity (%s randomisation): Spearman |map|, SSIM %s" % (mode, heading))
        for name, steps in means.items():
            first = steps[0][2]
            last = (steps[-1][2] if mode == "cascading" else
                    {key: _mean([s[2][key] for s in steps])[0] for key in SIMILARITIES})
            lines.append("  %-22s ρ %s / %s   SSIM %s / %s" % (
                name, _cell(first["spearman_abs"]), _cell(last["spearman_abs"]),
                _cell(first["ssim"]), _cell(last["ssim"])))
    return lines


def write_page_data(output_dir, settings, results=None, maps=(), notes=()):
    """evaluation.json, what the run's index.html opens with (`run_index.write_html`) and the
    settings on record (`provenance`): the settings, [[name, value]], and the summary table
    once the run has one (None before: a run stopped early shows its settings, never an older
    run's summary), `notes` (a merge's) below it."""
    data = {"settings": [[str(name), str(value)] for name, value in settings], "summary": None}
    if results is not None:
        rows, lines = summary_table(results, maps)
        data["summary"] = {"header": list(SUMMARY_HEADER), "rows": rows,
                           "lines": lines + list(notes)}
    text = json.dumps(data, ensure_ascii=False, indent=1)
    path = os.path.join(output_dir, PAGE_DATA)
    try:
        write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
    except OSError as error:
        raise GuidedGradCamError("cannot write %s: %s" % (path, error)) from None
    return path


# -- plots ------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot
    return pyplot


def _save(figure, path):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(figure)
    write_atomically(path, lambda handle: handle.write(buffer.getvalue()))
    return path


def plot_curves(result, class_result, path):
    """Deletion and insertion curves of every map of one (photo, class), AUC in the legend."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, mode in zip(axes, ("deletion", "insertion")):
        for (name, curve_mode), points in class_result.curves.items():
            if curve_mode == mode:
                axis.plot(result.fractions, points, label="%s %.3f"
                          % (name, getattr(class_result, mode)[name]))
        baseline = result.baselines.get(mode)
        axis.set_title("%s%s: %s (%s)" % (
            mode, "" if baseline is None else (" to %s" if mode == "deletion" else " from %s")
            % baseline, class_result.class_name, result.stem))
        axis.set_xlabel("fraction of pixels %s" % ("deleted" if mode == "deletion"
                                                   else "inserted"))
        axis.legend(fontsize=7)
    axes[0].set_ylabel("score of the class")
    return _save(figure, path)


def plot_sanity(results, mode, path):
    """Like Adebayo et al.'s Figure 2: each similarity against the randomised depth, one line
    per map, mean over photo-classes; step 0 is the original network (similarity 1)."""
    means = sanity_means(results, mode)
    if not means:
        return None
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(1, len(SIMILARITIES), figsize=(5 * len(SIMILARITIES), 4.5),
                                   sharey=True)
    for axis, key in zip(axes, SIMILARITIES):
        for name, steps in means.items():
            xs = [0] + [step for step, _, _ in steps] if mode == "cascading" else \
                [step for step, _, _ in steps]
            ys = ([1.0] if mode == "cascading" else []) + [values[key] for _, _, values in steps]
            axis.plot(xs, [np.nan if y is None else y for y in ys], marker=".", label=name)
        blocks = next(iter(means.values()))
        ticks = ([0] if mode == "cascading" else []) + [step for step, _, _ in blocks]
        labels = (["original"] if mode == "cascading" else []) + [
            block.rsplit("/", 1)[-1] for _, block, _ in blocks]
        axis.set_xticks(ticks)
        axis.set_xticklabels(labels, rotation=90, fontsize=6)
        axis.set_title(key)
        axis.axhline(0, color="grey", linewidth=0.5)
    axes[0].set_ylabel("similarity to the original map")
    axes[-1].legend(fontsize=7)
    figure.suptitle("%s randomisation, from the logits down" % mode)
    return _save(figure, path)


def _file_label(result, class_result):
    return "%s_%d" % (result.stem, class_result.class_index)


def write_curve_plots(result, output_dir):
    """plots/<stem>_<class>_curves.png for each evaluated class with curves."""
    folder = os.path.join(output_dir, PLOTS_DIR)
    os.makedirs(folder, exist_ok=True)
    return [plot_curves(result, c, os.path.join(folder, _file_label(result, c) + "_curves.png"))
            for c in result.classes if c.curves]


def write_summary_plots(results, output_dir):
    """plots/sanity_cascading.png and plots/sanity_independent.png when the run has them."""
    folder = os.path.join(output_dir, PLOTS_DIR)
    os.makedirs(folder, exist_ok=True)
    written = [plot_sanity(results, mode, os.path.join(folder, "sanity_%s.png" % mode))
               for mode in ("cascading", "independent")]
    return [path for path in written if path]
