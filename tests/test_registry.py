"""Units found by their package (`guided_gradcam.registry`): a CAM method or a metric is one
module; the registries list exactly the modules that define one, in rank order."""
import importlib
import pkgutil
import sys

from guided_gradcam import methods
from guided_gradcam.evaluation import metrics
from guided_gradcam.evaluation.metric import Metric
from guided_gradcam.methods.base import CamMethod
from guided_gradcam.registry import discover


def test_a_unit_is_found_by_adding_its_module(tmp_path, monkeypatch):
    package = tmp_path / "units_under_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    unit = ("from guided_gradcam.methods.base import CamMethod\n"
            "METHOD = CamMethod(%r, %r, 'a paper', %d, lambda a, g: None)\n")
    (package / "second.py").write_text(unit % ("second", "Second", 2))
    (package / "first.py").write_text(unit % ("first", "First", 1))
    (package / "helper.py").write_text("VALUE = 1\n")  # no unit: not registered
    (package / "other_kind.py").write_text("METHOD = 'not a CamMethod'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover(importlib.import_module("units_under_test"), "METHOD", CamMethod)
    assert list(found) == ["first", "second"]  # rank order, not file order
    assert found["first"].npz_keys == ("first_lowres", "first", "guided_first")
    sys.modules.pop("units_under_test", None)


def _modules(package):
    return sorted(module.name for module in pkgutil.iter_modules(package.__path__))


def test_every_method_module_is_a_registered_method():
    assert methods.METHODS == ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam",
                               "scorecam", "ablationcam", "eigencam", "eigengradcam", "rollout",
                               "gradattention")
    assert sorted(methods.REGISTRY) == [m for m in _modules(methods) if m != "base"]
    assert methods.REGISTRY["gradcam"].npz_keys == ("cam_lowres", "cam", "guided_gradcam")


def test_every_metric_module_is_a_registered_metric():
    assert metrics.METRICS == ("faithfulness", "deletion", "localisation", "sanity")
    assert sorted(metrics.REGISTRY) == _modules(metrics)
    assert all(isinstance(metric, Metric) for metric in metrics.REGISTRY.values())
    assert [c.key for c in metrics.COLUMNS] == ["faithfulness", "deletion", "insertion",
                                                "pointing"]
    assert metrics.help_text().startswith("Comma-separated: faithfulness (")


def test_the_registries_load_neither_tensorflow_nor_scipy():
    """The command lines check --methods and --metrics, and print --help, before TF loads and
    without the evaluation's extra."""
    import subprocess
    code = ("import sys; import guided_gradcam.methods, guided_gradcam.evaluation.metrics; "
            "print(sorted(m for m in ('tensorflow', 'scipy', 'skimage') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
