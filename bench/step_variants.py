"""What each way of running cifar_cnn.py's training step buys: ms per step and validation seconds under
variants of TensorFlow's environment and of the step itself, each run in its own process, alternated.

    ONEDNN_MAX_CPU_ISA=AVX2 python bench/step_variants.py --data-dir /tmp/cifar10        # the AVX2 kind
    python bench/step_variants.py --data-dir /tmp/cifar10 --variants 'as is' 'intra 1, inter 2' --rounds 8

Each run trains cifar_cnn.py's network as its fit() does (its pipeline, steps_per_execution, validation on
the test set) for 3 epochs of --limit images, and keeps the last two: ms per step is the median over their
executions of 32 steps, validation the fastest pass. Runs go round by round, every variant once a round,
so that a slow spell of a shared machine falls on all alike; a variant's ratio is the median over rounds of
its time over that round's 'as is'. A variant that changes the numbers says so (see bench/README.md).
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

from common import ROOT, machine

THREADS = ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS', 'TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD')
VARIANTS = {  # name: (environment, change to the step: a function below, or None)
    'as is': ({}, None),
    'intra 1, inter 2': (dict(zip(THREADS, ('1', '2', 'true'))), None),
    'intra 2, inter 2': (dict(zip(THREADS, ('2', '2', 'true'))), None),
    'caller thread off': (dict(zip(THREADS, ('2', '1', 'false'))), None),
    'primitives cached': ({'TF_MKL_OPTIMIZE_PRIMITIVE_MEMUSE': 'false'}, None),
    "Eigen's kernels": ({'TF_ENABLE_ONEDNN_OPTS': '0'}, None),
    'fused Adam': ({}, 'fused_adam'),
    'ReLU after pooling': ({}, 'relu_after_pooling'),
    'pipeline precomputed': ({}, 'pipeline_precomputed'),
    'evaluation batch 100': ({}, 'evaluation_batch_100'),
    'evaluation batch 2000': ({}, 'evaluation_batch_2000'),
}


def fused_adam(cnn, keras, tf):
    """Adam as one ResourceApplyAdam op per variable instead of Keras's ~27 ops. Not the same numbers:
    the kernel computes 1 - beta in float32 (0.100000024), Keras in Python (0.1 rounded to 0.100000001)."""
    class FusedAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            index = self._get_variable_index(variable)
            step, constant = tf.cast(self.iterations + 1, variable.dtype), lambda x: tf.constant(x, variable.dtype)
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
                beta1_power=tf.pow(constant(self.beta_1), step), beta2_power=tf.pow(constant(self.beta_2), step),
                lr=tf.cast(learning_rate, variable.dtype), beta1=constant(self.beta_1), beta2=constant(self.beta_2),
                epsilon=constant(self.epsilon), grad=gradient)
    compile_like(cnn, cnn.model, FusedAdam(), keras)


def relu_after_pooling(cnn, keras, tf):
    """The ReLU after each pooling, not before: max and ReLU commute, so the outputs and gradients are the same
    (bench/block_variants.py checks), and ReLU's backward pass works on a quarter of the pixels."""
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((32, 32, 3)), layers.Conv2D(32, (3, 3)), layers.MaxPool2D((2, 2)), layers.ReLU(),
        layers.Conv2D(64, (3, 3)), layers.MaxPool2D((2, 2)), layers.ReLU(),
        layers.Conv2D(64, (3, 3), activation='relu'),
        layers.Flatten(), layers.Dense(64, activation='relu'), layers.Dense(10)])
    compile_like(cnn, model, 'adam', keras)


def compile_like(cnn, model, optimizer, keras):
    """`model` compiled as build_model() compiles, with `optimizer`, in place of cnn.model."""
    model.compile(optimizer=optimizer, metrics=['accuracy'], steps_per_execution=cnn.model.steps_per_execution,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cnn.model = model


def pipeline_precomputed(cnn, keras, tf):
    """An upper bound for any faster input pipeline: the training batches made once and kept (no shuffling
    after the first epoch), so that the pipeline costs nothing during the steps."""
    cnn.train_ds = cnn.train_ds.cache()
    for _ in cnn.train_ds:
        pass


def evaluation_batch(size):
    def change(cnn, keras, tf):
        import cifar_cnn_plumbing as plumbing
        cnn.validation_ds = plumbing.pipeline(cnn.test_imgs, cnn.test_labels, size)
    change.__doc__ = f'Validation in batches of {size}, not 500: the same predictions.'
    return change


CHANGES = {'fused_adam': fused_adam, 'relu_after_pooling': relu_after_pooling,
           'pipeline_precomputed': pipeline_precomputed, 'evaluation_batch_100': evaluation_batch(100),
           'evaluation_batch_2000': evaluation_batch(2000)}


def child(args):
    """One run: 3 epochs, the per-execution times and validation passes of the last two, as JSON."""
    sys.path.insert(0, ROOT)
    import cifar_cnn
    import cifar_cnn_plumbing as plumbing
    keras, tf = cifar_cnn.keras, cifar_cnn.tf
    keras.utils.set_random_seed(0)
    cnn = cifar_cnn.CifarCNN(data_dir=args.data_dir, epochs=3, limit=args.limit, show=False)
    cnn.train_ds, cnn.validation_ds, cnn.test_ds = plumbing.datasets(cnn)
    with plumbing.keras_quiet():
        cnn.model = cnn.build_model()
    if change := CHANGES.get(VARIANTS[args.child][1]):
        change(cnn, keras, tf)
    stamps, validation = [], []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            stamps.append([])
        def on_train_batch_end(self, batch, logs=None):
            stamps[-1].append(time.perf_counter())
        def on_test_begin(self, logs=None):
            self.start = time.perf_counter()
        def on_test_end(self, logs=None):
            validation.append(time.perf_counter() - self.start)
    cnn.model.fit(cnn.train_ds, epochs=3, validation_data=cnn.validation_ds, callbacks=[Clock()], shuffle=False,
                  verbose=0)
    steps = [(b - a) / cnn.model.steps_per_execution * 1e3 for epoch in stamps[1:]
             for a, b in itertools.pairwise(epoch)]
    print('RESULT ' + json.dumps({'ms': statistics.median(steps), 'validation': min(validation[1:])}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True, help='a CIFAR-10 folder cifar_cnn.py --data-dir accepts')
    p.add_argument('--limit', type=int, default=16384, help='training images per epoch (default: 16384)')
    p.add_argument('--rounds', type=int, default=6)
    p.add_argument('--variants', nargs='+', choices=VARIANTS, default=list(VARIANTS))
    p.add_argument('--child', choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    names = ['as is'] + [name for name in args.variants if name != 'as is']
    results = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names:
            environment = {**os.environ, **VARIANTS[name][0]}
            out = subprocess.run([sys.executable, __file__, '--data-dir', args.data_dir, '--limit', str(args.limit),
                                  '--child', name], env=environment, capture_output=True, text=True, check=False)
            if out.returncode:
                sys.exit(f'{name} failed:\n{out.stderr[-3000:]}')
            result = json.loads(out.stdout.rsplit('RESULT ', 1)[1])
            results[name].append(result)
            print(f'round {round_} {name}: {result["ms"]:.2f} ms/step, validation {result["validation"]:.2f} s',
                  file=sys.stderr, flush=True)
    print(f'{machine()}; ONEDNN_MAX_CPU_ISA={os.environ.get("ONEDNN_MAX_CPU_ISA", "(not set)")}; {args.rounds} rounds, '
          f'{args.limit} training images an epoch, the last 2 of 3 epochs.\n')
    print('| variant | ms per step: mean of runs (min-max) | vs as is: median of rounds | validation s (fastest) |')
    print('|---|---|---|---|')
    for name in names:
        ms = [r['ms'] for r in results[name]]
        ratio = statistics.median(r['ms'] / base['ms'] for r, base in zip(results[name], results['as is']))
        print(f'| {name} | {statistics.mean(ms):.2f} ({min(ms):.2f}-{max(ms):.2f}) | {ratio:.3f} '
              f'| {min(r["validation"] for r in results[name]):.2f} |')


if __name__ == '__main__':
    sys.exit(main())
