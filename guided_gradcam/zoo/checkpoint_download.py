"""Fetch an official TF-Slim checkpoint archive (.tar.gz / .tgz) and unpack it into a folder.

No TensorFlow import here: the module stays light. dest_dir appears only complete: the archive is
downloaded and unpacked beside it under temporary names, checked, and renamed into place last.
A checkpoint prefix P counts as present when `P.index` exists (V2 format) or the file P itself
exists (the V1 single-file checkpoints of the ResNet / VGG archives).
"""
import hashlib
import http.client
import os
import posixpath
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

from guided_gradcam.errors import CheckpointError, one_line

_STDERR = object()  # default for `progress`: resolved at call time so redirected stderr is honoured
_CHUNK_BYTES = 1 << 20
_MIB = float(1 << 20)


def find_checkpoint_prefix(directory, checkpoint_name=None):
    """Return the path of a checkpoint prefix under directory (searched recursively), or None.

    With checkpoint_name, only `<name>.index` or a plain file `<name>` match; without it, the
    first `*.index` file (in sorted walk order) does.
    """
    if not os.path.isdir(directory):
        return None
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if checkpoint_name is None:
                if name.endswith(".index"):
                    return os.path.join(root, name[: -len(".index")])
            elif name in (checkpoint_name + ".index", checkpoint_name):
                return os.path.join(root, checkpoint_name)
    return None


def _checkpoint_members(names, checkpoint_name):
    """Return the archive member names that make up checkpoint_name, or [] if it is absent."""
    by_folder = {}
    for name in names:
        folder, base = posixpath.split(name)
        by_folder.setdefault(folder, set()).add(base)
    for folder, bases in sorted(by_folder.items()):
        data = sorted(b for b in bases if b.startswith(checkpoint_name + ".data-"))
        if checkpoint_name + ".index" in bases and data:
            return [posixpath.join(folder, b) for b in [checkpoint_name + ".index"] + data]
        if checkpoint_name in bases:
            return [posixpath.join(folder, checkpoint_name)]
    return []


def _check_member_is_safe(member, url):
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise CheckpointError(f"archive from {url} has an unsafe member path {name!r}; refusing to unpack it")
    if not (member.isfile() or member.isdir()):
        raise CheckpointError(f"archive from {url} has a link or special file {name!r}; refusing to unpack it")


def _report_progress(progress, label, done, total):
    if total:
        text = f"\rdownloading {label}: {done / _MIB:.1f} / {total / _MIB:.1f} MiB ({100 * done // total}%)"
    else:
        text = f"\rdownloading {label}: {done / _MIB:.1f} MiB"
    progress.write(text)
    progress.flush()


def _download(url, archive_path, label, progress, timeout):
    """Stream url into archive_path; return (sha256 hex, bytes written, Content-Length or None)."""
    digest = hashlib.sha256()
    done, total, drawn, last_draw = 0, None, False, 0.0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(archive_path, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while True:
                block = response.read(_CHUNK_BYTES)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                done += len(block)
                # Redraw at most ~10 times a second so a fast download does not flood the terminal.
                if progress is not None and time.monotonic() - last_draw > 0.1:
                    _report_progress(progress, label, done, total)
                    drawn, last_draw = True, time.monotonic()
        if progress is not None:
            _report_progress(progress, label, done, total)
            drawn = True
    finally:
        if drawn:  # end the progress line so later messages start on a fresh one
            progress.write("\n")
            progress.flush()
    return digest.hexdigest(), done, total


def _network_reason(error, timeout):
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        error = error.reason
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout} s"
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed after {len(error.partial)} bytes, {error.expected} more expected"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return one_line(error) or type(error).__name__


def _unpack(archive_path, url, checkpoint_name, target_dir):
    """Check that the archive is complete and holds checkpoint_name, then extract it into target_dir."""
    truncated = f"download of {url} is truncated or not a tar archive"
    try:
        with tarfile.open(archive_path, mode="r:*") as archive:
            members = archive.getmembers()  # reads every header: a cut-off gzip stream fails here
            names = [posixpath.normpath(m.name) for m in members if m.isfile()]
            if not _checkpoint_members(names, checkpoint_name):
                listing = ", ".join(names[:20]) + (f", ... ({len(names)} files)" if len(names) > 20 else "")
                raise CheckpointError(
                    f"archive from {url} holds no checkpoint {checkpoint_name} (neither {checkpoint_name}.index "
                    f"with .data-* files nor a single-file {checkpoint_name}); it contains: {listing or 'nothing'}")
            for member in members:
                _check_member_is_safe(member, url)
            extract_options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            # Extracting reads every member's data, so a truncated final member is caught here too.
            archive.extractall(target_dir, **extract_options)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise CheckpointError(f"{truncated} ({one_line(e)})") from None
    except OSError as e:
        if e.filename is None:  # gzip's "Not a gzipped file" and similar decoding errors
            raise CheckpointError(f"{truncated} ({one_line(e)})") from None
        raise CheckpointError(f"cannot unpack the archive from {url} into {target_dir} ({e.strerror or e})") from None


def _temporary_places(parent, archive_name, dest_dir, suffix):
    """(archive file, unpack folder): temporary, beside dest_dir, so the final move is a rename."""
    try:
        os.makedirs(parent, exist_ok=True)
        archive_fd, archive_path = tempfile.mkstemp(prefix=f".{archive_name}.", suffix=".part", dir=parent)
        os.close(archive_fd)
        unpack_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(dest_dir)}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise CheckpointError(f"cannot create temporary files in {parent} ({e.strerror or e}){suffix}") from None
    return archive_path, unpack_dir


def _unpack_into_place(archive_path, url, checkpoint_name, unpack_dir, dest_dir, sha256,
                       archive_name, suffix):
    """Unpacks the archive beside dest_dir with its provenance, then renames it into place;
    returns the prefix another process put there meanwhile, else None."""
    try:
        _unpack(archive_path, url, checkpoint_name, unpack_dir)
        with open(os.path.join(unpack_dir, archive_name + ".sha256"), "w", encoding="utf-8") as f:
            f.write(f"{sha256}  {archive_name}\n")
        with open(os.path.join(unpack_dir, "SOURCE"), "w", encoding="utf-8") as f:
            f.write(url + "\n")
        os.chmod(unpack_dir, 0o755)  # mkdtemp makes it 0700; the final folder should be ordinary
        # rename(2) is atomic and also replaces an empty dest_dir; it fails on a non-empty one.
        os.replace(unpack_dir, dest_dir)
    except CheckpointError as e:
        raise CheckpointError(f"{e}{suffix}") from None
    except OSError as e:
        # Another process may have put the checkpoint there meanwhile; that is fine.
        found = find_checkpoint_prefix(dest_dir, checkpoint_name)
        if found:
            return found
        raise CheckpointError(
            f"cannot move the unpacked checkpoint to {dest_dir} ({e.strerror or e}){suffix}") from None
    return None


def download_checkpoint(url, dest_dir, checkpoint_name, *, progress=_STDERR, timeout=30, hint=""):
    """Download the checkpoint archive at url and unpack it as dest_dir; return the checkpoint prefix.

    checkpoint_name is the prefix's file name, e.g. "mobilenet_v1_1.0_224.ckpt". progress is a text
    stream for a one-line progress display (default: sys.stderr; None keeps quiet). hint is appended
    to every error message. If dest_dir already holds the checkpoint nothing is downloaded. On any
    failure dest_dir is left as it was and the temporary files are removed.
    """
    if progress is _STDERR:
        progress = sys.stderr
    dest_dir = os.path.abspath(dest_dir)
    suffix = f"; {hint}" if hint else ""
    existing = find_checkpoint_prefix(dest_dir, checkpoint_name)
    if existing:
        return existing
    if os.path.exists(dest_dir) and (not os.path.isdir(dest_dir) or os.listdir(dest_dir)):
        raise CheckpointError(
            f"{dest_dir} exists but holds no checkpoint {checkpoint_name}; move it away to download {url}{suffix}")
    parent = os.path.dirname(dest_dir)
    archive_name = posixpath.basename(urllib.parse.urlsplit(url).path) or "checkpoint.tar.gz"
    archive_path, unpack_dir = _temporary_places(parent, archive_name, dest_dir, suffix)
    try:
        try:
            sha256, size, expected_size = _download(url, archive_path, archive_name, progress, timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            raise CheckpointError(
                f"cannot download {url} ({_network_reason(e, timeout)}); "
                f"put the checkpoint in {dest_dir} by hand"
                f"{suffix}") from None
        if expected_size is not None and size != expected_size:
            raise CheckpointError(
                f"download of {url} is truncated: got {size} of {expected_size} bytes{suffix}")
        found = _unpack_into_place(archive_path, url, checkpoint_name, unpack_dir, dest_dir,
                                   sha256, archive_name, suffix)
        if found:
            return found
    finally:
        for leftover in (archive_path, unpack_dir):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            elif os.path.exists(leftover):
                os.remove(leftover)
    prefix = find_checkpoint_prefix(dest_dir, checkpoint_name)
    if prefix is None:  # cannot happen after _unpack's check, but never return a wrong path
        raise CheckpointError(f"{dest_dir} holds no checkpoint {checkpoint_name} after unpacking {url}{suffix}")
    return prefix
