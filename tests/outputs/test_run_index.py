"""index.csv and index.html of a folder run: the rows, how they are appended, and the page in a
real headless Chromium (Debian's `chromium`, which `make test` installs when missing).

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe) with the
stdlib only: real mouse clicks on the page's buttons and real typing into its filter.
"""
import csv
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from guided_gradcam.explanation import Explanation
from guided_gradcam.labels import LabelSpace
from guided_gradcam.outputs.files import output_paths
from guided_gradcam.cli.pipeline import plan_jobs, run_jobs, targets_for
from guided_gradcam.outputs.run_index import (
    COLUMNS, RunIndex, explanation_row, read_entries, write_html)

REPO = Path(__file__).resolve().parents[2]
HEADER = ("input,stem,task,class_index,class_name,probability,value,top5,counterfactual,files,"
          "error,region_area\n")


def read_rows(folder):
    with open(Path(folder) / "index.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def make_photos(folder, count, broken=(), seed=0):
    """`count` small photos of shapes in varied colours and sizes (so that the network sees
    several classes), then the unreadable files named in `broken`; returns the sorted paths."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for index in range(count):
        size = tuple(int(side) for side in rng.integers(48, 320, 2))
        image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 6))):
            box = sorted(rng.integers(0, size[0], 2)), sorted(rng.integers(0, size[1], 2))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([box[0][0], box[1][0], box[0][1], box[1][1]],
                  fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        image.save(folder / ("photo_%03d.%s" % (index, "jpg" if index % 2 else "png")))
    for name in broken:
        (folder / name).write_text("not a picture\n")
    return sorted(str(path) for path in folder.iterdir())


def indexed_run(explainer, paths, output_dir, kinds, labels=None, skip_existing=False):
    """A folder run as the CLI makes it, recorded in output_dir's index; returns its failures."""
    jobs, _ = plan_jobs(paths, str(output_dir), kinds, skip_existing=skip_existing,
                        targets=targets_for(labels))
    with RunIndex(str(output_dir)) as index:
        return run_jobs(explainer, jobs, str(output_dir), kinds=kinds, index=index,
                        report=lambda *args: None, error=lambda message: None)


# --- index.csv ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def few_photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("few") / "photos", 3, broken=["broken.jpg"])


def test_one_row_per_explanation_and_per_failed_input(explainer, few_photos, tmp_path):
    good = [path for path in few_photos if "broken" not in path]
    stem = Path(good[0]).stem
    os.makedirs(tmp_path / (stem + "_243.npz"))  # its npz cannot replace a folder
    failures = indexed_run(explainer, few_photos, tmp_path, ("npz", "panel"), labels=[282, 243])
    assert failures == 2  # the broken file, the unwritable npz
    assert (tmp_path / "index.csv").read_text().startswith(HEADER)
    rows = read_rows(tmp_path)
    assert sorted(row["stem"] for row in rows) == sorted(
        ["broken"] + [Path(path).stem + suffix for path in good for suffix in ("_282", "_243")])
    for row in rows:
        if row["stem"] == "broken":
            assert row["input"].endswith("broken.jpg") and "broken.jpg" in row["error"]
            assert row["files"] == row["class_index"] == row["probability"] == ""
        elif row["stem"] == stem + "_243":
            assert "cannot write outputs" in row["error"] and row["files"] == ""
            assert row["class_index"] == "243"  # it was explained, only not written
        else:
            assert row["error"] == "" and row["input"] in good
            label = int(row["stem"].rsplit("_", 1)[1])
            assert (row["class_index"], row["class_name"]) == (
                str(label), {282: "tiger cat", 243: "bull mastiff"}[label])
            assert row["files"].split(";") == [
                os.path.basename(p) for p in output_paths(tmp_path, row["stem"], ("npz", "panel"))]
            assert all((tmp_path / name).is_file() for name in row["files"].split(";"))
            logits = np.load(tmp_path / (row["stem"] + ".npz"))["logits"].astype(np.float64)
            softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            assert float(row["probability"]) == pytest.approx(softmax[label], rel=1e-5)
            top5 = row["top5"].split("; ")
            assert len(top5) == 5 and top5[0].startswith("%s (%d) " % (
                explainer.labels.name(int(softmax.argmax())), softmax.argmax()))
            assert (row["task"], row["counterfactual"], row["value"]) == (
                "classification", "false", "")
    assert (tmp_path / "index.html").is_file()


def test_a_second_run_appends_under_the_same_header(explainer, few_photos, tmp_path):
    good = [path for path in few_photos if "broken" not in path]
    assert indexed_run(explainer, good, tmp_path, ("npz",)) == 0
    first = (tmp_path / "index.csv").read_bytes()
    os.remove(tmp_path / (Path(good[1]).stem + ".npz"))
    assert indexed_run(explainer, good, tmp_path, ("npz",), skip_existing=True) == 0
    after = (tmp_path / "index.csv").read_bytes()
    assert after.startswith(first) and after.count(HEADER.encode()) == 1
    assert [row["stem"] for row in read_rows(tmp_path)][len(good):] == [Path(good[1]).stem]
    assert len(read_entries(tmp_path / "index.csv")) == len(good)  # the page: latest per stem


def test_each_row_is_one_whole_line_written_after_its_files(explainer, few_photos, tmp_path,
                                                             monkeypatch):
    """What a killed run leaves: every append is one write of a whole row, made only once the
    files it lists are on disk."""
    appends, write = [], os.write

    def recording_write(fd, data):  # runs on the writer threads: records, asserts nothing
        if os.path.basename(os.readlink("/proc/self/fd/%d" % fd)) == "index.csv":
            rows = list(csv.DictReader(data.decode().splitlines(), fieldnames=COLUMNS))
            files = rows[0]["files"].split(";") if len(rows) == 1 else []
            appends.append((rows[0]["stem"], len(rows), data.endswith(b"\n"),
                            None in rows[0].values(), files,
                            all((tmp_path / name).is_file() for name in files)))
        return write(fd, data)
    monkeypatch.setattr(os, "write", recording_write)
    good = [path for path in few_photos if "broken" not in path]
    assert indexed_run(explainer, good, tmp_path, ("png", "npz"), labels=[282, 281]) == 0
    assert sorted(stem for stem, *_ in appends) == sorted(
        Path(path).stem + suffix for path in good for suffix in ("_282", "_281"))
    for stem, rows, whole_line, cut_short, files, files_exist in appends:
        assert (rows, whole_line, cut_short, len(files), files_exist) == (1, True, False, 4, True)
    assert [row["stem"] for row in read_rows(tmp_path)] == [stem for stem, *_ in appends]


def test_regression_rows_give_the_value_and_no_class():
    maps = dict.fromkeys(("cam_lowres", "cam", "gbp", "guided_gradcam", "image"))
    explanation = Explanation(label=0, logits=np.array([3.25], np.float32), probabilities=None,
                              counterfactual=True, task="regression", **maps)
    row = explanation_row("a/house.jpg", "house_top1_cf", explanation, LabelSpace(1))
    assert (row["value"], row["probability"], row["class_index"], row["class_name"],
            row["top5"], row["counterfactual"]) == ("3.25", "", "", "", "", "true")


def test_the_page_shows_the_latest_row_of_each_stem_and_its_data_cannot_end_the_script(tmp_path):
    evil = "x</script><img src=x onerror=alert(1)><!--"
    rows = [dict.fromkeys(COLUMNS, ""), dict.fromkeys(COLUMNS, ""), dict.fromkeys(COLUMNS, "")]
    rows[0].update(input="a.jpg", stem="a", error="image file is empty")
    rows[1].update(input=evil + ".jpg", stem=evil, class_index="1", class_name="goldfish",
                   probability="0.5", files=evil + "_gradcam.png;" + evil + ".npz")
    rows[2].update(input="a.jpg", stem="a", class_index="2", class_name="shark",
                   probability="0.25", files="a_panel.png")
    with open(tmp_path / "index.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows + [{"input": "torn", "stem": "torn"}])  # cut short: ignored
    (tmp_path / "index.csv").write_text((tmp_path / "index.csv").read_text()[:-8])
    write_html(str(tmp_path))
    page = (tmp_path / "index.html").read_text()
    start = page.index('<script type="application/json" id="entries">')
    data = page[page.index(">", start) + 1:page.index("</script>", start)]
    entries = json.loads(data)
    assert [(e["stem"], e["class"], e["thumb"], e["error"]) for e in entries] == [
        (evil, "goldfish (1)", evil + "_gradcam.png", None),
        ("a", "shark (2)", "a_panel.png", None)]
    # Self-contained: no linked script, style or font, nothing fetched from elsewhere.
    assert not re.search(r"\b(src|href)=|url\(|@import|@font-face|https?:", page.replace(data, ""))


# --- index.html in a real browser ------------------------------------------------------------


class Chromium:
    """Headless Chromium over the DevTools protocol: JSON messages ended by NUL, read from its
    fd 4 and written to its fd 3 (--remote-debugging-pipe)."""

    def __init__(self, profile):
        executable = shutil.which("chromium")
        assert executable, "no chromium on PATH: run `make browser` (make test does)"
        browser_in, self.to_browser = os.pipe()
        self.from_browser, browser_out = os.pipe()
        self.log = profile / "chromium.log"
        self.log_file = open(self.log, "w")
        self.process = subprocess.Popen(
            # bash: dash takes no fd numbers above 9 in redirections
            ["bash", "-c", 'exec "$@" 3<&%d 4>&%d' % (browser_in, browser_out), "bash",
             executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--user-data-dir=%s" % profile, "--window-size=1280,1000", "--no-first-run",
             "about:blank"],
            pass_fds=(browser_in, browser_out), stdout=self.log_file,
            stderr=subprocess.STDOUT)
        os.close(browser_in)
        os.close(browser_out)
        self.buffer, self.last_id = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    def call(self, method, session=None, **params):
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:  # events come in between: only the reply counts
            while b"\0" not in self.buffer:
                ready, _, _ = select.select([self.from_browser], [], [],
                                            max(0.0, deadline - time.monotonic()))
                chunk = os.read(self.from_browser, 1 << 20) if ready else b""
                assert chunk, "chromium gave no answer to %s: %s" % (
                    method, self.log.read_text()[-2000:])
                self.buffer += chunk
            text, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(text)
            if reply.get("id") == self.last_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", self.session, expression=expression,
                           returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.evaluate(expression):
                    return
            except AssertionError as error:  # no document to evaluate in, mid-navigation
                problem = error
            else:
                problem = None
            assert time.monotonic() < deadline, ("timed out waiting for", expression, problem)
            time.sleep(0.05)

    def load(self, url=None):
        """Opens url (None: reloads) and waits until the new document has loaded."""
        self.evaluate("window.previousDocument = true")
        if url:
            self.call("Page.navigate", self.session, url=url)
        else:
            self.call("Page.reload", self.session)
        self.wait_for("!window.previousDocument && document.readyState === 'complete'")

    def click(self, selector):
        """A real left click in the middle of the element."""
        x, y = self.evaluate("(() => { const box = document.querySelector(%s)"
                             ".getBoundingClientRect(); return [box.x + box.width / 2, "
                             "box.y + box.height / 2]; })()" % json.dumps(selector))
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", self.session, type=kind, x=x, y=y,
                      button="left", clickCount=1)

    def type(self, selector, text):
        """Clicks into the field, selects what it holds and types text over it."""
        self.click(selector)
        self.evaluate("document.querySelector(%s).select()" % json.dumps(selector))
        self.call("Input.insertText", self.session, text=text)

    def close(self):
        os.write(self.to_browser, b'{"id": 0, "method": "Browser.close"}\0')  # no reply awaited
        try:
            self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            os.close(self.to_browser)
            os.close(self.from_browser)
            self.log_file.close()


SHOWN = """(() => ({
  cards: [...document.querySelectorAll("#grid figure")].map((figure) => ({
    stem: figure.dataset.stem,
    class: figure.querySelector(".class").textContent,
    error: figure.querySelector(".error")?.textContent ?? null,
    src: figure.querySelector("img")?.getAttribute("src") ?? null,
    lazy: figure.querySelector("img")?.loading === "lazy"})),
  summary: document.getElementById("summary").textContent,
  page: document.getElementById("page").value,
  pages: document.getElementById("pages").textContent,
  pressed: document.querySelector("[aria-pressed=true]").dataset.sort,
  hash: location.hash}))()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Chromium(tmp_path_factory.mktemp("chromium_profile"))
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def run_of_200(explainer, tmp_path_factory):
    """A folder run over 198 photos and 2 unreadable files, panels only."""
    base = tmp_path_factory.mktemp("run_of_200")
    paths = make_photos(base / "photos", 198, broken=["broken_1.jpg", "broken_2.png"])
    assert len(paths) == 200
    assert indexed_run(explainer, paths, base / "out", ("panel",)) == 2
    return base / "out"


def test_the_page_of_a_200_image_run_pages_sorts_and_filters(browser, run_of_200):
    rows = read_rows(run_of_200)
    assert len(rows) == 200
    probability = {row["stem"]: float(row["probability"]) for row in rows if row["probability"]}
    failed = {row["stem"] for row in rows if row["error"]}
    assert len(probability) == 198 and len(failed) == 2
    by_probability = sorted(probability.values(), reverse=True)

    browser.load((run_of_200 / "index.html").as_uri())
    shown = browser.evaluate(SHOWN)
    assert (shown["summary"], shown["page"], shown["pages"], shown["pressed"]) == (
        "200 entries", "1", "2", "run")
    assert len(shown["cards"]) == 100
    for card in shown["cards"]:
        if card["stem"] in failed:
            assert card["src"] is None and card["error"] and card["class"] == "failed"
        else:
            thumbnail = urllib.parse.unquote(card["src"])  # relative to the page
            assert thumbnail == card["stem"] + "_panel.png" and card["lazy"]
            assert (run_of_200 / thumbnail).is_file()
    browser.wait_for("document.querySelector('#grid img').naturalWidth > 0")  # a real picture

    browser.click("[data-sort=desc]")
    shown = browser.evaluate(SHOWN)
    assert [probability[card["stem"]] for card in shown["cards"]] == by_probability[:100]
    assert (shown["pressed"], shown["hash"]) == ("desc", "#sort=desc")
    browser.click("#next")
    shown = browser.evaluate(SHOWN)
    assert shown["page"] == "2" and len(shown["cards"]) == 100
    assert [probability[card["stem"]] for card in shown["cards"][:98]] == by_probability[100:]
    assert {card["stem"] for card in shown["cards"][98:]} == failed  # no score: last

    browser.click("[data-sort=asc]")  # back to page 1
    shown = browser.evaluate(SHOWN)
    assert [probability[card["stem"]] for card in shown["cards"]] == by_probability[::-1][:100]

    classes = {}
    for row in rows:
        if not row["error"]:
            classes.setdefault("%s (%s)" % (row["class_name"], row["class_index"]), []).append(
                row["stem"])
    assert len(classes) >= 3, classes.keys()  # varied photos: a filter has something to do
    for label, stems in sorted(classes.items(), key=lambda item: -len(item[1]))[:3]:
        browser.type("#filter", label)
        shown = browser.evaluate(SHOWN)
        assert shown["summary"] == "%d of 200 entries" % len(stems)
        assert len(shown["cards"]) == min(100, len(stems)) and shown["page"] == "1"
        assert {card["stem"] for card in shown["cards"]} <= set(stems)
        assert {card["class"] for card in shown["cards"]} == {label}
        assert [probability[card["stem"]] for card in shown["cards"]] == sorted(
            probability[stem] for stem in stems)[:100]  # still sorted, ascending
    browser.type("#filter", "failed")
    shown = browser.evaluate(SHOWN)
    assert {card["stem"] for card in shown["cards"]} == failed
    assert {card["error"] for card in shown["cards"]} == {row["error"] for row in rows
                                                           if row["error"]}

    browser.type("#filter", label)
    before = browser.evaluate(SHOWN)
    browser.load()  # the state is in the URL: a reload shows the same
    assert browser.evaluate(SHOWN) == before
    assert before["hash"] == "#sort=asc&class=" + urllib.parse.quote_plus(label)


def test_ten_thousand_entries_open_one_page_at_a_time(browser, run_of_200, tmp_path):
    rows = [row for row in read_rows(run_of_200) if not row["error"]]
    with open(tmp_path / "index.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for number in range(10_000):
            row = dict(rows[number % len(rows)], stem="image_%05d" % number)
            writer.writerow(dict(row, files=row["stem"] + "_panel.png"))
    rebuild = subprocess.run([sys.executable, "-m", "guided_gradcam.outputs.run_index", str(tmp_path)],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert rebuild.returncode == 0 and "10000 entries" in rebuild.stdout, rebuild.stderr

    browser.load((tmp_path / "index.html").as_uri())
    shown = browser.evaluate(SHOWN)
    assert (shown["summary"], shown["pages"], len(shown["cards"])) == ("10000 entries", "100", 100)
    assert browser.evaluate("document.images.length") == 100
    opened_ms = browser.evaluate(
        "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    print("10,000 entries: page ready %.0f ms after navigation start" % opened_ms)
    assert opened_ms < 5000
    browser.click("[data-sort=desc]")
    assert len(browser.evaluate(SHOWN)["cards"]) == 100


def test_rebuilding_needs_an_index(tmp_path):
    rebuild = subprocess.run([sys.executable, "-m", "guided_gradcam.outputs.run_index", str(tmp_path)],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert rebuild.returncode == 1 and rebuild.stderr.startswith("error: ")
    assert "index.csv" in rebuild.stderr and len(rebuild.stderr.splitlines()) == 1


def test_the_cards_show_the_evaluations_numbers_of_their_own_class(browser, tmp_path):
    """evaluation.csv beside index.csv: a card shows its class's numbers, matched by the input
    path and the class (an inference.py card, or the evaluation's own `<stem>_<class>` cards);
    a photo whose own stem looks like another card's (`cat_282.jpg`) keeps its own numbers;
    other classes of the same photo, failed evaluations and counterfactual maps get no table.
    The numbers are the console's (3 decimals, '-' for NaN), a row per map with a column per
    metric it has; a card with a curve plot links to it."""
    from guided_gradcam.evaluation.records import evaluation_columns
    from guided_gradcam.evaluation.runner import map_names

    entries = [  # (stem, input, class_index, class_name, counterfactual)
        ("cat", "cat", "282", "tiger cat", "false"),  # inference.py's plain stem
        ("coffee_967", "coffee", "967", "espresso", "false"),  # the evaluation's own stem
        ("coffee", "coffee", "925", "consomme", "false"),  # evaluated, but not for this class
        ("astronaut", "astronaut", "834", "suit", "false"),  # its evaluation failed
        ("coffee_968", "coffee", "968", "cup", "true"),  # input and class match: counterfactual
        ("cat_282_2", "cat_282", "282", "tiger cat", "false"),  # a photo named cat_282.jpg
    ]
    (tmp_path / "plots").mkdir()
    Image.new("RGB", (40, 20), (200, 30, 30)).save(tmp_path / "plots" / "coffee_967_curves.png")
    with open(tmp_path / "index.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for stem, photo, class_index, class_name, counterfactual in entries:
            writer.writerow(dict(dict.fromkeys(COLUMNS, ""), input="images/%s.jpg" % photo,
                                 stem=stem, task="classification", class_index=class_index,
                                 class_name=class_name, probability="0.5",
                                 counterfactual=counterfactual,
                                 files="plots/%s_curves.png" % stem if stem == "coffee_967"
                                 else ""))
    numbers = {  # as the evaluation writes them
        ("cat", "282", "tiger cat"): dict(
            faithfulness_gradcam="0.408495", faithfulness_gbp="0.331067",
            faithfulness_guided_gradcam="0.443846", faithfulness_counterfactual="nan",
            deletion_gradcam="0.0720198", insertion_gradcam="0.0468088",
            deletion_gbp="0.0168407", pointing_gradcam="true", pointing_gbp="false",
            deletion_counterfactual="nan", insertion_guided_counterfactual="0.1236",
            top1_localised="false", top5_localised="true"),
        ("coffee", "967", "espresso"): dict(  # no boxes: no pointing game, no localisation
            faithfulness_gradcam="0.58865", faithfulness_gbp="-0.140707",
            faithfulness_guided_gradcam="0.352996", deletion_gradcam="0.121512",
            insertion_gradcam="0.810677"),
        ("coffee", "968", "cup"): dict(
            faithfulness_gradcam="0.639354", faithfulness_gbp="0.109529",
            faithfulness_guided_gradcam="0.420792", deletion_gradcam="0.00348062",
            insertion_gradcam="0.0142"),
        ("cat_282", "282", "tiger cat"): dict(faithfulness_gradcam="0.347099"),
    }
    columns = evaluation_columns(map_names())
    with open(tmp_path / "evaluation.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for (stem, class_index, class_name), values in numbers.items():
            writer.writerow(dict(dict.fromkeys(columns, ""), input="images/%s.jpg" % stem,
                                 stem=stem, class_index=class_index, class_name=class_name,
                                 probability="0.5", **values))
        writer.writerow(dict(dict.fromkeys(columns, ""), input="images/astronaut.jpg",
                             stem="astronaut", error="annotation astronaut.xml: not XML"))
    write_html(str(tmp_path))

    browser.load((tmp_path / "index.html").as_uri())
    browser.wait_for("document.querySelectorAll('#grid figure').length === 6")
    shown = browser.evaluate("""[...document.querySelectorAll("#grid figure")].map((figure) => [
      figure.dataset.stem,
      figure.querySelectorAll("table").length,
      [...figure.querySelectorAll("table.metrics tr")].map((row) =>
        [...row.children].map((cell) => cell.tagName + " " + cell.textContent)),
      figure.querySelector(".localised")?.textContent ?? null,
      figure.querySelector("a.curves")?.href ?? null])""")
    assert [stem for stem, *_ in shown] == [stem for stem, *_ in entries]
    cards = {stem: rest for stem, *rest in shown}

    def table(header, *rows, localised=None, curves=None):
        return [1, [["TH " + label for label in header]]
                + [["TH " + row[0]] + ["TD " + cell for cell in row[1:]] for row in rows],
                localised, curves]
    header = ["map", "ρ", "del ↓", "ins ↑", "pointing"]
    assert cards["cat"] == table(  # every map's numbers, 3 decimals; NaN as the summary's "-"
        header, ["gradcam", "0.408", "0.072", "0.047", "hit"],
        ["gbp", "0.331", "0.017", "", "miss"], ["guided_gradcam", "0.444", "", "", ""],
        ["counterfactual", "-", "-", "", ""], ["guided_counterfactual", "", "", "0.124", ""],
        localised="localised top1 no, top5 yes")
    curves = (tmp_path / "plots" / "coffee_967_curves.png").as_uri()
    assert cards["coffee_967"] == table(  # the columns and rows it has; its curves linked
        header[:4], ["gradcam", "0.589", "0.122", "0.811"], ["gbp", "-0.141", "", ""],
        ["guided_gradcam", "0.353", "", ""], curves=curves)
    assert cards["cat_282_2"] == table(header[:2], ["gradcam", "0.347"])
    for stem in ("coffee", "astronaut", "coffee_968"):
        assert cards[stem] == [0, [], None, None], (stem, cards[stem])
    # Shown as text in the card's caption, between its class and its stem.
    caption = browser.evaluate("document.querySelector('#grid figure figcaption').innerText")
    assert caption.index("tiger cat (282)") < caption.index("0.408") < caption.index("\ncat\n")
    # No evaluation.json: the page opens with the cards, no settings or summary.
    assert browser.evaluate("document.getElementById('run').hidden") is True
    browser.click("a.curves")  # a real click opens the plot
    browser.wait_for("location.href === %s && document.contentType === 'image/png'"
                     % json.dumps(curves))
    browser.wait_for("document.images.length === 1 && document.images[0].naturalWidth === 40")


def test_an_evaluations_page_opens_with_its_settings_and_the_consoles_summary(browser,
                                                                              tmp_path):
    """evaluation.json, written by the evaluation at its start (settings) and its end (the
    summary): the page opens with the run's settings and the summary table as the console
    prints it, cell for cell, and the lines below it; a run stopped early says it has none."""
    from guided_gradcam.evaluation import report
    from guided_gradcam.evaluation.runner import ClassResult, PhotoResult, map_names

    nan, maps = float("nan"), map_names()

    def measured(*values):  # the factual maps' numbers; the counterfactual maps all zero: NaN
        return dict(zip(maps, values + (nan, nan)))
    results = [
        PhotoResult("images/cat.jpg", "cat", localisation={"top1": False, "top5": True},
                    classes=[ClassResult(282, "tiger cat", 0.5, dict(
                        faithfulness=measured(0.41, 0.33, 0.44),
                        deletion=measured(0.07, 0.02, 0.03), insertion=measured(0.05, 0.08, 0.07),
                        pointing={"gradcam": True, "gbp": False, "guided_gradcam": True}))]),
        PhotoResult("images/coffee.jpg", "coffee", localisation={"top1": True, "top5": True},
                    classes=[ClassResult(967, "espresso", 0.9, dict(
                        faithfulness=measured(0.59, -0.14, 0.35),
                        deletion=measured(0.12, 0.2, 0.12), insertion=measured(0.81, 0.56, 0.64),
                        pointing={"gradcam": True}))])]
    settings = [("network", "mobilenet_v1_075 (classification)"),
                ("deletion", "to grey (pixels 127.5)"),
                ("insertion", "from blur (Gaussian 11x11, sigma 5)"),
                ("boxes", "</script><b>boxes</b>")]  # text, never markup
    with open(tmp_path / "index.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerow(dict(dict.fromkeys(COLUMNS, ""), input="images/cat.jpg", stem="cat_282",
                             class_index="282", class_name="tiger cat", probability="0.5"))
    page = """(() => ({
      first: document.body.firstElementChild.id,
      hidden: document.getElementById("run").hidden,
      settings: [...document.querySelectorAll("#settings tr")].map((row) =>
        [...row.children].map((cell) => cell.tagName + " " + cell.textContent)),
      summary: [...document.querySelectorAll("#run-summary tr")].map((row) =>
        [...row.children].map((cell) => cell.textContent)),
      lines: document.getElementById("run-lines").textContent,
      cards: document.querySelectorAll("#grid figure").length}))()"""

    report.write_page_data(str(tmp_path), settings)  # the run has begun
    write_html(str(tmp_path))
    browser.load((tmp_path / "index.html").as_uri())
    shown = browser.evaluate(page)
    expected_settings = [["TH " + name, "TD " + value] for name, value in settings]
    assert shown == {"first": "run", "hidden": False, "settings": expected_settings,
                     "summary": [], "lines": "no summary: the run did not finish", "cards": 1}

    report.write_page_data(str(tmp_path), settings, results, maps)  # the run has finished
    write_html(str(tmp_path))
    browser.load((tmp_path / "index.html").as_uri())
    shown = browser.evaluate(page)
    console = report.summary_text(results, maps).splitlines()
    assert console[1].split() == ["gradcam", "0.500", "0.095", "0.430", "100.0%"]  # the means
    assert [" ".join(row).split() for row in shown["summary"]] == [
        line.split() for line in console[:1 + len(maps)]]
    assert shown["lines"].splitlines() == console[1 + len(maps):]
    assert shown["lines"].startswith("note: - for counterfactual, guided_counterfactual: ")
    assert "localisation error top1: 50.0% of 2 photo(s)" in shown["lines"]
    assert (shown["first"], shown["hidden"], shown["settings"], shown["cards"]) == (
        "run", False, expected_settings, 1)
