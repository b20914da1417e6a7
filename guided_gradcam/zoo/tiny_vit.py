"""A tiny Keras 3 vision transformer and the synthetic task it learns in seconds: where is the
bright square? It stands in for real ViT weights, which no package this project can reach ships
(keras_hub's presets need a hub), in the README's figure and the tests' known answer.

The model uses Keras' own layers and ops only (no custom classes), so its `.keras` file loads
anywhere: a patch-embedding Conv2D, leading tokens (the class token and register tokens) and
position embeddings as `Embedding` layers over ids computed in the model, pre-norm blocks of
`MultiHeadAttention` and a GELU MLP, then a head on the class token (`readout="cls"`) or on the
mean of all tokens (`readout="pool"`), after a final LayerNorm unless `final_norm=False`.

Why the known-answer model has no final LayerNorm: a LayerNorm is scale invariant, so the
gradient of the score at its input is orthogonal to that input. Behind the class token, the
gradient has no component along what the class token has read (the square), and Grad-CAM's
first-order weights favour the tokens it has not read: on the trained tiny ViT, Grad-CAM's peak
on the default layer lies in the square for 46 % of held-out images with a final norm and 100 %
without (the attention methods: 95-100 % either way).

The task: a dark noisy image with one bright square on the patch grid; its class is where the
square is (one class per patch position, row by row), and one more class for no square.
"""
import numpy as np

CELLS = (4, 4)  # the squares' positions: the 4 x 4 patches of a 32 x 32 image, one class each


def build_vit(input_size=(32, 32), patch=8, dim=32, blocks=2, heads=4, leading_tokens=1,
              classes=CELLS[0] * CELLS[1] + 1, readout="cls", final_norm=True, seed=0, name="tiny_vit"):
    """The Keras model: softmax scores over `classes`. `leading_tokens` = the class token plus
    register tokens, all in front of the patch tokens."""
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(seed)
    height, width = input_size
    grid = (height // patch) * (width // patch)
    inputs = keras.Input((height, width, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    x = layers.Conv2D(dim, patch, strides=patch, name="patch_embed")(x)
    x = layers.Reshape((grid, dim), name="patch_tokens")(x)

    def ids(tokens, count):  # 0, 1, …, count − 1 per image, from a tensor of the batch
        return ops.cast(ops.cumsum(ops.ones_like(tokens[:, :count, 0]), axis=1) - 1, "int32")
    if leading_tokens:
        extra = layers.Embedding(leading_tokens, dim, name="leading_tokens")(ids(x, leading_tokens))
        x = layers.Concatenate(axis=1, name="with_leading_tokens")([extra, x])
    positions = layers.Embedding(grid + leading_tokens, dim, name="position_embedding")(
        ids(x, grid + leading_tokens))
    x = layers.Add(name="embedded")([x, positions])
    for block in range(blocks):
        h = layers.LayerNormalization(epsilon=1e-6, name="block%d_norm1" % block)(x)
        h = layers.MultiHeadAttention(heads, dim // heads, name="block%d_attn" % block)(h, h)
        x = layers.Add(name="block%d_add" % block)([x, h])
        h = layers.LayerNormalization(epsilon=1e-6, name="block%d_norm2" % block)(x)
        h = layers.Dense(2 * dim, activation="gelu", name="block%d_mlp1" % block)(h)
        h = layers.Dense(dim, name="block%d_mlp2" % block)(h)
        x = layers.Add(name="block%d_out" % block)([x, h])
    if final_norm:
        x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    if readout == "cls":
        x = x[:, 0]
    else:
        x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def square_images(count, input_size=(32, 32), side=8, cells=CELLS, seed=0, empty=0.2):
    """(uint8 images (count, H, W, 3), labels, boxes (count, 4) as y0, x0, y1, x1 exclusive):
    noise in 0..80 and one square of `side` in 200..255 on the `side` grid, inside one of the
    `cells` (rows, columns) of the image; the label is that cell, row by row. A fraction
    `empty` of the images has no square: label `cells[0] * cells[1]` (`class_names`), box
    zeros. Trained with them, a class needs its square, not the darkness of the other cells."""
    rng = np.random.default_rng(seed)
    height, width = input_size
    cell_height, cell_width = height // cells[0], width // cells[1]
    no_square = cells[0] * cells[1]
    images = rng.integers(0, 81, (count, height, width, 3)).astype(np.uint8)
    labels = np.where(rng.random(count) < empty, no_square, rng.integers(0, no_square, count))
    boxes = np.zeros((count, 4), np.int64)
    for index, label in enumerate(labels):
        if label == no_square:
            continue
        row, column = divmod(int(label), cells[1])
        y0 = row * cell_height + side * rng.integers(0, max(cell_height // side, 1))
        x0 = column * cell_width + side * rng.integers(0, max(cell_width // side, 1))
        images[index, y0:y0 + side, x0:x0 + side] = rng.integers(200, 256, (side, side, 3))
        boxes[index] = (y0, x0, y0 + side, x0 + side)
    return images, labels, boxes


def class_names(cells=CELLS):
    """'square at row 0, column 1', …, 'no square'."""
    return tuple("square at row %d, column %d" % divmod(index, cells[1])
                 for index in range(cells[0] * cells[1])) + ("no square",)


def train_vit(model, images, labels, epochs=8, batch_size=32, seed=0, learning_rate=1e-3):
    """Adam on sparse cross-entropy; returns the final training accuracy."""
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(images.astype(np.float32), labels, epochs=epochs, batch_size=batch_size,
                        verbose=0, shuffle=True)
    return float(history.history["accuracy"][-1])
