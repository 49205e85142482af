"""Edit a user's segmentation ONNX before onnx2torch converts it: one output, logits.

- :func:`find_argmax`: a labels output (e.g. mmdeploy's ``with_argmax``) ends in an ArgMax,
  maybe followed by Cast/Unsqueeze/Squeeze/Reshape/Flatten/Identity; its input is the logits.
- :func:`keep_output`: that tensor becomes the only graph output and every node it does not
  need is dropped (the ArgMax and its tail included), so the converted net gives gradients.
- :func:`fold_constants`: Identity-of-initializer and Constant nodes become initializers,
  as onnx2torch reads Conv weights and biases only from initializers (PyTorch's legacy
  exporter writes deduplicated biases behind Identity nodes).

Protos are edited in place; callers pass a copy they own.
"""

from __future__ import annotations


#: Ops between an ArgMax and a labels output that only change its type or shape.
LABEL_TAIL = ("Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity")
RE_EXPORT = ("white-box attacks need the graph's logits: re-export it without the argmax "
             "(mmdeploy: codebase_config.with_argmax=False; torch.onnx.export of the model "
             "before its argmax)")


def find_argmax(graph, output: str):
    """The ArgMax node whose labels reach ``output`` through LABEL_TAIL ops only; None if none."""
    producer = {o: n for n in graph.node for o in n.output}
    name = output
    while name in producer:
        node = producer[name]
        if node.op_type == "ArgMax":
            return node
        if node.op_type not in LABEL_TAIL or not node.input:
            return None
        name = node.input[0]
    return None


def argmax_axis(node) -> int:
    """The ArgMax's axis attribute (ONNX's default 0): the class axis of its input."""
    for attr in node.attribute:
        if attr.name == "axis":
            return int(attr.i)
    return 0


def keep_output(model, name: str) -> None:
    """Make tensor ``name`` the graph's only output (float, shape unknown) and drop the nodes
    it does not depend on."""
    from onnx import TensorProto, helper

    graph = model.graph
    old = {vi.name: vi for vi in graph.output}
    vi = old.get(name) or next((v for v in graph.value_info if v.name == name), None)
    new = vi if vi is not None else helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
    new_copy = type(new)()
    new_copy.CopyFrom(new)
    del graph.output[:]
    graph.output.append(new_copy)
    needed, kept = {name}, []
    for node in reversed(graph.node):  # nodes are topologically sorted: consumers come later
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_subgraph_inputs(node))
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    init = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(init)


def _subgraph_inputs(node) -> set:
    """Every tensor name read inside the subgraphs of an If/Loop/Scan node (outer-scope reads
    among them), so pruning keeps their producers."""
    from onnx import AttributeProto

    names = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            for n in g.node:
                names.update(i for i in n.input if i)
                names.update(_subgraph_inputs(n))
    return names


def fold_constants(graph) -> None:
    """Constant nodes (tensor values) -> initializers; Identity nodes of an initializer ->
    readers of the initializer itself. Graph outputs are left as they are."""
    from onnx import TensorProto

    outputs = {vi.name for vi in graph.output}
    inits = {t.name for t in graph.initializer}
    rename, kept = {}, []
    for node in graph.node:
        node_inputs = [rename.get(i, i) for i in node.input]
        del node.input[:]
        node.input.extend(node_inputs)
        value = next((a for a in node.attribute if a.name == "value" and a.HasField("t")), None)
        if node.op_type == "Constant" and value is not None and node.output[0] not in outputs:
            tensor = TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            inits.add(tensor.name)
            continue
        if (node.op_type == "Identity" and node.input and node.input[0] in inits
                and node.output[0] not in outputs):
            rename[node.output[0]] = node.input[0]
            continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    if rename:
        _rename_in_subgraphs(graph, rename)


def _rename_in_subgraphs(graph, rename: dict) -> None:
    from onnx import AttributeProto

    for node in graph.node:
        for attr in node.attribute:
            for g in ([attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)):
                for n in g.node:
                    names = [rename.get(i, i) for i in n.input]
                    del n.input[:]
                    n.input.extend(names)
                _rename_in_subgraphs(g, rename)
