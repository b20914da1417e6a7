"""The settings on record: what an evaluation's numbers depend on, kept in its folder's
evaluation.json (`settings`, [[name, value]], also what its page opens with), so that a resumed
run or a merge of shards with other settings is refused in one line naming the differences.

The model, the digest of its weights, the layer, the methods, the metrics and their parameters,
the input size, the preprocessing, the toolkit's version and the input list (count and digest)
are compared; where files were and the batch size are recorded, never compared. The shard's
index is compared when a run resumes, never in a merge (shards differ by it). inputs.txt holds
the shard's own photos, one path a line, in order: what a merge expects of it. No TensorFlow.
"""
import hashlib
import os

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.outputs.rendering import write_atomically
from guided_gradcam.outputs.run_index import read_run

PAGE_DATA, INPUTS_TXT = "evaluation.json", "inputs.txt"
NOT_COMPARED = frozenset({"checkpoint", "boxes", "batch size", "merged"})
SHARD = "shard"  # "i of N": compared on resume only


def toolkit_version():
    from importlib import metadata

    try:
        return metadata.version("guided-gradcam")
    except metadata.PackageNotFoundError:
        return "unknown"


def _sha256(paths):
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def weights_digest(path):
    """sha256 (16 hex digits) of what holds the weights: a checkpoint's .index (it stores a
    checksum of every tensor), a model file, a SavedModel's graph and variables index."""
    if path is None:
        return "none"
    path = os.fspath(path)
    candidates = [[path + ".index"], [path],
                  [os.path.join(path, "saved_model.pb"),
                   os.path.join(path, "variables", "variables.index")]]
    for paths in candidates:
        existing = [p for p in paths if os.path.isfile(p)]
        if existing:
            try:
                return _sha256(existing)
            except OSError as error:
                raise GuidedGradCamError("cannot read %s: %s" % (existing[0], error)) from None
    return "unknown"


def inputs_digest(paths):
    """'N photos, sha256 …' of the ordered input list (every shard's, before sharding)."""
    digest = hashlib.sha256("\n".join(paths).encode("utf-8")).hexdigest()[:16]
    return "%d photos, sha256 %s" % (len(paths), digest)


def read_page_data(output_dir):
    """evaluation.json of a folder as a dict; None without one."""
    return read_run(output_dir)


def read_settings(output_dir):
    """{name: value} of a folder's settings on record; None without evaluation.json."""
    data = read_page_data(output_dir)
    if data is None:
        return None
    return {str(name): str(value) for name, value in data.get("settings") or []}


def differences(ours, theirs, here="here", there="there", ignore=()):
    """['stride: patch 32, stride 8 here, patch 56, stride 56 there', …] of the settings
    compared (NOT_COMPARED and `ignore` left out); a setting one side lacks is 'none'."""
    skipped = NOT_COMPARED | set(ignore)
    names = [name for name in dict.fromkeys(list(ours) + list(theirs)) if name not in skipped]
    return ["%s: %s %s, %s %s" % (name, ours.get(name, "none"), here, theirs.get(name, "none"),
                                  there)
            for name in names if ours.get(name) != theirs.get(name)]


def check_same_settings(ours, theirs, output_dir):
    """Refuses to resume into `output_dir` when its run had other settings (the shard too)."""
    found = differences(ours, theirs, "here", "in " + output_dir)
    if found:
        raise GuidedGradCamError("%s holds an evaluation with other settings (%s): pass another "
                                 "--output_dir, or delete it" % (output_dir, "; ".join(found)))


def write_inputs(output_dir, paths):
    text = "".join(path + "\n" for path in paths)
    write_atomically(os.path.join(output_dir, INPUTS_TXT),
                     lambda handle: handle.write(text.encode("utf-8")))


def read_inputs(output_dir):
    """The shard's photos (inputs.txt), in order; None without the file."""
    try:
        with open(os.path.join(output_dir, INPUTS_TXT), encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle if line.strip()]
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise GuidedGradCamError("cannot read %s in %s: %s" % (INPUTS_TXT, output_dir, error)) \
            from None


def parse_shard(text):
    """'2 of 64' → (2, 64); (0, 1) for none."""
    try:
        index, _, count = (text or "0 of 1").partition(" of ")
        return int(index), int(count)
    except ValueError:
        raise GuidedGradCamError("shard %r is not 'INDEX of COUNT'" % text) from None
