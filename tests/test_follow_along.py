"""Following the post in Python or Jupyter: the post's calls, typed from any folder, show each figure
where there is a display, write nothing unless asked, print nothing a step returns, and answer a step
called too early with one line. Tested for real in a Jupyter kernel started outside the repository."""

import os

import pytest
from conftest import ROOT, files_under

import cifar_cnn

POST_CALLS = ['cnn = CifarCNN(data_dir={data_dir!r}, epochs=1, batch_size=8)',
              'cnn.explore_data()',
              'cnn.preprocess_data()',
              'cnn.model = cnn.build_model()',
              'cnn.history = cnn.train_model()',
              'cnn.evaluate_model()',
              'cnn.make_prediction()']
BEYOND_CALLS = ['cnn.plot_confusion_matrix()', 'cnn.plot_mistakes()', 'cnn.plot_filters()',
                'cnn.plot_feature_maps()', 'cnn.plot_grad_cam()']
RUN_FIRST = ['%run {root}/cifar_cnn.py --data-dir {data_dir} --limit 5 --epochs 1 --figures-dir {figures}',
             '%run {root}/cifar_cnn.py --epochs 0',  # one line, and no more: not IPython's SystemExit
             'import keras\nprint(keras.mixed_precision.global_policy().name)']  # Python computes as it did
AGAIN = ['from cifar_cnn import save_model, load_model\nsave_model(cnn.model, {model!r})',
         'model = load_model({model!r})',  # it says that it loaded it, and nothing else
         'cnn.history = cnn.train_model()']  # a cell run twice: training goes on, and says so
PLOTTING_CALLS = ['cnn.explore_data()', 'cnn.preprocess_data()', 'cnn.evaluate_model()', 'cnn.make_prediction()',
                  *BEYOND_CALLS]
TOO_EARLY = 'CifarCNN(data_dir={data_dir!r}).train_model()'  # a fresh one: no data prepared, no model


def test_a_figure_is_shown_where_there_is_a_display_and_written_only_when_asked(session_cifar_dir, tmp_path,
                                                                                  monkeypatch, capsys):
    """Started elsewhere, headless (the tests' backend is Agg) and with no figures folder, nothing is shown
    or written, and the first figure says once where figures can go; as in Jupyter, each is shown."""
    monkeypatch.chdir(tmp_path)
    shown = []
    monkeypatch.setattr(cifar_cnn.plt, 'show', lambda: shown.append(len(cifar_cnn.plt.get_fignums())))
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir)
    cnn.explore_data()
    cnn.preprocess_data()
    assert capsys.readouterr().out.count("No display here, so no figure is shown: CifarCNN(figures_dir='figures')") == 1
    monkeypatch.setattr(cifar_cnn.plt, 'get_backend', lambda: 'module://matplotlib_inline.backend_inline')
    cnn.explore_data()  # as in Jupyter
    assert shown == [1] and os.listdir(tmp_path) == [] and cifar_cnn.plt.get_fignums() == []
    cnn.figures_dir, cnn.show = os.path.join('runs', 'new'), False  # a folder that does not exist yet
    cnn.explore_data()
    assert shown == [1] and os.listdir(tmp_path / 'runs' / 'new') == ['25-train-images.png']
    assert 'No display here' not in capsys.readouterr().out


def notebook_cells(data_dir, figures):
    """`%run cifar_cnn.py` in the new kernel, right or wrong, and the precision Python then computes in; the
    post's calls, then those beyond it, one cell each, each figure inline after the %run; saving, loading and
    training again; last, a step called too early."""
    return [*(call.format(data_dir=data_dir, root=ROOT, figures=figures, model=str(figures / 'model.keras'))
              for call in [*RUN_FIRST, f'import sys\nsys.path.insert(0, {ROOT!r})\nfrom cifar_cnn import CifarCNN',
                           *POST_CALLS, *BEYOND_CALLS, *AGAIN, TOO_EARLY])]


@pytest.fixture(scope='module')
def notebook(background):
    """The cells, run in a real Jupyter kernel started outside the repository when the session started
    (conftest.start_notebook): (notebook, its folder, the repository's files before)."""
    nb, thread, folder, repository = background['notebook']
    thread.join(timeout=300)
    return nb, folder, repository


def test_in_jupyter_each_plotting_step_shows_its_figure_inline_and_nothing_else(notebook):
    """Also after `%run cifar_cnn.py` in the same kernel, run before anything was drawn."""
    nb, _, _ = notebook
    for cell in nb.cells[1:-1]:
        call = cell.source.splitlines()[-1]
        shown = any('image/png' in out.get('data', {}) for out in cell.outputs)
        assert shown == (call in PLOTTING_CALLS), call
        assert not [out for out in cell.outputs if out.output_type in ('execute_result', 'error')], call
    stderr = ''.join(out.text for cell in nb.cells for out in cell.outputs if out.get('name') == 'stderr')
    assert 'Traceback' not in stderr and 'Warning' not in stderr


def text_of(cell):
    return ''.join(out.get('text', '') for out in cell.outputs)


def test_in_jupyter_run_leaves_the_kernel_as_it_was_and_a_mistake_there_is_one_line(notebook):
    nb, _, _ = notebook
    run, mistake, precision = (text_of(cell) for cell in nb.cells[1:1 + len(RUN_FIRST)])
    assert 'Precision: ' in run and 'Wrote ' in run
    assert mistake.count('\n') == 1 and '--epochs' in mistake and 'SystemExit' not in mistake
    assert precision.strip() == 'float32'  # not the run's mixed precision


def test_in_jupyter_saving_loading_and_training_again_say_what_they_do(notebook):
    nb, _, _ = notebook
    saved, loaded, again = (text_of(cell) for cell in nb.cells[-1 - len(AGAIN):-1])
    assert saved.startswith('Saved the trained model to') and loaded.startswith('Loaded the model from')
    assert len(loaded.splitlines()) == 1  # no model summary
    assert 'trained 1 epoch already' in again and 'Epoch 2/2' in again


def test_in_jupyter_a_step_called_too_early_is_one_line(notebook):
    nb, _, _ = notebook
    errors = [out for out in nb.cells[-1].outputs if out.output_type == 'error']
    assert len(errors) == 1 and len(errors[0].traceback) == 1  # one line, no traceback
    line, = errors[0].traceback
    assert line.startswith('CifarError: train_model()') and 'cnn.preprocess_data()' in line


def typed_at_the_prompt(data_dir):
    """What a learner types at Python's prompt: a step too early, an argument out of range, then an error that
    is not the program's."""
    return (f'import sys\nsys.path.insert(0, {ROOT!r})\nfrom cifar_cnn import CifarCNN\n'
            f'cnn = CifarCNN(data_dir={data_dir!r})\ncnn.train_model()\nCifarCNN(limit=-5)\n1 / 0\n')


def test_at_pythons_prompt_a_mistake_is_one_line_too(background):
    _, err = background['prompt'].communicate(timeout=300)
    mistakes = [line.split('>>> ')[-1] for line in err.splitlines() if 'CifarError' in line]
    assert len(mistakes) == 2 and mistakes[0].startswith('CifarError: train_model()') and 'cnn.preprocess_data()' in \
        mistakes[0] and mistakes[1].startswith('CifarError: limit=-5') and '50,000' in mistakes[1]
    assert err.count('Traceback') == 1 and 'ZeroDivisionError' in err  # not the program's: as Python shows it


def test_in_jupyter_nothing_is_written(notebook):
    _, folder, repository = notebook
    assert os.listdir(folder) == [] and files_under(ROOT) == repository
