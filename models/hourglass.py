"""SHN: the volumetric stacked hourglass network of SMPLR.

image (B, 256, 256, 3) -> per-stack heatmap logits (S, B, 64, 64, 16, 41 + 4):
41 point heatmaps and 4 limb maps on the voxel grid of `models.heatmaps`.

Mirrors the original (Newell et al.'s hourglass as adapted by SMPLR):
convolutions without bias, Glorot-normal kernels; batch norm with momentum
0.9, epsilon 1e-5, a learned offset and no learned scale (the default of the
TF1 `tf.contrib.layers.batch_norm` the original used).

Mixed precision: under a `mixed_float16` Keras policy the convolution body
runs in float16; the logits are cast to float32 at the output, so the loss
and soft-argmax always see float32.
"""
import keras
from keras import ops

from .heatmaps import GRID_AXES, GRID_DEPTH

#: Input crop side (pixels) and heatmap side: the stem downsamples by 4.
IMAGE_SIZE = 256
HEATMAP_SIZE = IMAGE_SIZE // 4


def _conv(filters, kernel_size=1, strides=1, name=None):
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="valid", use_bias=False,
                               kernel_initializer="glorot_normal", name=name)


def _batch_norm(name=None):
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, center=True, scale=False, name=name)


class Residual(keras.layers.Layer):
    """Pre-activation bottleneck residual module: (B, h, w, c) -> (B, h, w, num_out).

    BN-ReLU-conv1x1(n/2), BN-ReLU-conv3x3(n/2), BN-ReLU-conv1x1(n); the skip is
    the identity, or a 1x1 convolution when c != n.
    """

    def __init__(self, num_out, **kwargs):
        super().__init__(**kwargs)
        self.num_out = int(num_out)
        half = self.num_out // 2
        self.norm_1, self.conv_1 = _batch_norm("bn_1"), _conv(half, 1, name="conv_1x1_a")
        self.norm_2, self.pad_2, self.conv_2 = (_batch_norm("bn_2"), keras.layers.ZeroPadding2D(1),
                                                _conv(half, 3, name="conv_3x3"))
        self.norm_3, self.conv_3 = _batch_norm("bn_3"), _conv(self.num_out, 1, name="conv_1x1_b")
        self.skip = None

    def build(self, input_shape):
        if input_shape[-1] != self.num_out:
            self.skip = _conv(self.num_out, 1, name="skip")

    def call(self, inputs, training=False):
        x = self.conv_1(ops.relu(self.norm_1(inputs, training=training)))
        x = self.conv_2(self.pad_2(ops.relu(self.norm_2(x, training=training))))
        x = self.conv_3(ops.relu(self.norm_3(x, training=training)))
        return x + (inputs if self.skip is None else self.skip(inputs))

    def get_config(self):
        return {**super().get_config(), "num_out": self.num_out}


class Hourglass(keras.layers.Layer):
    """Recursive hourglass (B, h, w, n) -> (B, h, w, n) with `depth + 1` poolings.

    up = residual(x); low = residual(maxpool(x)) -> hourglass(depth - 1), or a
    residual at depth 0 -> residual -> nearest-neighbour upsampling x2; out = up + low.
    """

    def __init__(self, depth, num_features, **kwargs):
        super().__init__(**kwargs)
        self.depth, self.num_features = int(depth), int(num_features)
        self.up = Residual(num_features, name="up")
        self.pool = keras.layers.MaxPooling2D(2, 2, padding="valid")
        self.low_in = Residual(num_features, name="low_in")
        self.inner = (Hourglass(depth - 1, num_features, name=f"hourglass_{depth - 1}") if depth > 0
                      else Residual(num_features, name="low_mid"))
        self.low_out = Residual(num_features, name="low_out")
        self.upsample = keras.layers.UpSampling2D(2, interpolation="nearest")

    def build(self, input_shape):
        # Sub-layers build on first call. Without this, Keras would build the
        # layer by a symbolic pass, repeated at every nesting level.
        self.built = True

    def call(self, inputs, training=False):
        low = self.low_in(self.pool(inputs), training=training)
        low = self.low_out(self.inner(low, training=training), training=training)
        return self.up(inputs, training=training) + self.upsample(low)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "num_features": self.num_features}


class SHN(keras.Model):
    """Volumetric stacked hourglass: images (B, 256, 256, 3) -> logits (S, B, 64, 64, D, P + L) float32.

    num_stacks S, num_features (channels of the hourglass body), num_points P,
    num_limbs L, voxel_depth D. Each stack's 1x1 output convolution has
    (P + L) * D channels, reshaped so that channel c = d * (P + L) + m is
    heatmap m at depth slice d. `training` switches batch norm to batch
    statistics and enables dropout (rate 0.1). `grid_axes` ("world", SPEC, or
    "camera"; `heatmaps.GRID_AXES`): the axes the heatmaps were trained on,
    remembered so that `soft_argmax(..., axes=shn.grid_axes)` reads world-axes
    points back; it changes no weight.

    Intermediate supervision: for every stack but the last,
    next = dropout(ll_(ll)) + out_(out) + previous, with ll = conv-BN-ReLU of
    the hourglass output and out the stack's logits; the last stack's logits
    are taken from dropout(ll).
    """

    def __init__(self, num_stacks=5, num_features=256, num_points=41, num_limbs=4, voxel_depth=GRID_DEPTH,
                 hourglass_depth=3, dropout_rate=0.1, grid_axes="world", **kwargs):
        super().__init__(**kwargs)
        if num_stacks < 1 or num_features < 2 or num_features % 2 or num_points < 1 or num_limbs < 0 \
                or voxel_depth < 1:
            raise ValueError(f"SHN: invalid configuration num_stacks={num_stacks}, num_features={num_features} "
                             f"(even), num_points={num_points}, num_limbs={num_limbs}, voxel_depth={voxel_depth}")
        if grid_axes not in GRID_AXES:
            raise ValueError(f"SHN: grid_axes must be one of {', '.join(GRID_AXES)}, got {grid_axes!r}")
        self.grid_axes = grid_axes
        self.num_stacks, self.num_features = int(num_stacks), int(num_features)
        self.num_points, self.num_limbs, self.voxel_depth = int(num_points), int(num_limbs), int(voxel_depth)
        self.hourglass_depth, self.dropout_rate = int(hourglass_depth), float(dropout_rate)
        self.num_maps = self.num_points + self.num_limbs
        out_channels = self.num_maps * self.voxel_depth

        # Stem: 256 -> 128 (conv 6x6 / 2 after padding 2) -> 64 (max-pool).
        self.stem_pad = keras.layers.ZeroPadding2D(2)
        self.stem_conv = _conv(64, 6, strides=2, name="stem_conv")
        self.stem_res_1 = Residual(128, name="stem_res_1")
        self.stem_pool = keras.layers.MaxPooling2D(2, 2, padding="valid")
        self.stem_res_2 = Residual(128, name="stem_res_2")
        self.stem_res_3 = Residual(self.num_features, name="stem_res_3")

        self.hourglasses, self.ll_convs, self.ll_norms, self.dropouts, self.out_convs = [], [], [], [], []
        self.ll_skip_convs, self.out_skip_convs = [], []
        for s in range(self.num_stacks):
            self.hourglasses.append(Hourglass(self.hourglass_depth, self.num_features, name=f"stack_{s}_hourglass"))
            self.ll_convs.append(_conv(self.num_features, 1, name=f"stack_{s}_ll_conv"))
            self.ll_norms.append(_batch_norm(f"stack_{s}_ll_bn"))
            self.dropouts.append(keras.layers.Dropout(self.dropout_rate))
            self.out_convs.append(_conv(out_channels, 1, name=f"stack_{s}_out"))
            if s < self.num_stacks - 1:
                self.ll_skip_convs.append(_conv(self.num_features, 1, name=f"stack_{s}_ll_"))
                self.out_skip_convs.append(_conv(self.num_features, 1, name=f"stack_{s}_out_"))

    @staticmethod
    def _check_images_shape(shape):
        if len(shape) != 4 or tuple(shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"SHN: images must be (B, {IMAGE_SIZE}, {IMAGE_SIZE}, 3), got {tuple(shape)}")

    def build(self, input_shape):
        """Creates every weight: runs the convolution body once on a small zero image.

        Weight shapes depend only on channel counts, so the smallest image the
        stem and the hourglass poolings accept (64 x 64 for the default depth)
        builds the network at a sixteenth of the cost of a real crop; a symbolic
        pass would re-trace every nested level.
        """
        self._check_images_shape(input_shape)
        side = 4 * 2 ** (self.hourglass_depth + 1)
        self._stacks(ops.zeros((1, side, side, 3), self.compute_dtype), training=False)
        self.built = True

    def call(self, images, training=False):
        self._check_images_shape(images.shape)
        outputs = self._stacks(ops.cast(images, self.compute_dtype), training=training)
        return ops.stack([ops.reshape(ops.cast(out, "float32"),
                                      (-1, HEATMAP_SIZE, HEATMAP_SIZE, self.voxel_depth, self.num_maps))
                          for out in outputs], axis=0)

    def _stacks(self, images, training):
        """The convolution body: images (B, h, w, 3) -> S output maps (B, h/4, w/4, (P + L) * D)."""
        x = self.stem_conv(self.stem_pad(images))
        x = self.stem_pool(self.stem_res_1(x, training=training))
        x = self.stem_res_3(self.stem_res_2(x, training=training), training=training)
        outputs = []
        for s in range(self.num_stacks):
            hourglass = self.hourglasses[s](x, training=training)
            ll = ops.relu(self.ll_norms[s](self.ll_convs[s](hourglass), training=training))
            if s < self.num_stacks - 1:
                out = self.out_convs[s](ll)
                x = (self.dropouts[s](self.ll_skip_convs[s](ll), training=training)
                     + self.out_skip_convs[s](out) + x)
            else:
                out = self.out_convs[s](self.dropouts[s](ll, training=training))
            outputs.append(out)
        return outputs

    def get_config(self):
        return {**super().get_config(), "num_stacks": self.num_stacks, "num_features": self.num_features,
                "num_points": self.num_points, "num_limbs": self.num_limbs, "voxel_depth": self.voxel_depth,
                "hourglass_depth": self.hourglass_depth, "dropout_rate": self.dropout_rate,
                "grid_axes": self.grid_axes}
