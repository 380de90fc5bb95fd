"""Side by side: the post's program as printed (bench/post_as_printed.py) vs cifar_cnn.py with its
defaults, each in its own subprocess, one after the other, for S seeds and E epochs.

    python bench/benchmark.py --data-dir /tmp/cifar10            # 10 epochs, 3 seeds (~35 min here)
    python bench/benchmark.py --data-dir /tmp/cifar10 --quick    # 1 epoch, 1 seed: a smoke run

Per side: wall time of the whole run (start-up and data loading included), CPU time (user + system:
steadier than wall time on a shared machine), mean epoch time, peak resident memory (the child's
own ru_maxrss, from os.wait4), test accuracy; then ours/post ratios.
Prints a Markdown table ready for the README. Run it on an otherwise idle machine.
"""

import argparse
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


def run_side(cmd):
    """Runs one side; returns wall and CPU seconds, peak RSS in GB, mean epoch time, test accuracy."""
    start = time.perf_counter()
    with tempfile.TemporaryFile('w+') as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        log.seek(0)
        out = log.read()
    if proc.returncode != 0:
        sys.exit(f'{" ".join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}')
    times = [float(t) for t in re.search(r'^Epoch times \(s\): ([\d., ]+?)(;|$)', out, re.MULTILINE).group(1).split(', ')]
    accuracy = float(re.search(r'^Accuracy: ([\d.]+)', out, re.MULTILINE).group(1))
    precision = re.search(r'^Precision: (\S+)', out, re.MULTILINE)  # cifar_cnn.py says what it chose
    return {'wall': wall, 'cpu': usage.ru_utime + usage.ru_stime, 'rss': usage.ru_maxrss / 1024**2,
            'epoch': statistics.mean(times), 'acc': accuracy, 'precision': precision and precision.group(1)}


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or 'unknown CPU'


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True, help='a CIFAR-10 folder cifar_cnn.py --data-dir accepts')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--quick', action='store_true', help='1 epoch, 1 seed')
    args = p.parse_args()
    if args.quick:
        args.epochs, args.seeds = 1, 1

    results = {'post': [], 'ours': []}
    with tempfile.TemporaryDirectory() as figures:
        for seed in range(args.seeds):
            sides = {
                'post': [sys.executable, os.path.join(HERE, 'post_as_printed.py'), args.data_dir,
                         str(args.epochs), str(seed)],
                'ours': [sys.executable, os.path.join(ROOT, 'cifar_cnn.py'), '--data-dir', args.data_dir,
                         '--epochs', str(args.epochs), '--seed', str(seed), '--figures-dir', figures],
            }
            for side, cmd in sides.items():
                r = run_side(cmd)
                results[side].append(r)
                print(f'seed {seed} {side:>4}: wall {r["wall"]:.0f} s, CPU {r["cpu"]:.0f} s, {r["epoch"]:.1f} s/epoch, '
                      f'peak RSS {r["rss"]:.2f} GB, test accuracy {r["acc"]:.4f}', flush=True)

    def summary(side):
        rs = results[side]
        return {'wall': statistics.mean(r['wall'] for r in rs), 'cpu': statistics.mean(r['cpu'] for r in rs),
                'epoch': statistics.mean(r['epoch'] for r in rs),
                'rss': max(r['rss'] for r in rs), 'acc': statistics.median(r['acc'] for r in rs)}
    post, ours = summary('post'), summary('ours')
    print(f'\n{args.epochs} epochs, batch 32, seeds 0-{args.seeds - 1}; {cpu_name()}, {os.cpu_count()} cores; '
          f'wall, CPU and epoch: mean over seeds; RSS: max; accuracy: median (local CIFAR-10 copy)\n')
    print('| | wall time | CPU time | mean epoch | peak RSS | test accuracy |')
    print('|---|---|---|---|---|---|')
    for name, s in (('post as printed (float32)', post), (f'cifar_cnn.py ({results["ours"][0]["precision"]})', ours)):
        print(f'| {name} | {s["wall"]:.0f} s | {s["cpu"]:.0f} s | {s["epoch"]:.1f} s | {s["rss"]:.2f} GB '
              f'| {s["acc"]:.4f} |')
    print(f'| ours / post | **{ours["wall"] / post["wall"]:.2f}x** | {ours["cpu"] / post["cpu"]:.2f}x '
          f'| {ours["epoch"] / post["epoch"]:.2f}x | {ours["rss"] / post["rss"]:.2f}x '
          f'| {ours["acc"] - post["acc"]:+.4f} |')
    print('\nper seed (post, ours): accuracy ' + '; '.join(
        f'{p["acc"]:.4f}, {o["acc"]:.4f}' for p, o in zip(results['post'], results['ours'])))


if __name__ == '__main__':
    main()
