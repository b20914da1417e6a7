"""Eager execution for the moments that need it (loading and tracing Keras models, SavedModels),
whatever mode the caller's process is in: the CLI and the tests run TF 1 graph mode."""
import contextlib


@contextlib.contextmanager
def eager():
    from tensorflow.python.eager import context

    with context.eager_mode():
        yield
