"""The first layers of the post's network computed other ways that give the same outputs: is any faster?
The first convolution with its 3 input channels padded to 4 or 8 (zero weights on the padding), or as a
space-to-depth convolution; and ReLU after each pooling instead of before.

    ONEDNN_MAX_CPU_ISA=AVX2 python bench/block_variants.py        # the AVX2 kind

Each variant is a training step's share of the work at batch 32: the forward pass, then the gradients of the
weights (the images need none). First each is checked against the post's way (largest difference in the
outputs and the weight gradients), then the variants are timed in this process, alternated call by call
(cifar_cnn.py's thread settings), and a second process (ONEDNN_VERBOSE=1) gives oneDNN's kernel times.

- 4 or 8 channels: the images and the kernel padded with zeros; the padded weights get zero gradients.
- space-to-depth: each 2x2 block of pixels as one pixel of 12 channels (16x16x12); the 3x3 kernel placed at
  the four offsets of an output 2x2 block gives a 2x2x12x128 kernel: 15x15 pixels of 4 x 32 outputs, whose
  maximum over the 4 is the 2x2 max-pooling (the 30x30 outputs never exist).
- ReLU after pooling: max and ReLU commute (both keep order), so the outputs are the same; backward, ReLU's
  mask covers a quarter of the pixels, and the pooling's gradient goes to the same pixel.
"""

import collections
import os
import re
import subprocess
import sys

from common import ROOT, machine

sys.path.insert(0, ROOT)
import cifar_cnn  # its thread settings first

tf = cifar_cnn.tf
images = tf.Variable(tf.random.stateless_uniform((32, 32, 32, 3), (0, 0)))
kernel1 = tf.Variable(tf.random.stateless_normal((3, 3, 3, 32), (0, 1)) * 0.3)
bias1 = tf.Variable(tf.random.stateless_normal((32,), (0, 2)) * 0.1)
kernel2 = tf.Variable(tf.random.stateless_normal((3, 3, 32, 64), (0, 3)) * 0.1)
bias2 = tf.Variable(tf.random.stateless_normal((64,), (0, 4)) * 0.1)
WEIGHTS = [kernel1, bias1, kernel2, bias2]
POOL = {'ksize': 2, 'strides': 2, 'padding': 'VALID'}


def padded(channels):
    """The first convolution on images and kernel padded to `channels` with zeros. tf.concat, not tf.pad:
    a Conv2D + BiasAdd + Relu whose kernel comes from tf.pad stops the process in TensorFlow 2.21's oneDNN
    graph pass (mkl_layout_pass.cc: 'Could not find input edge 1 for Relu')."""
    wide = tf.Variable(tf.concat([images, tf.zeros((32, 32, 32, channels - 3))], axis=3))
    def first(_):
        kernel = tf.concat([kernel1, tf.zeros((3, 3, channels - 3, 32))], axis=2)
        return tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(wide, kernel, 1, 'VALID') + bias1), **POOL)
    return first


def as_is(x):
    return tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(x, kernel1, 1, 'VALID') + bias1), **POOL)


def space_to_depth_kernel(kernel):
    """3x3xCxO -> 2x2x4Cx4O: for each offset (p, q) of an output in its 2x2 block, the kernel shifted by it in
    a 4x4 window, regrouped as the 2x2 blocks space_to_depth makes (channels ordered row, column, channel)."""
    c, o = kernel.shape[2], kernel.shape[3]
    shifted = []
    for p in (0, 1):
        for q in (0, 1):
            window = tf.concat([tf.zeros((p, 3, c, o)), kernel, tf.zeros((1 - p, 3, c, o))], axis=0)
            window = tf.concat([tf.zeros((4, q, c, o)), window, tf.zeros((4, 1 - q, c, o))], axis=1)
            blocks = tf.transpose(tf.reshape(window, (2, 2, 2, 2, c, o)), (0, 2, 1, 3, 4, 5))
            shifted.append(tf.reshape(blocks, (2, 2, 4 * c, o)))
    return tf.concat(shifted, axis=3)


blocks = tf.Variable(tf.nn.space_to_depth(images, 2))


def space_to_depth(_):
    out = tf.nn.relu(tf.nn.conv2d(blocks, space_to_depth_kernel(kernel1), 1, 'VALID') + tf.tile(bias1, [4]))
    return tf.reduce_max(tf.reshape(out, (32, 15, 15, 4, 32)), axis=3)


def two_blocks(relu_first):
    def forward(x):
        for kernel, bias in ((kernel1, bias1), (kernel2, bias2)):
            x = tf.nn.conv2d(x, kernel, 1, 'VALID') + bias
            x = tf.nn.max_pool2d(tf.nn.relu(x), **POOL) if relu_first else tf.nn.relu(tf.nn.max_pool2d(x, **POOL))
        return x
    return forward


CHANNELS = r'ic\d+(oc\d+)?'  # a primitive's channels in oneDNN's shape string, e.g. ic3oc32
VARIANTS = {  # name: (its forward pass, the post's way it is compared with)
    'first convolution, 3 channels (as is)': (as_is, as_is),
    'first convolution, padded to 4 channels': (padded(4), as_is),
    'first convolution, padded to 8 channels': (padded(8), as_is),
    'first convolution, space-to-depth': (space_to_depth, as_is),
    'two convolutions, ReLU before pooling (as is)': (two_blocks(True), two_blocks(True)),
    'two convolutions, ReLU after pooling': (two_blocks(False), two_blocks(True)),
}


def step(forward, repeats=32):
    """`repeats` forward and weight-gradient passes in one call; the outputs and gradients of the last."""
    upstream = tf.random.stateless_normal(forward(images).shape, (1, 0))

    @tf.function
    def run():
        for _ in tf.range(repeats):
            with tf.GradientTape() as tape:
                out = forward(images)
                loss = tf.reduce_sum(out * upstream)
            grads = tape.gradient(loss, WEIGHTS, unconnected_gradients='zero')
        return out, grads
    return run


def kernel_times(name, calls=64):
    """oneDNN's kernels for one variant, from its verbose log: {(primitive, pass, shape): ms per call}."""
    if os.environ.get('ONEDNN_VERBOSE') == '1':  # the child: run and print the log
        for _ in range(calls):
            step(VARIANTS[name][0], 1)()
        return None
    out = subprocess.run([sys.executable, __file__, name], env={**os.environ, 'ONEDNN_VERBOSE': '1'},
                         capture_output=True, text=True, check=False).stdout
    rows = collections.defaultdict(list)
    for line in out.splitlines():
        if line.startswith('onednn_verbose,v1,primitive,exec,cpu,') and ',reorder,' not in line:
            f = line.split(',')
            rows[(f[5], f[7], f[11])].append(float(f[12]))
    return {key: sorted(ms)[len(ms) // 2] for key, ms in rows.items()}  # the median call: past the first ones


def main():
    if len(sys.argv) > 1:  # the verbose child
        return kernel_times(sys.argv[1])
    steps = {name: step(forward) for name, (forward, _) in VARIANTS.items()}
    print(f'{machine()}; ONEDNN_MAX_CPU_ISA={os.environ.get("ONEDNN_MAX_CPU_ISA", "(not set)")}; batch 32, forward and '
          'weight gradients; ms per pass: the median of 40 alternated calls of 32 passes.\n')
    print('| variant | largest difference: outputs, gradients | ms per pass | vs as is | oneDNN kernels, ms per call |')
    print('|---|---|---|---|---|')
    times = {name: [] for name in steps}
    for name, run in steps.items():
        run()
    for _ in range(40):
        for name, run in steps.items():
            start = tf.timestamp()
            run()
            times[name].append(float(tf.timestamp() - start) / 32 * 1e3)
    median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
    for name, (forward, reference) in VARIANTS.items():
        (out, grads), (ref_out, ref_grads) = steps[name](), step(reference, 1)()
        difference = lambda a, b: float(tf.reduce_max(tf.abs(a - b)))
        grads_apart = max(difference(g, r) for g, r in zip(grads, ref_grads))
        base = 'first convolution, 3 channels (as is)' if name.startswith('first') else \
            'two convolutions, ReLU before pooling (as is)'
        kernels = '; '.join(f'{kind} {passed.replace("_training", "")} {re.search(CHANNELS, shape).group(0)} {ms:.3f}'
                            for (kind, passed, shape), ms in kernel_times(name).items())
        print(f'| {name} | {difference(out, ref_out):.1e}, {grads_apart:.1e} | {median[name]:.3f} '
              f'| {median[name] / median[base]:.2f} | {kernels} |')


if __name__ == '__main__':
    sys.exit(main())
