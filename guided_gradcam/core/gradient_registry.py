"""Registering gradient functions once per process, safely across module reloads."""
import sys

import tensorflow.compat.v1 as tf


def register_once(module_name, functions):
    """Registers {gradient name: function name in module `module_name`} with TensorFlow.

    tf.RegisterGradient raises KeyError when a name is registered twice (a second import of a
    reloaded module). The registered trampolines look the functions up in sys.modules, so after
    a reload they still run the current module's code (and share its state, e.g. a mode flag).
    """
    for name, function_name in functions.items():
        try:
            tf.RegisterGradient(name)(
                lambda op, *grads, fn=function_name:
                    getattr(sys.modules[module_name], fn)(op, *grads))
        except KeyError:
            pass
