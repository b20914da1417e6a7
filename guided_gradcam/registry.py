"""Units found by their package: a module of the package that defines a `unit` instance (a
CAM method's `METHOD`, a metric's `METRIC`) registers it; adding one is adding its module."""
import importlib
import pkgutil


def discover(package, attribute, kind):
    """{name: unit} of every module of `package` (a module object) whose `attribute` is a
    `kind`, in the units' `rank` order."""
    found = []
    for module in pkgutil.iter_modules(package.__path__):
        unit = getattr(importlib.import_module("%s.%s" % (package.__name__, module.name)),
                       attribute, None)
        if isinstance(unit, kind):
            found.append(unit)
    return {unit.name: unit for unit in sorted(found, key=lambda unit: unit.rank)}
