"""Paths in a TF graph: which ops lie between two tensors, which ops a fetch runs."""


def ops_between(start, end):
    """Ops on a path from tensor `start` to tensor `end`, in graph order."""
    downstream, frontier = set(), [start.op]
    while frontier:
        for tensor in frontier.pop().outputs:
            for consumer in tensor.consumers():
                if consumer not in downstream:
                    downstream.add(consumer)
                    frontier.append(consumer)
    upstream, frontier = set(), [end.op]
    while frontier:
        for tensor in frontier.pop().inputs:
            if tensor.op not in upstream:
                upstream.add(tensor.op)
                frontier.append(tensor.op)
    between = (downstream & upstream) | {end.op}
    return [op for op in end.graph.get_operations() if op in between]


def skip_identities(tensor):
    """The tensor an Identity chain forwards (the tensor itself when it is no Identity)."""
    while tensor.op.type == "Identity":
        tensor = tensor.op.inputs[0]
    return tensor


def ancestor_ops(tensors):
    """Every op that computing `tensors` runs."""
    seen, frontier = set(), [t.op for t in tensors]
    while frontier:
        op = frontier.pop()
        if op not in seen:
            seen.add(op)
            frontier.extend(t.op for t in op.inputs)
            frontier.extend(op.control_inputs)
    return seen


def reads(tensor, source, fed):
    """Whether computing `tensor` with tensor `fed` fed still runs `source`'s op."""
    seen, frontier = set(), [tensor]
    while frontier:
        current = frontier.pop()
        if current.name == fed.name or current.name in seen:
            continue
        seen.add(current.name)
        if current.op is source.op:
            return True
        frontier.extend(current.op.inputs)
        for control in current.op.control_inputs:
            frontier.extend(control.inputs)
            if control is source.op:
                return True
    return False
