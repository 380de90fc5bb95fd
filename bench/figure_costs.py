"""What each figure costs a run: the seconds each plotting step of cifar_cnn.py takes, the post's
and those beyond it, on the whole test set, with figures written as the command line writes them.

    python bench/figure_costs.py --data-dir /tmp/cifar10     # ~1 minute: 1 epoch, then each step 3 times

The model is trained for one epoch first (the figures' cost does not depend on how well it learned).
Each step runs 3 times; the table gives the fastest (a busy machine only slows runs down).
Prints Markdown ready for bench/README.md.
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

from common import ROOT, machine

sys.path.insert(0, ROOT)
import cifar_cnn  # after the path is set
import cifar_cnn_plumbing as plumbing


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True, help='a CIFAR-10 folder cifar_cnn.py --data-dir accepts')
    p.add_argument('--repeats', type=int, default=3)
    args = p.parse_args()

    plumbing.matplotlib.use('Agg')
    policy, _ = plumbing.choose_precision('auto')
    cifar_cnn.keras.mixed_precision.set_global_policy(policy)
    cifar_cnn.keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as figures, contextlib.redirect_stdout(io.StringIO()):
        cnn = cifar_cnn.CifarCNN(data_dir=args.data_dir, epochs=1, figures_dir=figures)
        cnn.preprocess_data()
        cnn.model = cnn.build_model()
        cnn.history = cnn.train_model()
        steps = {  # name: (the call, whether the post has it)
            'explore_data': (cnn.explore_data, True), 'preprocess_data': (cnn.preprocess_data, True),
            'evaluate_model': (cnn.evaluate_model, True), 'make_prediction': (cnn.make_prediction, True),
            'plot_confusion_matrix': (cnn.plot_confusion_matrix, False), 'plot_mistakes': (cnn.plot_mistakes, False),
            'plot_filters': (cnn.plot_filters, False), 'plot_feature_maps': (cnn.plot_feature_maps, False),
            'plot_grad_cam': (cnn.plot_grad_cam, False)}
        seconds = {}
        for name, (step, _) in steps.items():
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            seconds[name] = min(times)
        written = sorted(os.listdir(figures))

    print(f'{policy}; {machine()}; fastest of {args.repeats}; figures written: {", ".join(written)}\n')
    print('| step | in the post | seconds |\n|---|---|---|')
    for name, (_, in_post) in steps.items():
        print(f'| `{name}` | {"yes" if in_post else "no"} | {seconds[name]:.2f} |')
    learned = sum(seconds[n] for n in ('plot_mistakes', 'plot_filters', 'plot_feature_maps', 'plot_grad_cam'))
    print(f'\nWhat it learned (mistakes, filters, feature maps, Grad-CAM) together: {learned:.1f} s')


if __name__ == '__main__':
    main()
