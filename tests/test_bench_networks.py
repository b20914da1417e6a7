"""`make bench` takes half an hour, so no test runs it; this checks what it looks up by name: every
network whose gradient-free rows it measures is one the zoo can build (a Keras row reaching that
loop stopped the bench with a KeyError before its last lines)."""
import importlib.util
import os
import sys

from guided_gradcam.zoo.networks import NETWORKS

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _bench_module():
    sys.path.insert(0, BENCHMARKS)
    try:
        spec = importlib.util.spec_from_file_location("bench", os.path.join(BENCHMARKS, "bench.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(BENCHMARKS)


def test_the_gradient_free_rows_are_measured_on_networks_the_zoo_builds():
    bench = _bench_module()
    measured = [network for network, _ in bench.CONFIGS if network not in bench.KERAS_ROWS]
    assert measured and set(measured) <= set(NETWORKS), sorted(set(measured) - set(NETWORKS))
    assert {"keras_mobilenet_075", "keras_vit_s16"} <= {network for network, _ in bench.CONFIGS}
