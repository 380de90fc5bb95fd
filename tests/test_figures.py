"""What the README shows is what a full run draws: every committed figure records, in its PNG file, the run that
drew it (cifar_cnn_plumbing.figure_metadata), and the README quotes that run's numbers. To draw them again:
`python cifar_cnn.py --seed 0` (with `--data-dir DIR` offline), then update the README's numbers."""

import os
import re

import pytest
from conftest import ROOT
from PIL import Image

import cifar_cnn

FIGURES = os.path.join(ROOT, 'figures')


@pytest.fixture(scope='module')
def recorded():
    """{figure: what its PNG file records of the run that drew it}."""
    return {name: Image.open(os.path.join(FIGURES, name)).text for name in cifar_cnn.FIGURES}


def test_the_committed_figures_come_from_one_full_default_run(recorded):
    assert sorted(os.listdir(FIGURES)) == sorted(cifar_cnn.FIGURES)
    assert len({facts.get('Run') for facts in recorded.values()}) == 1  # all nine from one run
    facts = recorded['grad-cam.png']  # the last one drawn
    assert facts['Images'] == '50,000 training, 10,000 test' and facts['Epochs'] == '10'
    options = re.findall(r'--[\w-]+', facts['Command'])
    assert facts['Command'].startswith('python cifar_cnn.py')
    assert set(options) <= {'--seed', '--data-dir', '--save-model'}  # none that changes what is drawn


def test_the_readme_quotes_that_runs_numbers(recorded):
    facts = recorded['grad-cam.png']
    with open(os.path.join(ROOT, 'README.md')) as readme:
        text = ' '.join(readme.read().split())
    accuracy, per_class = float(facts['Test accuracy']), facts['Per-class accuracy'].split(', ')
    worst, best = per_class[0].split(), per_class[-1].split()
    for quoted in (f'{accuracy:.3f}', f"{facts['Mistakes']} mistakes", f'{worst[0]}s ({worst[1]})',
                   f'{best[0]}s ({best[1]})', f"{facts['Most confused'].split(' times')[0].split()[-1]} times"):
        assert quoted in text, f'README does not quote {quoted!r} of the run that drew the figures'
