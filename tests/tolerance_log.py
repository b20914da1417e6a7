"""Measures how much of each tolerance the tests use: with GUIDED_GRADCAM_TOLERANCE_LOG=FILE,
every `np.testing.assert_allclose` also appends one JSON line to FILE: the test, the call's
place, atol, rtol, the largest |actual - desired| and the largest fraction of the allowed
difference (atol + rtol·|desired|) used. `python tests/tolerance_log.py FILE [FILE ...]` prints
the calls closest to their tolerance, across the runs (e.g. the two regimes `.ci/run` runs)."""
import collections
import json
import os
import sys

import numpy as np

_ORIGINAL = np.testing.assert_allclose


def install(log_path):
    def measured(actual, desired, rtol=1e-7, atol=0, *args, **kwargs):
        record(log_path, sys._getframe(1), actual, desired, rtol, atol)
        return _ORIGINAL(actual, desired, rtol, atol, *args, **kwargs)
    np.testing.assert_allclose = measured


def record(log_path, frame, actual, desired, rtol, atol):
    try:
        a, d = np.broadcast_arrays(np.asarray(actual, np.float64), np.asarray(desired, np.float64))
        finite = np.isfinite(a) & np.isfinite(d)
        diff = np.abs(a - d)[finite]
        allowed = (atol + rtol * np.abs(d))[finite]
        largest = float(diff.max()) if diff.size else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            used = float(np.max(np.where(diff > 0, diff / allowed, 0.0))) if diff.size else 0.0
    except (TypeError, ValueError):  # strings, ragged: nothing to measure
        return
    entry = {"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
             "where": "%s:%d" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno),
             "atol": float(atol), "rtol": float(rtol), "diff": largest, "used": used}
    with open(log_path, "a") as log:
        log.write(json.dumps(entry) + "\n")


def summary(paths, top=40):
    worst = collections.defaultdict(lambda: {"diff": 0.0, "used": 0.0})
    for path in paths:
        with open(path) as log:
            for line in log:
                entry = json.loads(line)
                key = (entry["where"], entry["atol"], entry["rtol"])
                slot = worst[key]
                slot["diff"] = max(slot["diff"], entry["diff"])
                slot["used"] = max(slot["used"], entry["used"])
                slot["test"] = entry["test"]
    rows = sorted(worst.items(), key=lambda item: -item[1]["used"])[:top]
    for (where, atol, rtol), slot in rows:
        print("%-38s atol %-8.1e rtol %-8.1e max diff %.2e  used %5.1f%%  %s" % (
            where, atol, rtol, slot["diff"], 100 * slot["used"], slot["test"]))


if __name__ == "__main__":
    summary(sys.argv[1:])
