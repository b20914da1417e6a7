"""Loading TensorFlow for the command-line entry points, without its start-up noise."""
import os
import sys


def import_tensorflow_quietly():
    """`quiet_tensorflow_import`, then TF 1 graph mode: for command-line entry points."""
    tf = quiet_tensorflow_import()
    tf.disable_eager_execution()
    return tf


def quiet_tensorflow_import():
    """Imports TensorFlow without its C++ start-up chatter (oneDNN, CUDA stubs and probes) on stderr.

    Those lines are printed before TF's log level applies, so fd 2 is muted for the import only;
    set GUIDED_GRADCAM_TF_LOGS=1 to see them. Python errors still surface normally. The
    execution mode is left alone (the Python API keeps the caller's eager mode).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("GUIDED_GRADCAM_TF_LOGS") or "tensorflow" in sys.modules:
        import tensorflow.compat.v1 as tf
    else:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import tensorflow.compat.v1 as tf

            tf.config.list_physical_devices()  # probes CUDA once, now, while muted
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    tf.get_logger().setLevel("ERROR")
    return tf
