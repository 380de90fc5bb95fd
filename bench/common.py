"""What bench/benchmark.py and bench/experiments.py share: run one program in its own process and
read what it printed."""

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROGRAM = os.path.join(ROOT, 'cifar_cnn.py')


def run(cmd):
    """Runs `cmd` (a training run that prints "Epoch times (s):" and "Accuracy:") in its own process.
    Returns wall and CPU seconds, peak RSS (GB, the child's own ru_maxrss), the epoch times, the test
    accuracy, and where printed the precision and the parameter count."""
    start = time.perf_counter()
    with tempfile.TemporaryFile('w+') as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        out = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f'{" ".join(cmd)} failed ({os.waitstatus_to_exitcode(status)}):\n{out[-3000:]}')
    times = re.search(r'^Epoch times \(s\): ([\d., ]+?)(;|$)', out, re.MULTILINE).group(1).split(', ')
    precision = re.search(r'^Precision: (\S+)', out, re.MULTILINE)
    params = re.search(r'Total params: ([\d,]+)', out)
    return {'wall': wall, 'cpu': usage.ru_utime + usage.ru_stime, 'rss': usage.ru_maxrss / 1024**2,
            'epochs': [float(t) for t in times], 'epoch': statistics.mean(float(t) for t in times),
            'acc': float(re.search(r'^Accuracy: ([\d.]+)', out, re.MULTILINE).group(1)),
            'precision': precision and precision.group(1), 'params': params and int(params.group(1).replace(',', ''))}


def machine():
    """The CPU's name, core count and whether it has native bfloat16, for the tables' captions."""
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read()
        name = re.search(r'^model name\s*:\s*(.*)$', info, re.MULTILINE).group(1).strip()
    except (OSError, AttributeError):
        info, name = '', platform.processor() or 'unknown CPU'
    kind = 'avx512_bf16' if 'avx512_bf16' in info else 'AVX2-only' if ' avx2' in info else 'no AVX2'
    return f'{name}, {os.cpu_count()} CPUs, {kind}'


def layer_flops(layer):
    """FLOPs of one image's forward pass through a Conv2D or Dense layer (2 per multiply-add); 0 for others."""
    import keras  # here, not above: benchmark.py measures the matmul peak before TensorFlow is set up
    if isinstance(layer, keras.layers.Conv2D):
        _, height, width, filters = layer.output.shape
        return 2 * height * width * filters * layer.kernel_size[0] * layer.kernel_size[1] * layer.input.shape[-1]
    if isinstance(layer, keras.layers.Dense):
        return 2 * layer.input.shape[-1] * layer.units
    return 0


def best_ms(step, repeats=200):
    """The best of 5 rounds of `repeats` calls, in ms per call: the least disturbed by a shared machine."""
    step()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        rounds.append((time.perf_counter() - start) / repeats * 1e3)
    return min(rounds)


def training_run(data_dir, steps, warm_up=64):
    """cifar_cnn.py's own training, as its fit() runs it (its tf.data pipeline, its compile, steps_per_execution),
    on the first (warm_up + steps) * 32 training images. Returns the trained model and train(), which trains
    `steps` more steps and returns the seconds they took; `warm_up` steps (tracing, oneDNN's primitives, the
    pipeline filling) are trained first. Imports cifar_cnn here: its thread settings hold from then on."""
    sys.path.insert(0, ROOT)
    import cifar_cnn
    import cifar_cnn_plumbing as plumbing
    cnn = cifar_cnn.CifarCNN(data_dir=data_dir, epochs=1, limit=(warm_up + steps) * 32, show=False)
    cnn.train_ds, cnn.validation_ds, cnn.test_ds = plumbing.datasets(cnn)  # preprocess_data() without its figure
    with plumbing.keras_quiet():
        cnn.model = cnn.build_model()
    cnn.model.fit(cnn.train_ds.take(warm_up), shuffle=False, verbose=0)  # the pipeline shuffles

    def train():
        start = time.perf_counter()
        cnn.model.fit(cnn.train_ds.skip(warm_up), shuffle=False, verbose=0)
        return time.perf_counter() - start
    return cnn.model, train
