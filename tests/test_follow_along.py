"""Following the post in Python or Jupyter: the post's calls, typed from any folder, show each figure
where there is a display and write nothing unless asked. Tested for real: a plain Python process and a
Jupyter kernel, each started in a folder outside the repository."""

import os
import subprocess
import sys

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

import cifar_cnn

POST_CALLS = ['cnn = CifarCNN(data_dir={data_dir!r}, epochs=2, batch_size=8)',
              'cnn.explore_data()',
              'cnn.preprocess_data()',
              'cnn.model = cnn.build_model()',
              'cnn.history = cnn.train_model()',
              'cnn.evaluate_model()',
              'predictions = cnn.make_prediction()']
BEYOND_CALLS = ['cnn.confusion_matrix(predictions)', 'cnn.plot_mistakes(predictions)', 'cnn.plot_filters()',
                'cnn.plot_feature_maps()', 'cnn.plot_grad_cam()']
PLOTTING_CALLS = ['cnn.explore_data()', 'cnn.preprocess_data()', 'cnn.evaluate_model()',
                  'predictions = cnn.make_prediction()', *BEYOND_CALLS]


def files_under(folder):
    """Every file under `folder` with its size and modification time, leaving out caches and .git."""
    skip = {'.git', '.venv', '__pycache__', '.pytest_cache', '.ruff_cache', '.hypothesis'}
    found = {}
    for parent, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if f not in skip]
        for name in files:
            info = os.stat(os.path.join(parent, name))
            found[os.path.join(parent, name)] = (info.st_size, info.st_mtime_ns)
    return found


def test_a_figure_is_shown_where_there_is_a_display_and_written_only_when_asked(session_cifar_dir, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    shown = []
    monkeypatch.setattr(cifar_cnn.plt, 'show', lambda: shown.append(len(cifar_cnn.plt.get_fignums())))
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir)
    cnn.explore_data()  # the tests' backend is Agg: headless, so nothing is shown
    monkeypatch.setattr(cifar_cnn.plt, 'get_backend', lambda: 'module://matplotlib_inline.backend_inline')
    cnn.explore_data()  # as in Jupyter
    assert shown == [1] and os.listdir(tmp_path) == [] and cifar_cnn.plt.get_fignums() == []
    cnn.figures_dir, cnn.show = os.path.join('runs', 'new'), False  # a folder that does not exist yet
    cnn.explore_data()
    assert shown == [1] and os.listdir(tmp_path / 'runs' / 'new') == ['25-train-images.png']


def test_the_posts_calls_in_a_plain_python_process_elsewhere(session_cifar_dir, tmp_path):
    """No display, no figures folder: nothing blocks, nothing fails or warns, no file is written."""
    script = tmp_path / 'follow.py'
    script.write_text('\n'.join([f'import sys; sys.path.insert(0, {ROOT!r})', 'from cifar_cnn import CifarCNN',
                                 *POST_CALLS]).format(data_dir=session_cifar_dir) + '\n')
    repository = files_under(ROOT)
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY', 'MPLBACKEND')}
    result = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'Traceback' not in result.stderr and 'Warning' not in result.stderr
    assert 'Accuracy: ' in result.stdout and 'Wrote ' not in result.stdout
    assert os.listdir(tmp_path) == ['follow.py']
    assert files_under(ROOT) == repository


@pytest.fixture(scope='module')
def notebook(session_cifar_dir, tmp_path_factory):
    """The post's calls, then those beyond it, one cell each, run in a real Jupyter kernel started
    outside the repository."""
    folder = tmp_path_factory.mktemp('notebook')
    cells = [f'import sys\nsys.path.insert(0, {ROOT!r})\nfrom cifar_cnn import CifarCNN',
             *(call.format(data_dir=session_cifar_dir) for call in POST_CALLS), *BEYOND_CALLS]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    repository = files_under(ROOT)
    NotebookClient(nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': str(folder)}}).execute()
    return nb, folder, repository


def test_in_jupyter_each_plotting_step_shows_its_figure_inline(notebook):
    nb, _, _ = notebook
    outputs = {cell.source.splitlines()[-1]: cell.outputs for cell in nb.cells}
    for call in PLOTTING_CALLS:
        assert any('image/png' in out.get('data', {}) for out in outputs[call]), call
    for call, cell_outputs in outputs.items():
        if call not in PLOTTING_CALLS:
            assert not any('image/png' in out.get('data', {}) for out in cell_outputs), call
    assert [out for cell in nb.cells for out in cell.outputs if out.output_type == 'error'] == []
    stderr = ''.join(out.text for cell in nb.cells for out in cell.outputs if out.get('name') == 'stderr')
    assert 'Traceback' not in stderr and 'Warning' not in stderr


def test_in_jupyter_nothing_is_written(notebook):
    _, folder, repository = notebook
    assert os.listdir(folder) == [] and files_under(ROOT) == repository
