"""TF 1 graphs: a `.meta` MetaGraphDef imported with `import_meta_graph` (under the override,
so its Relus are guided) and its variables restored from the checkpoint beside it with the
Saver the meta graph carries."""
import os

import tensorflow.compat.v1 as tf

from guided_gradcam.core import model_safety
from guided_gradcam.errors import CheckpointError, GuidedGradCamError, first_line
from guided_gradcam.sources.base import ModelSource, PlacedModel
from guided_gradcam.sources.graph_def import (
    SCOPE, check_no_guided_ops_in_functions, default_layer, input_and_output_names,
    input_shape_of, refuse_training_batch_norm, scope_layers, tensor_name)


def read_meta_graph(path):
    meta = tf.MetaGraphDef()
    try:
        with open(path, "rb") as f:
            meta.ParseFromString(f.read())
    except OSError as error:
        raise GuidedGradCamError("cannot read %s: %s" % (path, error.strerror)) from None
    except Exception:
        raise GuidedGradCamError("%s is not a TF 1 MetaGraphDef (.meta)" % path) from None
    if not meta.graph_def.node:
        raise GuidedGradCamError("%s is not a TF 1 MetaGraphDef (.meta): no graph" % path)
    return meta


class MetaGraphSource(ModelSource):
    def __init__(self, path, preprocessing, checkpoint=None, input_name=None, output_name=None,
                 feeds=None, trust_model=False):
        self.name = path
        self.meta = read_meta_graph(path)
        self.preprocessing = preprocessing
        self.checkpoint = checkpoint or path[:-len(".meta")]
        check_no_guided_ops_in_functions(self.meta.graph_def, path)
        if not os.path.exists(self.checkpoint + ".index"):
            raise CheckpointError("no checkpoint %s for %s: pass --checkpoint PREFIX"
                                  % (self.checkpoint, path))
        graph_def = self.meta.graph_def
        self.feeds = dict(feeds or {})
        self.input_name, self.output_name = input_and_output_names(
            graph_def, path, input_name, output_name, self.feeds)
        if not trust_model:  # the output's ops and the restore's: the allow-list, before any run
            model_safety.check_meta_graph(self.meta, [self.output_name], path)
        self.input_shape = input_shape_of(graph_def, self.input_name)

    def place(self, net_input):
        graph = tf.get_default_graph()
        dtypes = {node.name: node.attr["dtype"].type for node in self.meta.graph_def.node
                  if "dtype" in node.attr}
        input_map = {self.input_name: net_input}
        for name, value in self.feeds.items():
            input_map[tensor_name(name)] = tf.constant(value, dtype=dtypes.get(name.split(":")[0]))
        try:
            saver = tf.train.import_meta_graph(self.meta, input_map=input_map,
                                               import_scope=SCOPE, clear_devices=True)
        except (ValueError, KeyError) as error:
            raise GuidedGradCamError("cannot import %s: %s" % (self.name, first_line(error))) from None
        output = graph.get_tensor_by_name(SCOPE + "/" + self.output_name)
        refuse_training_batch_norm(graph, SCOPE + "/", self.meta.graph_def.library, self.name)
        layers, aliases = scope_layers(SCOPE + "/", net_input, output)

        def restore(session):
            if saver is None:
                return
            try:
                saver.restore(session, self.checkpoint)
            except (tf.errors.OpError, ValueError) as error:
                raise CheckpointError("cannot restore %s from %s: %s"
                                      % (self.name, self.checkpoint, first_line(error))) from None
        return PlacedModel(output=output, layers=layers, default_layer=default_layer(layers),
                           restore=restore, scope=SCOPE + "/", layer_aliases=aliases)
