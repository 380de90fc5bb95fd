"""The reader's next experiments, measured: cifar_cnn.py with the post's defaults, each "Beyond the
post" flag alone, and combinations, for E epochs and S seeds, each run in its own process. Prints
a Markdown table (bench/README.md holds the results).

    python bench/experiments.py --data-dir /tmp/cifar10                      # 10 epochs, 3 seeds, all
    python bench/experiments.py --data-dir /tmp/cifar10 --epochs 30 --variants default 'all four'
    python bench/experiments.py --data-dir /tmp/cifar10 --epochs 1 --seeds 1 --limit 2000  # smoke run

Runs go seed by seed, every variant once per seed, so that a slow spell of a shared machine falls
on all variants alike; s/epoch is the fastest seed's, since such a spell only ever slows a run. `--figures DIR` keeps
each variant's seed-0 history.png as DIR/history-VARIANT.png.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

from common import PROGRAM, machine, run

VARIANTS = {
    'default': [],
    'default-float32': ['--precision', 'float32'],  # where mixed precision is the default: what it costs
    'augment': ['--augment'],
    'batch-norm': ['--batch-norm'],
    'dropout': ['--dropout', '0.3'],
    'cosine-decay': ['--cosine-decay'],
    'validation-split': ['--validation-split', '0.1'],
    'augment+batch-norm+cosine': ['--augment', '--batch-norm', '--cosine-decay'],
    'all four': ['--augment', '--batch-norm', '--dropout', '0.3', '--cosine-decay'],
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True, help='a CIFAR-10 folder cifar_cnn.py --data-dir accepts')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--limit', type=int, help='passed on to cifar_cnn.py (smoke runs)')
    p.add_argument('--variants', nargs='+', choices=VARIANTS, default=list(VARIANTS))
    p.add_argument('--figures', metavar='DIR', help="keep each variant's seed-0 history.png here")
    args = p.parse_args()

    results = {name: [] for name in args.variants}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.seeds):
            for name in args.variants:
                figures = os.path.join(scratch, f'{name}-{seed}')
                cmd = [sys.executable, PROGRAM, '--data-dir', args.data_dir, '--epochs', str(args.epochs),
                       '--seed', str(seed), '--figures-dir', figures, *VARIANTS[name]]
                if args.limit:
                    cmd += ['--limit', str(args.limit)]
                r = run(cmd)
                results[name].append(r)
                print(f'seed {seed} {name}: test accuracy {r["acc"]:.4f}, {r["epoch"]:.1f} s/epoch, '
                      f'wall {r["wall"]:.0f} s, {r["precision"]}', flush=True)
                if args.figures and seed == 0:
                    os.makedirs(args.figures, exist_ok=True)
                    kept = os.path.join(args.figures, f'history-{name.replace(" ", "-")}.png')
                    shutil.copy(os.path.join(figures, 'history.png'), kept)

    def epoch(rs):  # the least disturbed seed's mean epoch: a shared machine only ever slows a run down
        return min(r['epoch'] for r in rs)
    default_epoch = epoch(results.get('default', results[args.variants[0]]))
    precision = results[args.variants[0]][0]['precision']
    print(f'\n{args.epochs} epochs, seeds 0-{args.seeds - 1}, {machine()}, precision {precision}'
          f'{f", --limit {args.limit}" if args.limit else ""}\n')
    print('| variant | test accuracy: mean ± sd | min-max | s/epoch (fastest seed) | vs default | parameters '
          '| options |')
    print('|---|---|---|---|---|---|---|')
    for name, rs in results.items():
        accs, options = [r['acc'] for r in rs], ' '.join(VARIANTS[name]) or '(none)'
        sd = statistics.stdev(accs) if len(accs) > 1 else float('nan')
        print(f'| {name} | {statistics.mean(accs):.4f} ± {sd:.4f} | {min(accs):.4f}-{max(accs):.4f} | {epoch(rs):.1f} '
              f'| {epoch(rs) / default_epoch:.2f}x | {rs[0]["params"]:,} | `{options}` |')
    print('\nper seed: ' + '; '.join(f'{name} ' + ', '.join(f'{r["acc"]:.4f}' for r in rs)
                                    for name, rs in results.items()))


if __name__ == '__main__':
    main()
