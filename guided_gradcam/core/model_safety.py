"""A model file is a program: what it would do besides computing is refused unless trusted.

TensorFlow's graphs can read and write files, call back into Python (`py_func`), talk to
debuggers and read datasets; Keras files can carry Python bytecode (`Lambda` layers). Before
any loader or session runs a model, the toolkit checks it here:

- graphs (a frozen `.pb`, a TF 1 `.meta` and its checkpoint restore, a SavedModel's
  `saved_model.pb`, what a Keras model traces to): every op the explanation (or the loader)
  would run, and every op of every function those ops can call, recursively, is matched
  against an allow-list of pure computation, by op type (`ALLOWED_OPS`, by family in
  `FAMILIES`). The one file access allowed is the restore of the checkpoint the user named:
  a `RestoreV2` at the top level of the graph's restore op that reads the saver's filename
  tensor, which the restore feeds with that checkpoint.
- Keras files (`.keras`, `.h5`): the stored config, read as JSON before any Keras loader runs,
  names every layer whose loading runs stored Python code (`Lambda`, a serialised lambda).

A refusal is one `UntrustedModelError` line naming what would run (`model.pb would run
WriteFile ×1, ReadFile ×1: a model file is a program; pass --trust_model to run it anyway`).
`trust_model=True` (`--trust_model`) skips every check and loads Keras files in the
libraries' unsafe mode.
"""
import collections
import json
import os
import re
import zipfile

from guided_gradcam.errors import MESSAGE_LIMIT, GuidedGradCamError, shorten

TRUST_HINT = "a model file is a program; pass --trust_model to run it anyway"

# The allow-list, by family. Pure computation on tensors in memory: no op here reads or writes
# a file, a queue, a dataset, a socket or the Python interpreter.
FAMILIES = {
    "math": {
        "Abs", "Acos", "Acosh", "Add", "AddN", "AddV2", "All", "Angle", "Any",
        "ApproximateEqual", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atan2", "Atanh",
        "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Betainc", "BitwiseAnd", "BitwiseOr",
        "BitwiseXor", "Bucketize", "Cast", "Ceil", "Cholesky", "ClipByValue", "Complex",
        "ComplexAbs", "Conj", "Cos", "Cosh", "Cross", "Cumprod", "Cumsum",
        "CumulativeLogsumexp", "Digamma", "Div", "DivNoNan", "Einsum", "Equal", "Erf", "Erfc",
        "Erfinv", "EuclideanNorm", "Exp", "Expm1", "FFT", "FFT2D", "FFT3D", "Floor", "FloorDiv",
        "FloorMod", "Greater", "GreaterEqual", "HistogramFixedWidth", "IFFT", "IFFT2D",
        "IFFT3D", "IRFFT", "IRFFT2D", "Igamma", "Igammac", "Imag", "Inv", "Invert", "IsFinite",
        "IsInf", "IsNan", "LeftShift", "Less", "LessEqual", "Lgamma", "LinSpace", "Log",
        "Log1p", "LogMatrixDeterminant", "LogicalAnd", "LogicalNot", "LogicalOr", "MatMul",
        "MatrixDeterminant", "MatrixInverse", "MatrixSolve", "MatrixTriangularSolve", "Max",
        "Maximum", "Mean", "Min", "Minimum", "Mod", "Mul", "MulNoNan", "Ndtri", "Neg",
        "NextAfter", "NotEqual", "Polygamma", "PopulationCount", "Pow", "Prod", "Qr", "RFFT",
        "RFFT2D", "Range", "Real", "RealDiv", "Reciprocal", "RightShift", "Rint", "Round",
        "Rsqrt", "SegmentMax", "SegmentMean", "SegmentMin", "SegmentProd", "SegmentSum",
        "Select", "SelectV2", "SelfAdjointEigV2", "Sigmoid", "Sign", "Sin", "Sinh",
        "SparseMatMul", "Sqrt", "Square", "SquaredDifference", "Sub", "Sum", "Svd", "Tan",
        "Tanh", "TruncateDiv", "TruncateMod", "UnsortedSegmentMax", "UnsortedSegmentMin",
        "UnsortedSegmentProd", "UnsortedSegmentSum", "Xdivy", "Xlog1py", "Xlogy", "Zeta",
        "_FusedMatMul",
        # gradients a graph may carry (custom gradients, saved training graphs)
        "BiasAddGrad", "BroadcastGradientArgs", "InvGrad", "ReciprocalGrad", "RsqrtGrad",
        "SigmoidGrad", "SqrtGrad", "TanhGrad",
    },
    "nn": {
        "AvgPool", "AvgPool3D", "AvgPoolGrad", "BatchNormWithGlobalNormalization", "BiasAdd",
        "BiasAddV1", "Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput", "Conv3D",
        "Conv3DBackpropInputV2", "DepthwiseConv2dNative",
        "DepthwiseConv2dNativeBackpropFilter", "DepthwiseConv2dNativeBackpropInput",
        "Dilation2D", "Elu", "EluGrad", "FusedBatchNorm", "FusedBatchNormGradV3",
        "FusedBatchNormV2", "FusedBatchNormV3", "InTopKV2", "L2Loss", "LRN", "LeakyRelu",
        "LeakyReluGrad", "LogSoftmax", "MaxPool", "MaxPool3D", "MaxPoolGrad", "MaxPoolGradV2",
        "MaxPoolV2", "MaxPoolWithArgmax", "Relu", "Relu6", "Relu6Grad", "ReluGrad", "Selu",
        "SeluGrad", "Softmax", "SoftmaxCrossEntropyWithLogits", "Softplus", "SoftplusGrad",
        "Softsign", "SoftsignGrad", "SparseSoftmaxCrossEntropyWithLogits", "TopKV2",
        "_FusedConv2D", "_FusedBatchNormEx", "FakeQuantWithMinMaxArgs",
        "FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel",
        "QuantizeAndDequantizeV2", "QuantizeAndDequantizeV3", "QuantizeAndDequantizeV4",
    },
    "array": {
        "BatchToSpace", "BatchToSpaceND", "Bitcast", "BroadcastArgs", "BroadcastTo",
        "CheckNumerics", "CheckNumericsV2", "Concat", "ConcatOffset", "ConcatV2",
        "ConjugateTranspose", "DepthToSpace", "Diag", "DiagPart", "DynamicPartition",
        "DynamicStitch", "EnsureShape", "ExpandDims", "ExtractImagePatches",
        "ExtractVolumePatches", "Fill", "Gather", "GatherNd", "GatherV2", "Identity",
        "IdentityN", "InvertPermutation", "ListDiff", "MatrixBandPart", "MatrixDiag",
        "MatrixDiagPart", "MatrixDiagPartV2", "MatrixDiagPartV3", "MatrixDiagV2",
        "MatrixDiagV3", "MatrixSetDiag", "MatrixSetDiagV2", "MatrixSetDiagV3", "MirrorPad",
        "OneHot", "OnesLike", "Pack", "Pad", "PadV2", "ParallelDynamicStitch",
        "PreventGradient", "Rank", "Reshape", "Reverse", "ReverseSequence", "ReverseV2",
        "ScatterNd", "Shape", "ShapeN", "Size", "Slice", "Snapshot", "SpaceToBatch",
        "SpaceToBatchND", "SpaceToDepth", "Split", "SplitV", "Squeeze", "StopGradient",
        "StridedSlice", "StridedSliceGrad", "TensorScatterAdd", "TensorScatterMax",
        "TensorScatterMin", "TensorScatterSub", "TensorScatterUpdate", "Tile", "Transpose",
        "Unique", "UniqueV2", "UnravelIndex", "Unpack", "Where", "ZerosLike",
        # messages for asserts, built in memory
        "AsString", "StringFormat", "StringJoin",
    },
    "image": {
        "AdjustContrastv2", "AdjustHue", "AdjustSaturation", "CropAndResize", "HSVToRGB",
        "ImageProjectiveTransformV2", "ImageProjectiveTransformV3", "NonMaxSuppressionV3",
        "NonMaxSuppressionV4", "NonMaxSuppressionV5", "RGBToHSV", "ResizeArea",
        "ResizeBicubic", "ResizeBilinear", "ResizeNearestNeighbor", "ScaleAndTranslate",
    },
    "random numbers": {
        "RandomStandardNormal", "RandomUniform", "RandomUniformInt", "StatelessRandomGetAlg",
        "StatelessRandomGetKeyCounter", "StatelessRandomGetKeyCounterAlg",
        "StatelessRandomNormal", "StatelessRandomNormalV2", "StatelessRandomUniform",
        "StatelessRandomUniformInt", "StatelessRandomUniformIntV2", "StatelessRandomUniformV2",
        "StatelessTruncatedNormal", "StatelessTruncatedNormalV2", "TruncatedNormal",
    },
    # Function calls are allowed because every function they can call is checked, recursively.
    "control flow without side effects": {
        "Assert", "Case", "ControlTrigger", "Enter", "Exit", "If", "LoopCond", "Merge",
        "NextIteration", "NoOp", "PartitionedCall", "RefEnter", "RefExit", "RefIdentity",
        "RefMerge", "RefNextIteration", "RefSwitch", "StatefulPartitionedCall", "StatelessCase",
        "StatelessIf", "StatelessWhile", "Switch", "SymbolicGradient", "While",
        "OptionalFromValue", "OptionalGetValue", "OptionalHasValue", "OptionalNone",
        "EmptyTensorList", "TensorListConcatV2", "TensorListElementShape",
        "TensorListFromTensor", "TensorListGetItem", "TensorListLength", "TensorListPopBack",
        "TensorListPushBack", "TensorListReserve", "TensorListResize", "TensorListSetItem",
        "TensorListSplit", "TensorListStack", "TensorArrayConcatV3", "TensorArrayGatherV3",
        "TensorArrayReadV3", "TensorArrayScatterV3", "TensorArraySizeV3", "TensorArraySplitV3",
        "TensorArrayV3", "TensorArrayWriteV3",
    },
    "the model's own constants, placeholders and variables": {
        "Const", "HostConst", "Placeholder", "PlaceholderWithDefault", "Assign", "AssignAdd",
        "AssignAddVariableOp", "AssignSub", "AssignSubVariableOp", "AssignVariableOp",
        "DestroyResourceOp", "IsVariableInitialized", "ReadVariableOp", "ResourceGather",
        "ResourceGatherNd", "VarHandleOp", "VarIsInitializedOp", "Variable", "VariableShape",
        "VariableV2", "HashTableV2", "InitializeTableV2", "LookupTableFindV2",
        "LookupTableImportV2", "LookupTableSizeV2", "MutableHashTableV2",
    },
}
ALLOWED_OPS = frozenset(op for ops in FAMILIES.values() for op in ops)
# Read a checkpoint: allowed only as the toolkit's restore of the checkpoint the user named.
CHECKPOINT_READS = frozenset({"RestoreV2", "RestoreSlice", "Restore"})
# Printing to the console is no file access; PrintV2's output_stream may name a file.
CONSOLE_PRINTS = frozenset({"Print", "PrintV2"})


class UntrustedModelError(GuidedGradCamError):
    """A model that would do more than compute; `trust_model=True` runs it anyway."""


# --- graphs ---------------------------------------------------------------------------------

def _op_name(tensor_name):
    """'^name', 'name:1', 'name' → 'name'."""
    return re.sub(r":\d+$", "", tensor_name.lstrip("^"))


def _tensor_name(name):
    name = name.lstrip("^")
    return name if ":" in name else name + ":0"


def _functions_in_attr(value):
    """The function names an AttrValue refers to: `func`, `list(func)`, and the functions in
    their own attrs."""
    functions = []
    if value.HasField("func"):
        functions.append(value.func)
    if value.HasField("list"):
        functions.extend(value.list.func)
    names = []
    for function in functions:
        names.append(function.name)
        for inner in function.attr.values():
            names.extend(_functions_in_attr(inner))
    return names


def ancestors(graph_def, roots):
    """The nodes of `graph_def` that computing `roots` (tensor or op names) runs: the roots and
    everything they read, through data and control inputs; in graph order."""
    nodes = {node.name: node for node in graph_def.node}
    needed, frontier = set(), [_op_name(root) for root in roots]
    while frontier:
        name = frontier.pop()
        if name in needed or name not in nodes:
            continue
        needed.add(name)
        frontier.extend(_op_name(input_name) for input_name in nodes[name].input)
    return [node for node in graph_def.node if node.name in needed]


def refused_ops(nodes, library, functions=(), checkpoint_tensor=None):
    """{op type: count}, in the order found, of the ops outside the allow-list among `nodes`
    (top-level NodeDefs) and in every function they, or `functions` (names), can call,
    recursively: each function is counted once. `checkpoint_tensor`: the saver's filename
    tensor, which a top-level RestoreV2 may read (the restore feeds it the checkpoint)."""
    library_functions = {function.signature.name: function for function in library.function}
    gradients = {gradient.function_name: gradient.gradient_func
                 for gradient in library.gradient}
    refused = collections.Counter()
    pending, seen = collections.deque(functions), set()

    def visit(node, top_level):
        if not _allowed(node, library_functions, checkpoint_tensor if top_level else None):
            refused[node.op] += 1
        for value in node.attr.values():
            pending.extend(_functions_in_attr(value))
        if node.op in library_functions:  # a call of a library function by its name
            pending.append(node.op)

    for node in nodes:
        visit(node, top_level=True)
    while pending:
        name = pending.popleft()
        if name in seen or name not in library_functions:
            continue  # a function no library defines cannot be imported, so never runs
        seen.add(name)
        for node in library_functions[name].node_def:
            visit(node, top_level=False)
        if name in gradients:
            pending.append(gradients[name])
    return refused


def _allowed(node, library_functions, checkpoint_tensor):
    if node.op in ALLOWED_OPS or node.op in library_functions:
        return True
    if node.op in CONSOLE_PRINTS:
        stream = node.attr["output_stream"].s.decode("utf-8", "replace") \
            if "output_stream" in node.attr else "stderr"
        return not stream.startswith("file://")
    if node.op in CHECKPOINT_READS:
        return checkpoint_tensor is not None and bool(node.input) and \
            _tensor_name(node.input[0]) == _tensor_name(checkpoint_tensor)
    return False


def restore_refusals(graph_def, saver_def):
    """The refused ops of the graph's own restore op (`saver_def.restore_op_name`) and of all
    it depends on: its control inputs too, which can carry anything."""
    if not saver_def.restore_op_name:
        return collections.Counter()
    return refused_ops(ancestors(graph_def, [saver_def.restore_op_name]), graph_def.library,
                       checkpoint_tensor=saver_def.filename_tensor_name or None)


def refuse(name, refused):
    """Raises the one-line refusal when `refused` ({op type: count}) is not empty."""
    if not refused:
        return
    items = ["%s ×%d" % item for item in refused.items()]
    if len(items) > 6:
        items = items[:6] + ["%d more op types" % (len(items) - 6)]
    raise UntrustedModelError(shorten("%s would run %s: %s" % (
        _short(name), ", ".join(items), TRUST_HINT), MESSAGE_LIMIT, first_sentence=False))


def check_graph_def(graph_def, outputs, name):
    """Refuses a GraphDef (frozen `.pb`, a traced Keras model, a frozen signature) whose
    `outputs` (tensor or op names) would run anything outside the allow-list."""
    refuse(name, refused_ops(ancestors(graph_def, outputs), graph_def.library))


def check_meta_graph(meta_graph_def, outputs, name):
    """Refuses a TF 1 MetaGraphDef whose `outputs` or whose checkpoint restore would run
    anything outside the allow-list (the restore may read its checkpoint, nothing else)."""
    graph_def = meta_graph_def.graph_def
    refused = refused_ops(ancestors(graph_def, outputs), graph_def.library)
    refused.update(restore_refusals(graph_def, meta_graph_def.saver_def))
    refuse(name, refused)


def read_saved_model_proto(path):
    """The SavedModel proto of a folder, None where it cannot be parsed (the loader says why)."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    try:
        binary = os.path.join(path, "saved_model.pb")
        if os.path.isfile(binary):
            with open(binary, "rb") as f:
                saved_model.ParseFromString(f.read())
        else:
            with open(os.path.join(path, "saved_model.pbtxt"), encoding="utf-8") as f:
                text_format.Merge(f.read(), saved_model)
    except Exception:  # unreadable or not a SavedModel: tf.saved_model.load reports it
        return None
    return saved_model


# The init ops a TF 1 SavedModel's loader runs, by collection.
INIT_COLLECTIONS = ("saved_model_main_op", "legacy_init_op", "table_initializer",
                    "saved_model_init_op")


def saved_model_refusals(saved_model):
    """{op type: count} outside the allow-list of what loading a SavedModel and calling any of
    its signatures would run, read from the proto before the loader runs anything:

    - every signature's outputs (the `__saved_model_init_op` signature too) and the init ops
      of the graph, with every function they call;
    - TF 2 (an object graph): every function of the object graph, which holds the functions
      the loader runs itself (resource creation and initialisers, the restore functions of
      saveables). The loader restores variables with restore ops of its own; the graph's
      saver functions (`__inference__traced_save`/`restore`) are no object's and never run.
    - TF 1 (no object graph): the graph's own restore op, which the loader runs, and all it
      depends on; it may read its checkpoint, nothing else.
    """
    refused = collections.Counter()
    for meta in saved_model.meta_graphs:
        graph_def = meta.graph_def
        roots = [info.name for signature in meta.signature_def.values()
                 for info in signature.outputs.values() if info.name]
        for key in INIT_COLLECTIONS:
            if key in meta.collection_def:
                roots.extend(meta.collection_def[key].node_list.value)
        functions = list(meta.object_graph_def.concrete_functions)
        for node in meta.object_graph_def.nodes:
            functions.extend(node.function.concrete_functions)
            if node.bare_concrete_function.concrete_function_name:
                functions.append(node.bare_concrete_function.concrete_function_name)
        refused.update(refused_ops(ancestors(graph_def, roots), graph_def.library, functions))
        if not meta.object_graph_def.nodes:
            refused.update(restore_refusals(graph_def, meta.saver_def))
    return refused


def check_saved_model(path):
    """Refuses a SavedModel folder that would run anything outside the allow-list; reads only
    its `saved_model.pb`, before `tf.saved_model.load` runs its restore and initialisers."""
    saved_model = read_saved_model_proto(path)
    if saved_model is not None:
        refuse(path, saved_model_refusals(saved_model))


# --- Keras files ----------------------------------------------------------------------------

STORED_CODE_LAYERS = frozenset({"Lambda"})  # layers whose config may hold Python code


def keras_file_config(path):
    """A Keras file's stored model config (JSON), None where it has none or cannot be read
    (the loaders then say why)."""
    try:
        if zipfile.is_zipfile(path):  # .keras (Keras 3 and tf-keras)
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:  # .h5: the attribute the loaders read
            text = f.attrs.get("model_config")
        if text is None:
            return None
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except Exception:
        return None


def stored_code_layers(config):
    """[(layer name, class name)] of the layers whose loading runs Python code stored in the
    config: `Lambda` layers (Keras 3's `__lambda__` or tf-keras' bytecode, and also a lambda
    named by its function's name), and any layer holding a serialised lambda (an activation)."""
    found = []

    def walk(value, layer):
        if isinstance(value, dict):
            inner = value.get("config")
            class_name = value.get("class_name")
            if isinstance(class_name, str) and isinstance(inner, dict) \
                    and isinstance(inner.get("name"), str) and class_name != "DTypePolicy":
                layer = (inner["name"], class_name)
            if (class_name in STORED_CODE_LAYERS or class_name == "__lambda__"
                    or value.get("function_type") == "lambda"
                    or value.get("output_shape_type") == "lambda") and layer not in found:
                found.append(layer)
            for item in value.values():
                walk(item, layer)
        elif isinstance(value, list):
            for item in value:
                walk(item, layer)

    walk(config, ("model", "Model"))
    return found


def check_keras_file(path):
    """Refuses a `.keras` / `.h5` whose stored config has layers that run stored Python code
    when loaded; reads the config only, before any Keras loader."""
    config = keras_file_config(path)
    layers = stored_code_layers(config) if config is not None else []
    if layers:
        named = ", ".join("%s (%s)" % layer for layer in layers[:6])
        if len(layers) > 6:
            named += " and %d more" % (len(layers) - 6)
        raise UntrustedModelError(shorten(
            "%s would run the Python code stored in its layer%s %s: %s" % (
                _short(path), "s" if len(layers) > 1 else "", named, TRUST_HINT),
            MESSAGE_LIMIT, first_sentence=False))


def _short(name, limit=120):
    """A model's name in a message: a long path keeps its end."""
    name = str(name)
    return name if len(name) <= limit else "…" + name[-(limit - 1):]
