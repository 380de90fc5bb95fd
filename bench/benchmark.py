"""Side by side: the post's program as printed (bench/post_as_printed.py) against cifar_cnn.py with its
defaults, each in its own process, one after the other, for S seeds and E epochs; and how close
each runs to what this machine's CPU can do.

    python bench/benchmark.py --data-dir /tmp/cifar10            # 10 epochs, 3 seeds (~20 min, avx512_bf16)
    python bench/benchmark.py --data-dir /tmp/cifar10 --quick    # 1 epoch, 1 seed: a smoke run
    python bench/benchmark.py --data-dir /tmp/cifar10 --max-cpu-isa AVX2   # both sides on oneDNN's AVX2 kernels

Per side: wall time of the whole run (start-up and data loading included), CPU time (user + system:
steadier than wall time on a shared machine), mean epoch time, peak resident memory, test accuracy;
then ours/post ratios. Before the runs it measures the machine's matrix-multiply peak (numpy and
TensorFlow, float32, and bfloat16 where the CPU has it), and after them it reports each side's
training throughput: the FLOPs of an epoch, counted from the post's model, over the mean epoch time.
Prints Markdown ready for bench/README.md. Run it on an otherwise idle machine.

--max-cpu-isa ISA sets ONEDNN_MAX_CPU_ISA=ISA for the peak measurement and both sides alike (exporting it
yourself does the same): oneDNN then runs only the kernels of that ISA, so that a CPU with AVX-512 measures
what an AVX2-only CPU, most laptops, would run. cifar_cnn.py follows the cap as the CPU kind it emulates
(float32 below AVX512_CORE_BF16, its thread layout). Under such a cap the peak is TensorFlow's float32
matmul's alone: numpy's BLAS ignores the variable, and oneDNN has no bfloat16 kernels there.
"""

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
import warnings

from common import HERE, PROGRAM, layer_flops, machine, run

# oneDNN's ISAs without bfloat16 kernels: cifar_cnn_plumbing.BELOW_BFLOAT16 (not imported: it sets TensorFlow's threads)
BELOW_BFLOAT16 = {'SSE41', 'AVX', 'AVX2', 'AVX2_VNNI', 'AVX2_VNNI_2', 'AVX512_CORE', 'AVX512_CORE_VNNI'}


def matmul_peak(multiply, n=2048, repeats=10):
    """Best GFLOP/s of `multiply()` (an n x n by n x n product) over `repeats` tries."""
    multiply()  # warm up: threads, caches, oneDNN's kernel choice
    best = min(timed(multiply) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def timed(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def peaks(capped):
    """This machine's matrix-multiply peak in GFLOP/s: numpy and TensorFlow float32, TensorFlow bfloat16 (not
    when `capped`: oneDNN has no bfloat16 kernels below AVX512_CORE_BF16)."""
    import numpy as np
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import tensorflow as tf  # with TensorFlow's own thread defaults: every core, the most it can do
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    result = {'numpy float32': matmul_peak(lambda: a @ a)}
    for name, dtype in (('TensorFlow float32', tf.float32), ('TensorFlow bfloat16', tf.bfloat16))[:1 if capped else 2]:
        t = tf.constant(a, dtype=dtype)
        result[name] = matmul_peak(lambda t=t: tf.linalg.matmul(t, t).numpy())
    return result


def epoch_flops(train_images=50_000, test_images=10_000):
    """FLOPs of one epoch of the post's model: its forward pass counted layer by layer (2 per
    multiply-add), training at ~3x the forward pass (forward, then gradients for inputs and
    weights), plus the forward pass over the test set that validation runs every epoch."""
    from post_as_printed import CifarCNN
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Keras 3 on the post's input_shape=
        model = CifarCNN.build_model(None)  # the post's build_model uses nothing of self
    forward = sum(layer_flops(layer) for layer in model.layers)
    return 3 * forward * train_images + forward * test_images


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True, help='a CIFAR-10 folder cifar_cnn.py --data-dir accepts')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--quick', action='store_true', help='1 epoch, 1 seed')
    p.add_argument('--max-cpu-isa', metavar='ISA', help='ONEDNN_MAX_CPU_ISA for both sides and the peak, e.g. AVX2')
    args = p.parse_args()
    if args.quick:
        args.epochs, args.seeds = 1, 1
    if args.max_cpu_isa:
        os.environ['ONEDNN_MAX_CPU_ISA'] = args.max_cpu_isa  # read as oneDNN loads: here, and in both sides' processes
    cap = os.environ.get('ONEDNN_MAX_CPU_ISA')
    below_bfloat16 = bool(cap) and cap.upper() in BELOW_BFLOAT16

    peak = peaks(below_bfloat16)  # before anything imports cifar_cnn, whose thread settings would hold it back
    print('matrix-multiply peak (2048 x 2048, best of 10): '
          + ', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peak.items()))
    results = {'post': [], 'ours': []}
    with tempfile.TemporaryDirectory() as figures:
        for seed in range(args.seeds):
            sides = {'post': [sys.executable, os.path.join(HERE, 'post_as_printed.py'), args.data_dir,
                              str(args.epochs), str(seed)],
                     'ours': [sys.executable, PROGRAM, '--data-dir', args.data_dir, '--epochs', str(args.epochs),
                              '--seed', str(seed), '--figures-dir', figures]}
            for side, cmd in sides.items():
                r = run(cmd)
                results[side].append(r)
                print(f'seed {seed} {side:>4}: wall {r["wall"]:.0f} s, CPU {r["cpu"]:.0f} s, {r["epoch"]:.1f} s/epoch, '
                      f'peak RSS {r["rss"]:.2f} GB, test accuracy {r["acc"]:.4f}', flush=True)

    flops = epoch_flops()

    def summary(side, precision):
        rs = results[side]
        s = {'wall': statistics.mean(r['wall'] for r in rs), 'cpu': statistics.mean(r['cpu'] for r in rs),
             'epoch': statistics.mean(r['epoch'] for r in rs),
             'rss': max(r['rss'] for r in rs), 'acc': statistics.median(r['acc'] for r in rs)}
        s['gflops'] = flops / s['epoch'] / 1e9
        best = peak['TensorFlow float32'] if below_bfloat16 else max(peak['numpy float32'], peak['TensorFlow float32'])
        s['peak'] = peak['TensorFlow bfloat16'] if precision == 'mixed_bfloat16' else best
        return s
    ours_precision = results['ours'][0]['precision']
    post, ours = summary('post', 'float32'), summary('ours', ours_precision)
    print(f'\n{args.epochs} epochs, batch 32, seeds 0-{args.seeds - 1}; {machine()}'
          f'{f", ONEDNN_MAX_CPU_ISA={cap} on both sides" if cap else ""}; wall, CPU and epoch: mean '
          f'over seeds; RSS: max; accuracy: median. An epoch is {flops / 1e12:.2f} TFLOP.\n')
    print('| | wall time | CPU time | mean epoch | peak RSS | test accuracy | training GFLOP/s | of peak |')
    print('|---|---|---|---|---|---|---|---|')
    for name, s in (('post as printed (float32)', post), (f'cifar_cnn.py ({ours_precision})', ours)):
        print(f'| {name} | {s["wall"]:.0f} s | {s["cpu"]:.0f} s | {s["epoch"]:.1f} s | {s["rss"]:.2f} GB '
              f'| {s["acc"]:.4f} | {s["gflops"]:.0f} | {s["gflops"] / s["peak"]:.0%} of {s["peak"]:.0f} |')
    print(f'| ours / post | **{ours["wall"] / post["wall"]:.2f}x** | {ours["cpu"] / post["cpu"]:.2f}x '
          f'| {ours["epoch"] / post["epoch"]:.2f}x | {ours["rss"] / post["rss"]:.2f}x '
          f'| {ours["acc"] - post["acc"]:+.4f} | {ours["gflops"] / post["gflops"]:.2f}x | |')
    print('\nper seed (post, ours): accuracy ' + '; '.join(
        f'{p["acc"]:.4f}, {o["acc"]:.4f}' for p, o in zip(results['post'], results['ours'])))
    if args.seeds > 1:
        print('accuracy, mean ± sd: ' + ', '.join(f'{side} {statistics.mean(r["acc"] for r in results[side]):.4f} ± '
                                                   f'{statistics.stdev(r["acc"] for r in results[side]):.4f}'
                                                   for side in results))
    print('wall time, ours / post, seed by seed: ' + ', '.join(
        f'{o["wall"] / p["wall"]:.2f}' for p, o in zip(results['post'], results['ours'])))
    print('epoch times (s): post ' + '; '.join(', '.join(f'{t:.1f}' for t in r['epochs']) for r in results['post']))
    print('                 ours ' + '; '.join(', '.join(f'{t:.1f}' for t in r['epochs']) for r in results['ours']))


if __name__ == '__main__':
    main()
