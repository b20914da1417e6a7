"""Explaining many files: decoding, session runs and writing overlap, in bounded memory.

    decode pool (threads) ──► batches ──► explain (one session.run each) ──► write pool
        one batch ahead                                             at most `max_pending` images

Only the next batch is decoded ahead and at most `max_pending` images wait to be written, so
memory stays flat however many files a folder holds.
"""
import collections
import concurrent.futures
import dataclasses
import os
import sys
import time

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.images import load_photo
from guided_gradcam.outputs.files import OUTPUT_KINDS, output_paths, save_outputs
from guided_gradcam.segmentation import EmptyRegionError


@dataclasses.dataclass(frozen=True)
class Target:
    """One explanation of an image: a class (None: its top-1) and the output stem's suffix."""
    label: object
    suffix: str = ""


def targets_for(labels=None, counterfactual=False):
    """The Targets of each image. With several labels, or a counterfactual run, stems carry the
    class and the mode (`cat_dog_243`, `cat_dog_282_cf`, `cat_dog_top1_cf`), so that runs for
    other classes or modes never overwrite, or skip for, each other's files."""
    labels = list(dict.fromkeys(labels or [None]))  # in order, once each
    if len(labels) == 1 and not counterfactual:
        return [Target(labels[0])]
    return [Target(label, "_%s%s" % ("top1" if label is None else label,
                                     "_cf" if counterfactual else ""))
            for label in labels]


@dataclasses.dataclass
class Job:
    path: str
    stem: str
    targets: tuple = (Target(None),)  # the explanations still to make for this image


def unique_stems(paths):
    """Output stems per path; a taken stem (same name in two folders) gets a free _N suffix."""
    used, stems = set(), []
    for path in paths:
        base = stem = os.path.splitext(os.path.basename(path))[0]
        number = 1
        while stem in used:
            number += 1
            stem = "%s_%d" % (base, number)
        used.add(stem)
        stems.append(stem)
    return stems


def plan_jobs(paths, output_dir, kinds=OUTPUT_KINDS, shard_index=0, num_shards=1,
              skip_existing=False, targets=(Target(None),), methods=("gradcam",)):
    """(jobs, skipped): this shard's share of `paths`, each with its `targets`; with
    skip_existing, the targets whose outputs all exist are dropped, and images with none left.

    Stems are assigned over the full list first, so every shard names files the same way and
    a shard's share depends only on the ordered input list.
    """
    if not 0 <= shard_index < num_shards:
        raise GuidedGradCamError(
            "--shard_index must be in 0..%d for --num_shards %d" % (num_shards - 1, num_shards))
    jobs = [Job(path, stem, tuple(targets))
            for index, (path, stem) in enumerate(zip(paths, unique_stems(paths)))
            if index % num_shards == shard_index]
    if not skip_existing:
        return jobs, 0
    todo = []
    for job in jobs:
        job.targets = tuple(
            target for target in job.targets
            if not all(os.path.exists(p) for p in output_paths(
                output_dir, job.stem + target.suffix, kinds, methods)))
        if job.targets:
            todo.append(job)
    return todo, len(jobs) - len(todo)


class Progress:
    """'done/total, images/s, time left' on one line (rewritten in place on a terminal)."""

    def __init__(self, total, stream=sys.stderr, interval=None):
        """interval: seconds between lines off a terminal (default 5, or
        $GUIDED_GRADCAM_PROGRESS_INTERVAL: a batch scheduler's log may want fewer or more)."""
        if interval is None:
            interval = float(os.environ.get("GUIDED_GRADCAM_PROGRESS_INTERVAL", 5.0))
        self.total, self.stream, self.interval = total, stream, interval
        self.start = self.last = time.monotonic()
        self.tty = stream is not None and stream.isatty()

    def update(self, done, final=False):
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and not self.tty and now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - self.start
        rate = done / max(elapsed, 1e-9)
        if final:  # the whole run's time: what a benchmark of the folder path reads
            tail = "done in %.2f s" % elapsed
        else:
            left = (self.total - done) / rate if rate > 0 else 0.0
            tail = "%s left" % time.strftime("%H:%M:%S", time.gmtime(left))
        line = "progress: %d/%d images, %.1f images/s, %s" % (done, self.total, rate, tail)
        end = "\n" if final or not self.tty else ""
        self.stream.write(("\r" + line if self.tty else line) + end)
        self.stream.flush()


def _decode(explainer, job, regions=None):
    """(photo, box, network input, the region's mask at the input size or None)."""
    photo = load_photo(job.path, explainer.input_size)  # a huge JPEG decodes reduced
    network_input, box = explainer.fit(photo)
    try:
        mask = regions.input_mask(photo.shape, box, explainer.input_size) if regions else None
    except GuidedGradCamError as error:  # a region outside this photo costs it alone
        raise GuidedGradCamError("%s: %s" % (job.path, error)) from None
    return photo, box, network_input, mask


class _Writing:
    """A folder run's explaining and writing: each batch's targets explained in one session
    run, their files rendered and written on the writer's threads, at most `max_pending`
    waiting; failures reported once each, counted once per input. A job's targets that fail
    are dropped from `job.targets`, which ends up naming what was written."""

    def __init__(self, explainer, writer, output_dir, counterfactual, kinds, report, error,
                 index, max_pending, segmentation=None):
        self.explainer, self.writer, self.output_dir = explainer, writer, output_dir
        self.counterfactual, self.kinds, self.report = counterfactual, kinds, report
        self.error, self.index, self.max_pending = error, index, max_pending
        self.segmentation = segmentation  # {background: class or None}: a segmentation model's
        self.failed = set()  # the paths of the inputs with a failure
        self.pending = collections.deque()

    @property
    def failures(self):
        return len(self.failed)

    def fail(self, job, targets=None):
        """Drops `targets` (None: all) from the job and counts the input as failed."""
        job.targets = () if targets is None else tuple(
            target for target in job.targets if target not in targets)
        self.failed.add(job.path)

    def finish_oldest(self):
        job, target, future = self.pending.popleft()
        try:
            future.result()
        except (OSError, GuidedGradCamError) as problem:
            self.error("cannot write outputs for %s: %s" % (job.path, problem))
            self.fail(job, [target])

    def decoded(self, submitted):
        """The (job, photo, box, network input) of each decoded job; the others reported."""
        decoded = []
        for job, future in submitted:
            try:
                decoded.append((job,) + future.result())
            except GuidedGradCamError as problem:
                self.error(problem)
                self.fail(job)
                if self.index is not None:
                    self.index.failed(job.path, job.stem, problem)
        return decoded

    def explain_and_submit(self, decoded):
        explainer = self.explainer
        wanted = [(item, target) for item in decoded for target in item[0].targets]
        wanted, explanations = self.explain(wanted)
        for ((job, photo, box, *_), target), explanation in zip(wanted, explanations):
            name = explainer.labels.name(explanation.label)
            self.report(job, explanation, explainer.labels)
            stem = job.stem + target.suffix
            written = self.writer.submit(
                save_outputs, explanation, photo, box, name, self.output_dir, stem, self.kinds)
            if self.index is not None:
                self.index.record_when_written(written, job.path, stem, explanation,
                                               explainer.labels)
            self.pending.append((job, target, written))
            while len(self.pending) > self.max_pending:
                self.finish_oldest()


    def explain(self, wanted):
        """(wanted, their explanations): (image, target) pairs. A segmentation pair with an
        empty region is reported (one line; once for an image whose every class fails alike)
        and left out, the other pairs, the image's other classes too, explained again."""
        while wanted:
            extra = {} if self.segmentation is None else dict(
                mask=[item[4] for item, _ in wanted], **self.segmentation)
            try:
                return wanted, self.explainer.explain(
                    [item[3] for item, _ in wanted], [target.label for _, target in wanted],
                    counterfactual=self.counterfactual, **extra)
            except EmptyRegionError as empty:
                said = set()
                for index, message in sorted(empty.problems.items()):
                    (job, *_), target = wanted[index]
                    if (job.path, message) not in said:
                        said.add((job.path, message))
                        self.error("%s: %s" % (job.path, message))
                    self.fail(job, [target])
                    if self.index is not None:
                        self.index.failed(job.path, job.stem + target.suffix, message)
                wanted = [pair for index, pair in enumerate(wanted)
                          if index not in empty.problems]
        return [], []


def run_jobs(explainer, jobs, output_dir, batch_size=16, counterfactual=False,
             kinds=OUTPUT_KINDS, report=print, error=None, progress=None,
             workers=None, max_pending=None, index=None, regions=None, background=None):
    """Explains each job's targets (all of a batch's in one session run) and writes their
    files; returns the number of jobs that failed, wholly or for some of their targets (a
    segmentation class with an empty region), whose `targets` then name only what was written.
    `index` (a `run_index.RunIndex`) records each explanation as its files are written, and
    each input, or (input, class), that failed.

    Rendering and PNG encoding cost more CPU than the session run itself, so they get one
    writer thread per core (PIL and zlib release the GIL); the session's own threads share
    the cores with them. The next batch is decoded while the current one runs.
    A segmentation model's region is `regions` (a `regions.RegionChoice`, in photo pixels)
    or each class's predicted pixels; `background` is left out of the largest-area choice.
    """
    error = error or (lambda message: print("error: %s" % message, file=sys.stderr))
    workers = workers or max(1, os.cpu_count() or 1)
    batches = [jobs[start:start + batch_size] for start in range(0, len(jobs), batch_size)]
    done = 0
    with concurrent.futures.ThreadPoolExecutor(workers) as decoders, \
            concurrent.futures.ThreadPoolExecutor(workers) as writer:
        run = _Writing(explainer, writer, output_dir, counterfactual, kinds, report, error,
                       index, max_pending or batch_size,
                       None if explainer.graph.region is None else {"background": background})

        def submit(batch):
            return [(job, decoders.submit(_decode, explainer, job, regions)) for job in batch]

        ahead = submit(batches[0]) if batches else []
        for number in range(len(batches)):
            current, ahead = ahead, (submit(batches[number + 1]) if number + 1 < len(batches)
                                     else [])
            decoded = run.decoded(current)
            done += len(current) - len(decoded)
            if decoded:
                run.explain_and_submit(decoded)
                done += len(decoded)
            del decoded  # what is not yet written is held by the writer's queue alone
            if progress:
                progress.update(done - len(run.pending))
        while run.pending:
            run.finish_oldest()
    if progress:
        progress.update(done, final=True)
    return run.failures
