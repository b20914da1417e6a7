"""download_checkpoint against a real local HTTP server serving archives built here."""
import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from guided_gradcam.zoo.checkpoint_download import download_checkpoint, find_checkpoint_prefix
from guided_gradcam.errors import CheckpointError

CKPT = "mobilenet_v1_1.0_224.ckpt"
WEIGHTS = np.arange(2 * 3 * 3 * 4, dtype=np.float32).reshape(2, 3, 3, 4)
GAMMA = np.linspace(0.5, 1.5, 4).astype(np.float32)


def _write_tiny_checkpoint(prefix):
    import tensorflow.compat.v1 as tf

    with tf.Graph().as_default() as graph:
        variables = {
            "MobilenetV1/Conv2d_0/weights": tf.Variable(WEIGHTS, name="weights"),
            "MobilenetV1/Conv2d_0/BatchNorm/gamma": tf.Variable(GAMMA, name="gamma"),
        }
        saver = tf.train.Saver(var_list=variables)
        with tf.Session(graph=graph) as session:
            session.run(tf.global_variables_initializer())
            saver.save(session, str(prefix), write_meta_graph=False, write_state=False)


def _tar_gz(path, files):
    """Write a .tgz holding {archive name: bytes}."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        # /lying/NAME announces NAME's full length but sends only half, then hangs up.
        if self.path.startswith("/lying/"):
            data = (Path(self.directory) / self.path[len("/lying/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Start a server on 127.0.0.1 serving the test archives; yield (base URL, served folder)."""
    root = tmp_path_factory.mktemp("served")
    build = tmp_path_factory.mktemp("build")
    _write_tiny_checkpoint(build / CKPT)
    checkpoint_files = {f"./{p.name}": p.read_bytes() for p in sorted(build.iterdir())}
    assert sorted(checkpoint_files) == [f"./{CKPT}.data-00000-of-00001", f"./{CKPT}.index"]
    _tar_gz(root / "mobilenet_v1_1.0_224.tgz", {**checkpoint_files, "./info.txt": b"tiny test checkpoint\n"})
    good = (root / "mobilenet_v1_1.0_224.tgz").read_bytes()
    (root / "truncated.tgz").write_bytes(good[: len(good) // 2])
    (root / "not_a_tar.tgz").write_bytes(b"<html>not found</html>\n")
    _tar_gz(root / "no_checkpoint.tgz", {"./info.txt": b"x", "./other_model.ckpt.index": b"y"})
    _tar_gz(root / "unsafe.tgz", {"../escaped.txt": b"x", f"./{CKPT}": b"v1 checkpoint"})
    _tar_gz(root / "resnet_v1_50.tar.gz", {"resnet_v1_50.ckpt": b"pretend V1 checkpoint"})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _assert_failed_cleanly(dest_dir):
    assert not dest_dir.exists()
    assert list(dest_dir.parent.iterdir()) == []  # no temporary archive or folder left behind


def test_download_unpacks_and_records_the_archive(served, tmp_path):
    base_url, root = served
    url = f"{base_url}/mobilenet_v1_1.0_224.tgz"
    dest_dir = tmp_path / "checkpoints" / "mobilenet_v1_1.0_224"
    progress = io.StringIO()
    prefix = download_checkpoint(url, str(dest_dir), CKPT, progress=progress)

    assert prefix == str(dest_dir / CKPT)
    assert "MiB" in progress.getvalue() and "(100%)" in progress.getvalue()
    assert progress.getvalue().endswith("\n")
    served_sha256 = hashlib.sha256((root / "mobilenet_v1_1.0_224.tgz").read_bytes()).hexdigest()
    assert (dest_dir / "mobilenet_v1_1.0_224.tgz.sha256").read_text() == f"{served_sha256}  mobilenet_v1_1.0_224.tgz\n"
    assert (dest_dir / "SOURCE").read_text().strip() == url
    assert (dest_dir / "info.txt").read_bytes() == b"tiny test checkpoint\n"
    assert sorted(p.name for p in dest_dir.parent.iterdir()) == ["mobilenet_v1_1.0_224"]

    import tensorflow.compat.v1 as tf

    reader = tf.train.load_checkpoint(prefix)
    np.testing.assert_array_equal(reader.get_tensor("MobilenetV1/Conv2d_0/weights"), WEIGHTS)
    np.testing.assert_array_equal(reader.get_tensor("MobilenetV1/Conv2d_0/BatchNorm/gamma"), GAMMA)

    # Once present, the checkpoint is reused without touching the network.
    assert download_checkpoint("http://127.0.0.1:1/never", str(dest_dir), CKPT, progress=None) == prefix
    assert find_checkpoint_prefix(str(dest_dir)) == prefix
    assert find_checkpoint_prefix(str(dest_dir), CKPT) == prefix
    assert find_checkpoint_prefix(str(dest_dir), "resnet_v1_50.ckpt") is None


def test_quiet_when_progress_is_none(served, tmp_path, capsys):
    download_checkpoint(f"{served[0]}/mobilenet_v1_1.0_224.tgz", str(tmp_path / "d" / "m"), CKPT, progress=None)
    assert capsys.readouterr() == ("", "")


def test_single_file_v1_checkpoint_archive(served, tmp_path):
    dest_dir = tmp_path / "d" / "resnet_v1_50"
    prefix = download_checkpoint(f"{served[0]}/resnet_v1_50.tar.gz", str(dest_dir), "resnet_v1_50.ckpt", progress=None)
    assert prefix == str(dest_dir / "resnet_v1_50.ckpt")
    assert Path(prefix).read_bytes() == b"pretend V1 checkpoint"
    assert find_checkpoint_prefix(str(dest_dir), "resnet_v1_50.ckpt") == prefix


def test_truncated_archive_fails_and_leaves_nothing(served, tmp_path):
    dest_dir = tmp_path / "d" / "m"
    url = f"{served[0]}/truncated.tgz"
    with pytest.raises(CheckpointError, match="truncated or not a tar archive") as caught:
        download_checkpoint(url, str(dest_dir), CKPT, progress=None)
    assert url in str(caught.value)
    _assert_failed_cleanly(dest_dir)


def test_connection_cut_short_of_content_length_fails(served, tmp_path):
    dest_dir = tmp_path / "d" / "m"
    with pytest.raises(CheckpointError, match=r"lying/mobilenet_v1_1.0_224.tgz is truncated: got \d+ of \d+ bytes"):
        download_checkpoint(f"{served[0]}/lying/mobilenet_v1_1.0_224.tgz", str(dest_dir), CKPT, progress=None)
    _assert_failed_cleanly(dest_dir)


def test_non_archive_fails(served, tmp_path):
    dest_dir = tmp_path / "d" / "m"
    with pytest.raises(CheckpointError, match="truncated or not a tar archive"):
        download_checkpoint(f"{served[0]}/not_a_tar.tgz", str(dest_dir), CKPT, progress=None)
    _assert_failed_cleanly(dest_dir)


def test_archive_without_the_checkpoint_names_its_contents(served, tmp_path):
    dest_dir = tmp_path / "d" / "m"
    with pytest.raises(CheckpointError, match=f"holds no checkpoint {CKPT}") as caught:
        download_checkpoint(f"{served[0]}/no_checkpoint.tgz", str(dest_dir), CKPT, progress=None)
    assert "info.txt" in str(caught.value) and "other_model.ckpt.index" in str(caught.value)
    _assert_failed_cleanly(dest_dir)


def test_unsafe_member_path_is_refused(served, tmp_path):
    dest_dir = tmp_path / "d" / "m"
    with pytest.raises(CheckpointError, match="unsafe member path"):
        download_checkpoint(f"{served[0]}/unsafe.tgz", str(dest_dir), CKPT, progress=None)
    _assert_failed_cleanly(dest_dir)
    assert not (tmp_path / "escaped.txt").exists()


def test_closed_port_gives_one_line_error_with_url(tmp_path, closed_port_url):
    url = f"{closed_port_url}/mobilenet_v1_1.0_224.tgz"
    dest_dir = tmp_path / "d" / "m"
    with pytest.raises(CheckpointError) as caught:
        download_checkpoint(url, str(dest_dir), CKPT, progress=io.StringIO(), timeout=5, hint="see README")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot download {url} (")
    assert "by hand" in message and message.endswith("; see README")
    _assert_failed_cleanly(dest_dir)


def test_the_closed_port_stays_held_and_refuses_connections(closed_port_url):
    # The fixture keeps the port bound for the test: a server started meanwhile (another test
    # process, say) cannot take it and answer where the test expects a refusal.
    port = int(closed_port_url.rsplit(":", 1)[1])
    with socket.socket() as intruder:
        with pytest.raises(OSError):
            intruder.bind(("127.0.0.1", port))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_http_404_is_a_checkpoint_error(served, tmp_path):
    dest_dir = tmp_path / "d" / "m"
    with pytest.raises(CheckpointError, match="HTTP 404"):
        download_checkpoint(f"{served[0]}/absent.tgz", str(dest_dir), CKPT, progress=None)
    _assert_failed_cleanly(dest_dir)


def test_non_empty_dest_dir_without_checkpoint_is_left_alone(served, tmp_path):
    dest_dir = tmp_path / "d" / "m"
    dest_dir.mkdir(parents=True)
    (dest_dir / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="exists but holds no checkpoint"):
        download_checkpoint(f"{served[0]}/mobilenet_v1_1.0_224.tgz", str(dest_dir), CKPT, progress=None)
    assert [p.name for p in dest_dir.iterdir()] == ["notes.txt"]


def test_silent_server_times_out(tmp_path):
    with socket.socket() as silent:  # listens (the kernel completes the handshake) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/m.tgz"
        dest_dir = tmp_path / "d" / "m"
        with pytest.raises(CheckpointError, match=r"cannot download .*m\.tgz \(no answer within 0.5 s\)"):
            download_checkpoint(url, str(dest_dir), CKPT, progress=None, timeout=0.5)
    _assert_failed_cleanly(dest_dir)
