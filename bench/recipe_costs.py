"""Where the best recipe's extra time goes, and what each way of paying it costs: augmentation in the
input pipeline (CPU seconds per epoch, three ways) and batch normalisation (ms per training step
and layer, forward and backward, three ways).

    python bench/recipe_costs.py --data-dir /tmp/cifar10     # ~1 minute

Augmentation, one epoch of 50,000 images in batches of 32, the pipeline alone (no training):
  plain               cifar_cnn.pipeline without --augment
  keras layers        Keras's RandomFlip + RandomTranslation(0.1, 0.1), mapped over the batches
  flip_and_shift      cifar_cnn_plumbing.flip_and_shift, what --augment runs
Inside the training step (where the layers were before) they cost training time instead: see
bench/README.md. Batch normalisation at the sizes of the post's three convolutions, under the
precision cifar_cnn.py picks: Keras 3's layer as it is, cifar_cnn_plumbing.fused_batch_norm() (TensorFlow's fused
kernel), and the whole step compiled with XLA (jit_compile) for comparison.
"""

import argparse
import os
import sys

from common import ROOT, best_ms, machine

sys.path.insert(0, ROOT)
import cifar_cnn  # after the path is set
import cifar_cnn_plumbing as plumbing
import cifar_cnn_readers as readers

keras, tf = cifar_cnn.keras, cifar_cnn.tf


def epoch_cpu(ds):
    """CPU seconds (user + system, all threads) to run through `ds` once, after a warm-up."""
    for _ in ds.take(10):
        pass
    start = os.times()
    for _ in ds:
        pass
    end = os.times()
    return end.user + end.system - start.user - start.system


def batch_norm_ms(make, shape, jit):
    x = tf.cast(tf.random.uniform(shape), keras.mixed_precision.global_policy().compute_dtype)
    layer = make()
    layer.build(shape)

    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(tf.cast(layer(x, training=True), tf.float32))
        return tape.gradient(total, [x, *layer.trainable_variables])
    return best_ms(step)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True, help='a CIFAR-10 folder cifar_cnn.py --data-dir accepts')
    args = p.parse_args()
    policy, _ = plumbing.choose_precision('auto')
    keras.mixed_precision.set_global_policy(policy)
    print(f'{policy}; {machine()}\n')

    (x, y), _ = readers.load_cifar10(args.data_dir)
    flip = keras.layers.RandomFlip('horizontal', dtype='float32')
    shift = keras.layers.RandomTranslation(0.1, 0.1, dtype='float32')
    plain = cifar_cnn.pipeline(x, y, 32, shuffle=True)
    ways = {'plain (no augmentation)': plain,
            'keras layers, mapped': plain.map(lambda a, b: (shift(flip(a, training=True), training=True), b)),
            'flip_and_shift (--augment)': cifar_cnn.pipeline(x, y, 32, shuffle=True, augment=True)}
    print('| augmentation in the pipeline | CPU s per epoch |\n|---|---|')
    for name, ds in ways.items():
        print(f'| {name} | {epoch_cpu(ds):.2f} |')

    shapes = [(32, 30, 30, 32), (32, 13, 13, 64), (32, 4, 4, 64)]
    makers = {"Keras 3's BatchNormalization": (keras.layers.BatchNormalization, False),
              'fused_batch_norm() (--batch-norm)':
                  (lambda: plumbing.fused_batch_norm(keras.layers.BatchNormalization()), False),
              "Keras's, compiled with XLA": (keras.layers.BatchNormalization, True)}
    print('\n| batch norm, forward + backward, ms per step | ' + ' | '.join('x'.join(map(str, s[1:])) for s in shapes)
          + ' | all three |\n|---|---|---|---|---|')
    for name, (make, jit) in makers.items():
        ms = [batch_norm_ms(make, shape, jit) for shape in shapes]
        print(f'| {name} | ' + ' | '.join(f'{m:.2f}' for m in ms) + f' | {sum(ms):.2f} |')


if __name__ == '__main__':
    main()
