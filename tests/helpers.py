"""Helpers shared by several test modules (test modules import from here, never from each
other): the toy network whose gradients the tests write out by hand, bilinear upsampling with
half-pixel centres written out in numpy, and guided ReLU / ReLU6 of the tests' own
(`tf.custom_gradient`, eager), for references that share no code with the toolkit's override."""
import numpy as np
import tensorflow as tf2
import tensorflow.compat.v1 as tf

from guided_gradcam.zoo.networks import NetworkSpec


def _toy_weights():
    rng = np.random.default_rng(7)
    return (rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
            rng.normal(size=(4, 6)).astype(np.float32),
            rng.normal(size=(6, 3)).astype(np.float32))


KERNEL, W_HIDDEN, W_LOGITS = _toy_weights()


def toy_build(images, num_classes):
    features = tf.nn.relu(tf.nn.conv2d(images, KERNEL, strides=2, padding="SAME"))
    pre_hidden = tf.matmul(tf.reduce_mean(features, axis=[1, 2]), W_HIDDEN)
    logits = tf.matmul(tf.nn.relu(pre_hidden), W_LOGITS[:, :num_classes])
    return logits, {"features": features}


TOY = NetworkSpec(
    name="toy", build=toy_build, preprocess=lambda rgb: rgb / 255.0, preprocessing_name="/255",
    input_size=(8, 8), default_layer="features", logits_variable="", archive="",
    checkpoint_name="")


def toy_images(seed, count):
    return np.random.default_rng(seed).integers(0, 256, size=(count, 8, 8, 3)).astype(np.uint8)


def bilinear_half_pixel(image, height, width):
    """Bilinear upsampling with pixel centres at (i + 0.5), edges clamped, written out."""
    def weights(size_in, size_out):
        source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, size_in - 1)
        matrix = np.zeros((size_out, size_in))
        matrix[np.arange(size_out), low] += 1 - (source - low)
        matrix[np.arange(size_out), high] += source - low
        return matrix
    return weights(image.shape[0], height) @ image @ weights(image.shape[1], width).T


@tf2.custom_gradient
def guided_relu(x):
    def grad(dy):
        return dy * tf2.cast(dy > 0, dy.dtype) * tf2.cast(x > 0, dy.dtype)
    return tf2.nn.relu(x), grad


@tf2.custom_gradient
def guided_relu6(x):
    def grad(dy):
        return dy * tf2.cast(dy > 0, dy.dtype) * tf2.cast((x > 0) & (x < 6), dy.dtype)
    return tf2.nn.relu6(x), grad


# A tiny segmentation task (tests/test_segmentation.py, scripts/segmentation_figure.py): a
# square and a disc of one colour on noise, per-pixel labels 0 background, 1 square, 2 disc.
SEGMENTATION_SIZE = 32


def scenes(seed, count, shapes=(1, 2)):
    """(uint8 images, int labels) of a square (side 7-11) and a disc (radius 4-5) apart."""
    rng = np.random.default_rng(seed)
    size = SEGMENTATION_SIZE
    images = rng.integers(0, 90, (count, size, size, 3)).astype(np.uint8)
    labels = np.zeros((count, size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    for i in range(count):
        while True:
            side = rng.integers(7, 12)
            x0, y0 = rng.integers(0, size - side, 2)
            radius = rng.integers(4, 6)
            cx, cy = rng.integers(radius, size - radius, 2)
            if abs(cx - x0 - side / 2) + abs(cy - y0 - side / 2) > side / 2 + radius + 2:
                break
        colour = rng.integers(150, 256, 3)
        square = (xx >= x0) & (xx < x0 + side) & (yy >= y0) & (yy < y0 + side)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius * radius
        for shape, pixels in ((1, square), (2, disc)):
            if shape in shapes:
                images[i][pixels], labels[i][pixels] = colour, shape
    return images, labels


def build_and_train_segmentation():
    """The encoder-decoder, trained for 25 epochs on 400 scenes (about 10 s on 2 cores); call
    it in eager mode."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SEGMENTATION_SIZE, SEGMENTATION_SIZE, 3))
    hidden = keras.layers.Rescaling(1 / 255.0)(inputs)
    for name, filters in (("enc1", 16), ("enc2", 16)):
        hidden = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                     name=name)(hidden)
    hidden = keras.layers.MaxPooling2D(2, name="down")(hidden)
    for name in ("middle", "middle2"):
        hidden = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=name)(hidden)
    hidden = keras.layers.UpSampling2D(2, name="up")(hidden)
    hidden = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="decoder")(hidden)
    outputs = keras.layers.Conv2D(3, 1, activation="softmax", name="classes")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    images, labels = scenes(0, 400)
    model.fit(images.astype(np.float32), labels, epochs=25, batch_size=32, verbose=0)
    return model
