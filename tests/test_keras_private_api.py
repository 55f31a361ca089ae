"""The private (and undocumented) Keras APIs gradcam_cli relies on, one small test each.

pyproject.toml pins keras to the tested range. When a Keras upgrade breaks one of them,
the failure says what changed and which gradcam_cli code depends on it: pin keras below the new
version, or port that code.

    Functional._run_through_graph(inputs, operation_fn=)  models/graph.py:run_graph
    KerasTensor._keras_history                            models/graph.py:model_outputs, _single_input_steps
    Operation._inbound_nodes, Node.input_tensors/.output_tensors
                                                          models/graph.py:_single_input_steps, models/dilated.py
    Functional._nodes_by_depth                            models/dilated.py:_model_nodes
    dict outputs: model.outputs in keras.tree.flatten's (sorted-key) order
                                                          models/graph.py:model_outputs, flat_output
    a layer view sharing __dict__, activation=None        models/backprop_relus.py:without_activation
    BaseConv.convolution_op (undocumented)                models/heads.py:pre_activation
    keras.StatelessScope(state_mapping=) (public)         backend/jax.py
"""

import inspect

import numpy as np
from conftest import set_fixed_weights


def broken(keras, what, where):
    return (f"Keras {keras.__version__}: {what}, which gradcam_cli/{where} relies on; "
            f"pin keras below {keras.__version__} in pyproject.toml or port {where}")


def branching_model(keras):
    """input -> a -> b --+--> add -> inner (a nested model) -> flatten -> pred
         \\-> c ---------/"""
    layers = keras.layers
    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(inner_in, layers.Conv2D(2, 1, name="inner_conv")(inner_in), name="inner")
    inputs = keras.Input((8, 8, 3), name="image")
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(inputs)
    b = layers.Conv2D(4, 1, name="b")(a)
    c = layers.Conv2D(4, 1, name="c")(inputs)
    x = layers.Add(name="add")([b, c])
    x = inner(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(3, name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name="branching"))


def image(seed=0):
    return np.random.default_rng(seed).normal(size=(1, 8, 8, 3)).astype("float32")


def run_through_graph(keras, model, inputs, operation_fn):
    """model._run_through_graph(inputs, operation_fn=operation_fn), as graph.run_graph calls it."""
    where = "models/graph.py:run_graph"
    assert hasattr(model, "_run_through_graph"), broken(keras, "Functional._run_through_graph is gone", where)
    parameters = inspect.signature(model._run_through_graph).parameters
    assert "operation_fn" in parameters, broken(
        keras, f"Functional._run_through_graph takes no operation_fn any more (it takes {list(parameters)})", where)
    return model._run_through_graph(inputs, operation_fn=operation_fn)


def test_run_through_graph_calls_operation_fn_per_operation(keras):
    model = branching_model(keras)
    where = "models/graph.py:run_graph"

    calls = []

    def operation_fn(operation):
        def call(*args, **kwargs):
            calls.append((operation, args, kwargs))
            if operation.name == "pred":
                return operation(*args, **kwargs) * 0.0 + 7.0  # the replacement's value is used
            return operation(*args, **kwargs)
        return call

    outputs = run_through_graph(keras, model, image(), operation_fn)
    names = [operation.name for operation, _, _ in calls]
    expected = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert sorted(names) == sorted(layer.name for layer in expected), broken(
        keras, f"_run_through_graph(operation_fn=) calls it for {names}, not once per operation "
        f"({[layer.name for layer in expected]}, InputLayer excluded)", where)
    assert all(operation is model.get_layer(operation.name) for operation, _, _ in calls), broken(
        keras, "_run_through_graph passes operation_fn other objects than the model's own layers "
        "(run_graph names them by path and replaces their calls)", where)
    for before, after in [("a", "b"), ("b", "add"), ("c", "add"), ("add", "inner"), ("inner", "flatten"),
                          ("flatten", "pred")]:
        assert names.index(before) < names.index(after), broken(
            keras, f"_run_through_graph no longer calls operations in topological order ({names})", where)
    by_name = {operation.name: args for operation, args, _ in calls}
    assert len(by_name["add"]) == 1 and len(by_name["add"][0]) == 2, broken(
        keras, "_run_through_graph no longer passes a node's call arguments as they were given", where)
    assert tuple(by_name["inner"][0].shape) == (1, 8, 8, 4), broken(
        keras, "_run_through_graph no longer passes a nested model its input tensor as args[0]", where)

    single = outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs
    assert hasattr(single, "shape") and tuple(single.shape) == (1, 3), broken(
        keras, f"_run_through_graph returns {type(outputs).__name__}, not the model's outputs in its structure",
        where)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(single), 7.0, err_msg=broken(
        keras, "_run_through_graph ignores what operation_fn's callable returns", where))

    # describe_layers: symbolic shapes through compute_output_spec, adding no node to the model
    nodes = {layer.name: len(getattr(layer, "_inbound_nodes", ())) for layer in model.layers}
    symbolic = run_through_graph(keras, model, keras.KerasTensor((1, 8, 8, 3)), lambda op: op.compute_output_spec)
    symbolic = symbolic[0] if isinstance(symbolic, (list, tuple)) else symbolic
    assert tuple(symbolic.shape) == (1, 3), broken(
        keras, "_run_through_graph on a KerasTensor with compute_output_spec gives no (1, 3) output", where)
    assert {layer.name: len(getattr(layer, "_inbound_nodes", ())) for layer in model.layers} == nodes, broken(
        keras, "_run_through_graph with compute_output_spec adds nodes to the model's layers", where)


def test_keras_history_names_operation_node_and_tensor(keras):
    where = "models/graph.py:model_outputs and _single_input_steps"
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    shared = layers.Conv2D(3, 1, name="shared")
    first = shared(inputs)
    second = shared(first)
    model = keras.Model(inputs, layers.Dense(2, name="pred")(layers.Flatten()(second)))

    output = model.outputs[0]
    assert hasattr(output, "_keras_history"), broken(keras, "KerasTensor._keras_history is gone", where)
    history = output._keras_history
    assert len(history) == 3, broken(
        keras, f"KerasTensor._keras_history is {history!r}, not (operation, node_index, tensor_index)", where)
    operation, node_index, tensor_index = history
    assert operation is model.get_layer("pred") and operation.name == "pred", broken(
        keras, "KerasTensor._keras_history[0] is not the layer that produced the tensor", where)
    assert (node_index, tensor_index) == (0, 0), broken(
        keras, f"KerasTensor._keras_history of a single call is ({node_index}, {tensor_index}), not (0, 0)", where)
    assert second._keras_history[0] is shared and second._keras_history[1] == 1, broken(
        keras, "KerasTensor._keras_history's node_index does not count a shared layer's calls", where)
    assert isinstance(inputs._keras_history[0], layers.InputLayer), broken(
        keras, "a keras.Input's _keras_history[0] is no longer its InputLayer (the walk stops there)", where)


def test_inbound_nodes_hold_each_calls_tensors(keras):
    where = "models/graph.py:_single_input_steps and models/dilated.py:_leaves"
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    shared = layers.Conv2D(3, 1, name="shared")
    first = shared(inputs)
    second = shared(first)
    added = layers.Add(name="add")([first, second])

    assert hasattr(shared, "_inbound_nodes"), broken(keras, "Operation._inbound_nodes is gone", where)
    assert len(shared._inbound_nodes) == 2, broken(
        keras, f"a layer called twice has {len(shared._inbound_nodes)} _inbound_nodes, not one per call", where)
    for call, (given, produced) in enumerate([(inputs, first), (first, second)]):
        node = shared._inbound_nodes[call]
        assert hasattr(node, "input_tensors") and hasattr(node, "output_tensors"), broken(
            keras, "Node.input_tensors or Node.output_tensors is gone", where)
        assert len(node.input_tensors) == 1 and node.input_tensors[0] is given, broken(
            keras, f"_inbound_nodes[{call}].input_tensors is not the list of that call's input tensors", where)
        assert len(node.output_tensors) == 1 and node.output_tensors[0] is produced, broken(
            keras, f"_inbound_nodes[{call}].output_tensors is not the list of that call's outputs", where)
    operation, node_index, _ = second._keras_history
    assert operation._inbound_nodes[node_index].input_tensors[0] is first, broken(
        keras, "operation._inbound_nodes[_keras_history.node_index] is not the call that made the tensor", where)
    add_inputs = added._keras_history[0]._inbound_nodes[0].input_tensors
    assert len(add_inputs) == 2 and add_inputs[0] is first and add_inputs[1] is second, broken(
        keras, "Node.input_tensors of Add([x, y]) is not the flat list [x, y]", where)


def test_nodes_by_depth_holds_the_models_own_nodes(keras):
    where = "models/dilated.py:_model_nodes and _nodes_in"
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    conv = layers.Conv2D(4, 1, name="conv")
    model = keras.Model(inputs, layers.Flatten(name="flatten")(conv(inputs)))
    conv(keras.Input((8, 8, 3)))  # a call outside the model's graph

    assert hasattr(model, "_nodes_by_depth"), broken(keras, "Functional._nodes_by_depth is gone", where)
    depths = model._nodes_by_depth
    assert isinstance(depths, dict) and all(isinstance(nodes, list) for nodes in depths.values()), broken(
        keras, f"Functional._nodes_by_depth is a {type(depths).__name__}, not a dict of node lists", where)
    ids = {id(node) for nodes in depths.values() for node in nodes}
    assert id(conv._inbound_nodes[0]) in ids, broken(
        keras, "Functional._nodes_by_depth lacks the model's own call of a layer (the same Node objects as "
        "layer._inbound_nodes)", where)
    assert id(conv._inbound_nodes[1]) not in ids, broken(
        keras, "Functional._nodes_by_depth holds a layer's call made outside the model", where)
    flatten = model.get_layer("flatten")
    assert id(flatten._inbound_nodes[0]) in ids, broken(
        keras, "Functional._nodes_by_depth lacks a node of the model's graph", where)


def test_dict_outputs_follow_tree_flatten_order(keras):
    where = "models/graph.py:model_outputs and flat_output"
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Flatten()(inputs)
    model = keras.Model(inputs, {"zeta": layers.Dense(2, name="first")(x),
                                 "alpha": layers.Dense(3, name="second")(x)})
    assert isinstance(model.output, dict), broken(
        keras, f"model.output of a dict-output model is a {type(model.output).__name__}, not the dict", where)
    keys = sorted(model.output)
    assert [id(tensor) for tensor in model.outputs] == [id(model.output[key]) for key in keys], broken(
        keras, "model.outputs of a dict-output model is not in sorted key order", where)
    flat = keras.tree.flatten({"zeta": 1, "alpha": 2})
    assert flat == [2, 1], broken(keras, f"keras.tree.flatten no longer sorts dict keys ({flat})", where)

    outputs = run_through_graph(keras, model, image(), lambda operation: operation)
    assert isinstance(outputs, dict) and sorted(outputs) == keys, broken(
        keras, "_run_through_graph does not return a dict-output model's outputs as that dict", where)
    shapes = [tuple(tensor.shape[1:]) for tensor in keras.tree.flatten(outputs)]
    assert shapes == [tuple(tensor.shape[1:]) for tensor in model.outputs], broken(
        keras, "keras.tree.flatten of the outputs is not in the order of model.outputs", where)


def test_layer_viewwithout_activation_shares_variables(keras):
    from gradcam_cli.models.backprop_relus import without_activation

    where = "models/backprop_relus.py:without_activation"
    x = image(1)
    conv = keras.layers.Conv2D(4, 1, activation="relu", name="conv")
    dense = keras.layers.Dense(5, activation="relu", name="dense")
    flat = x.reshape(1, -1)
    conv(x), dense(flat)
    set_fixed_weights(conv, seed=3)
    set_fixed_weights(dense, seed=4)
    for layer, given in [(conv, x), (dense, flat)]:
        kind = type(layer).__name__
        kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
        expected = given @ kernel.reshape(-1, kernel.shape[-1]) + bias  # a 1x1 conv is a per-pixel matmul
        assert (expected < 0).any(), "the test's fixed weights give no negative pre-activation to check"
        assert hasattr(layer, "__dict__") and not hasattr(type(layer), "__slots__"), broken(
            keras, f"{kind} keeps its state outside __dict__", where)
        view = without_activation(layer)
        assert type(view) is type(layer) and view.kernel is layer.kernel and view.bias is layer.bias, broken(
            keras, f"a copy of a {kind}'s __dict__ no longer shares its variables", where)
        assert layer.activation is not None and layer.activation.__name__ == "relu", broken(
            keras, f"setting activation on the view with object.__setattr__ changed the {kind} itself", where)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(view(given)), expected, rtol=1e-5, atol=1e-5,
                                   err_msg=broken(keras, f"{kind}.call with activation=None does not give the "
                                                  "pre-activation (it no longer skips a None activation)", where))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(given)), np.maximum(expected, 0),
                                   rtol=1e-5, atol=1e-5, err_msg=broken(
            keras, f"calling the view changed the {kind} it was made from", where))


def test_conv_convolution_op_is_the_call_without_bias_and_activation(keras):
    where = "models/heads.py:pre_activation"
    ops = keras.ops
    layer = keras.layers.Conv2D(3, 1, activation="sigmoid", name="head")
    x = image(2)
    layer(x)
    set_fixed_weights(layer, seed=5)
    assert hasattr(layer, "convolution_op"), broken(keras, "Conv2D.convolution_op is gone", where)
    y = layer.convolution_op(x, layer.kernel)
    y = ops.add(y, ops.reshape(layer.bias, (1, 1, 1, -1)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ops.sigmoid(y)), keras.ops.convert_to_numpy(layer(x)),
                               rtol=1e-5, atol=1e-6, err_msg=broken(
        keras, "Conv2D.convolution_op(x, kernel) plus bias is no longer the call before its activation", where))


def test_stateless_scope_maps_variables(keras):
    where = "backend/jax.py"
    assert hasattr(keras, "StatelessScope"), broken(keras, "keras.StatelessScope is gone", where)
    layer = keras.layers.Dense(2, name="dense")
    x = np.ones((1, 3), "float32")
    layer(x)
    values = [np.zeros(layer.kernel.shape, "float32"), np.full(layer.bias.shape, 3.0, "float32")]
    with keras.StatelessScope(state_mapping=list(zip(layer.variables, values))):
        inside = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(inside, 3.0, err_msg=broken(
        keras, "keras.StatelessScope(state_mapping=[(variable, value)]) no longer replaces variables in a call",
        where))
    assert not np.allclose(keras.ops.convert_to_numpy(layer(x)), 3.0), broken(
        keras, "keras.StatelessScope changed the variables it mapped", where)

