"""Where a training step of the post's network goes, at batch 32: the network's first k layers,
forward and backward, are timed for every k, so that each layer's share is what adding it costs
in the real graph; then the whole step (forward, loss, backward, Adam). In ms and GFLOP/s.

    python bench/profile_step.py                        # the precision cifar_cnn.py would pick
    python bench/profile_step.py --precision float32

Uses cifar_cnn.py's thread settings (it imports it), so the numbers are the program's own.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import best_ms, layer_flops

import cifar_cnn
import cifar_cnn_plumbing as plumbing

keras, tf = cifar_cnn.keras, cifar_cnn.tf


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--precision', choices=['auto', 'float32', 'mixed'], default='auto')
    p.add_argument('--batch', type=int, default=32)
    args = p.parse_args()
    policy, why = plumbing.choose_precision(args.precision)
    keras.mixed_precision.set_global_policy(policy)
    model = cifar_cnn.build_network()
    x = tf.random.uniform((args.batch, 32, 32, 3))
    y = tf.random.uniform((args.batch, 1), maxval=10, dtype=tf.int32)
    optimizer, loss_fn = keras.optimizers.Adam(), keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    def prefix(k):  # the first k layers, forward and backward (no gradient for the images)
        layers_k = model.layers[:k]

        @tf.function
        def run():
            with tf.GradientTape() as tape:
                out = x
                for layer in layers_k:
                    out = layer(out, training=True)
                total = tf.reduce_sum(tf.cast(out, tf.float32))
            return tape.gradient(total, [v for layer in layers_k for v in layer.trainable_variables])
        return best_ms(run)

    cumulative = [prefix(k) for k in range(len(model.layers) + 1)]
    rows = [(f'{layer.name} ({type(layer).__name__})', cumulative[k + 1] - cumulative[k],
             3 * layer_flops(layer) * args.batch) for k, layer in enumerate(model.layers)]
    step_ms = best_ms(train_step)
    total = sum(flops for _, _, flops in rows)
    intra, inter = (os.environ.get(f'TF_NUM_{pool}_THREADS', 'default') for pool in ('INTRAOP', 'INTEROP'))
    print(f'{cifar_cnn.tf.__version__}, {policy} ({why}), batch {args.batch}, threads: intra {intra}, inter {inter}\n')
    print('| part | ms | share of the step | GFLOP/s |')
    print('|---|---|---|---|')
    for name, ms, flops in rows:
        print(f'| {name} | {ms:.2f} | {ms / step_ms:.0%} | {flops / ms / 1e6:.0f} |' if flops else
              f'| {name} | {ms:.2f} | {ms / step_ms:.0%} | |')
    rest = step_ms - cumulative[-1] + cumulative[0]
    print(f'| the rest: loss, Adam, one call into TensorFlow | {rest:.2f} | {rest / step_ms:.0%} | |')
    print(f'| **whole training step** | **{step_ms:.2f}** | 100% | {total / step_ms / 1e6:.0f} |')


if __name__ == '__main__':
    main()
