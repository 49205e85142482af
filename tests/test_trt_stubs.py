"""Our TensorRT code and the fake TensorRT the tests run it on, against TensorRT's own API.

The API is tensorrt-stubs' (typings/, see tests/trt_stubs.py for why it is vendored). mypy
checks the modules that call TensorRT ([tool.mypy] in pyproject.toml); the drift tests check
that every name tests/fake_tensorrt.py offers exists in TensorRT with the same call shape and
enum values, so a test that passes on the fake cannot rest on an API TensorRT lacks.
"""

import ast
import inspect
import textwrap
import types

import pytest
from fake_tensorrt import make_fake_trt
from trt_stubs import ROOT, Member, load_api, repair, stubs_version

try:
    from mypy import api as mypy_api
except ImportError:  # the test extra installs it
    mypy_api = None

pytestmark = pytest.mark.skipif(stubs_version() is None, reason="typings/ holds no tensorrt-stubs")
needs_mypy = pytest.mark.skipif(mypy_api is None, reason="mypy is not installed: pip install -e '.[test]'")

#: Module-level names of the fake that TensorRT does not have, and why.
FAKE_ONLY = {"calls": "what the builder was asked to do, for the tests to read"}


def _mypy(*args):
    out, err, status = mypy_api.run(["--config-file", str(ROOT / "pyproject.toml"), *args])
    return out + err, status


@needs_mypy
def test_the_modules_that_call_tensorrt_type_check_against_its_stubs(monkeypatch):
    monkeypatch.chdir(ROOT)  # the config's paths are the repository's
    report, status = _mypy()
    assert status == 0, report


@needs_mypy
def test_mypy_sees_the_stubs(tmp_path, monkeypatch):
    """Without the stubs every TensorRT name is Any and the check above passes vacuously."""
    monkeypatch.chdir(ROOT)
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""
        from edge_guard.backends.trt_api import TensorRT

        def misuse(trt: TensorRT) -> None:
            builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
            builder.create_network(0).get_input(0).nam
            trt.OnnxParser(builder.create_network()).parse_from_file("m.onnx")
            trt.ExplicitBatch
    """))
    report, status = _mypy(str(probe))
    assert status == 1
    assert '"ITensor" has no attribute "nam"' in report
    assert 'Missing positional argument "logger" in call to "OnnxParser"' in report
    assert '"TensorRT" has no attribute "ExplicitBatch"' in report


def _signature(fn) -> list:
    """[(name, has_default)] of a fake method, ``self`` dropped."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    return [(p.name, p.default is not inspect.Parameter.empty) for p in params]


def _call_shape_fits(fake: list, real: list) -> bool:
    """The fake takes TensorRT's leading parameters by name, leaves out only ones with a
    default, and defaults none that TensorRT requires."""
    return (len(fake) <= len(real) and [n for n, _ in fake] == [n for n, _ in real[:len(fake)]]
            and all(d for _, d in real[len(fake):])
            and all(rd or not fd for (_, fd), (_, rd) in zip(fake, real)))


def _instance_attributes(cls) -> set:
    """The public ``self.X = ...`` names of a fake class (what code could read off its objects)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    return {t.attr for node in ast.walk(tree) if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
            and not t.attr.startswith("_")}


def _check_member(where: str, name: str, fake, real: Member | None, problems: list) -> None:
    if real is None:
        problems.append(f"{where}.{name}: TensorRT has no such member")
    elif isinstance(fake, property):
        if real.kind == "method":
            problems.append(f"{where}.{name}: a property in the fake, a method in TensorRT")
    elif callable(fake):
        if real.kind != "method":
            problems.append(f"{where}.{name}: a method in the fake, a {real.kind} in TensorRT")
        elif name == "__init__" or not name.startswith("__"):
            shape = _signature(fake)
            if not any(_call_shape_fits(shape, sig) for sig in real.signatures):
                problems.append(f"{where}.{name}{shape}: TensorRT takes {real.signatures}")
    elif isinstance(fake, int) and real.value is not None and fake != real.value:
        problems.append(f"{where}.{name} = {fake}: TensorRT's is {real.value}")


def _class_problems(name: str, cls, members: dict) -> list:
    problems: list = []
    for attr, value in vars(cls).items():
        if attr.startswith("_") and attr not in ("__init__", "__str__"):
            continue
        if attr == "__init__" and "__init__" not in members:
            continue  # TensorRT makes these objects itself: the fake's constructor is its own
        _check_member(name, attr, value, members.get(attr), problems)
    for attr in sorted(_instance_attributes(cls) - set(vars(cls))):
        real = members.get(attr)
        if real is None or real.kind == "method":
            problems.append(f"{name}.{attr}: set on the fake's objects, TensorRT's have no such attribute")
    return problems


def _enum_problems(name: str, ns, members: dict) -> list:
    problems: list = []
    for member, value in vars(ns).items():
        real = members.get(member)
        if real is None or real.kind != "attribute":
            problems.append(f"{name}.{member}: TensorRT has no such member")
        elif isinstance(value, int) and value != real.value:
            problems.append(f"{name}.{member} = {value}: TensorRT's is {real.value}")
        elif not isinstance(value, int) and getattr(value, "name", value) != member:
            problems.append(f"{name}.{member}: a stand-in must carry its member's name, not {value!r}")
    return problems


def drift(fake, api) -> list:
    """Every way the fake module ``fake`` offers something TensorRT's API ``api`` lacks."""
    problems = []
    for name, value in vars(fake).items():
        if name in FAKE_ONLY:
            continue
        if name not in api.names:
            problems.append(f"tensorrt.{name}: TensorRT has no such name")
        elif isinstance(value, type):
            problems += _class_problems(name, value, api.classes.get(name, {}))
        elif isinstance(value, types.SimpleNamespace):
            problems += _enum_problems(name, value, api.classes.get(name, {}))
    return problems


def test_the_fake_offers_only_what_tensorrt_has():
    api = load_api()
    assert {"Builder", "ICudaEngine", "IExecutionContext"} <= set(api.classes)
    assert drift(make_fake_trt(), api) == []


def test_the_drift_check_catches_a_fake_that_strays():
    fake = make_fake_trt()
    fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED = 0   # EXPLICIT_BATCH's value
    fake.BuilderFlag.FP16_ONLY = "FP16_ONLY"

    class IBuilderConfig(fake.IBuilderConfig):
        def set_memory_pool_limit(self, pool, size):        # TensorRT: pool_size
            pass

        def set_timing_cache(self, cache, ignore_mismatch=False):  # TensorRT requires it
            pass

        def get_tactics(self):
            pass

    class IExecutionContext(fake.IExecutionContext):
        def __init__(self, engine):
            super().__init__(engine)
            self.stream = 0

        def execute_async_v3(self, stream_handle, bindings=None):
            pass

    fake.IBuilderConfig, fake.IExecutionContext = IBuilderConfig, IExecutionContext
    fake.Engine = fake.ICudaEngine
    found = "\n".join(drift(fake, load_api()))
    for needle in ("NetworkDefinitionCreationFlag.STRONGLY_TYPED = 0: TensorRT's is 1",
                   "BuilderFlag.FP16_ONLY", "IBuilderConfig.set_memory_pool_limit",
                   "IBuilderConfig.set_timing_cache", "IBuilderConfig.get_tactics",
                   "IExecutionContext.execute_async_v3", "IExecutionContext.stream: set on the fake",
                   "tensorrt.Engine"):
        assert needle in found, needle


def test_repair_makes_stubgen_output_valid_python():
    text = ('class P:\r\n    """P."""\r\n    def f(self, in: list[int], out: int) -> None:\r\n'
            '        """Docs."""\r\n    def g(self, a: W = None, b: W = None, c: int) -> int:\r\n        ...\r\n')
    fixed = repair(text)
    ast.parse(fixed)
    assert fixed == ("class P:\n    def f(self, in_: list[int], out: int) -> None:\n        ...\n"
                     "    def g(self, a: W, b: W, c: int) -> int:\n        ...\n")
