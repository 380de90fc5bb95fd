"""The post's steps, one test per method of `CifarCNN`, in the post's order, on tiny synthetic data; then
a learner's mistakes with them: arguments out of range and steps called too early."""

import contextlib
import fractions
import io
import itertools
import os
import re
import warnings

import numpy as np
import pytest
from conftest import refused

import cifar_cnn
import cifar_cnn_plumbing as plumbing
import cifar_cnn_readers as readers
from cifar_cnn import Variations
from cifar_cnn_plumbing import CifarError


def test_init_loads_cifar10_and_keeps_the_posts_names(cifar_dir):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, limit=30)
    assert cnn.classes == ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
    (x_train, y_train), (x_test, y_test) = readers.load_cifar10(cifar_dir)
    np.testing.assert_array_equal(cnn.train_imgs, x_train[:30])  # limit: the first N of each
    np.testing.assert_array_equal(cnn.train_labels, y_train[:30])
    np.testing.assert_array_equal(cnn.test_imgs, x_test[:24])
    np.testing.assert_array_equal(cnn.test_labels, y_test[:24])
    assert (cnn.epochs, cnn.model, cnn.history) == (10, None, None)  # the post uses them, never sets them
    assert (cnn.figures_dir, cnn.show) == (None, None)  # figures shown where there is a display, not written


def test_explore_data_prints_and_draws(cifar_dir, tmp_path, capsys):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path))
    assert cnn.explore_data() is None  # nothing for Jupyter to print under the figure
    out = capsys.readouterr().out
    for line in ['40 training examples ...', 'Training image shape: (32, 32, 3)',
                 "Training labels type: <class 'numpy.ndarray'>", '24 test examples ...',
                 'Test image shape: (32, 32, 3)', "Test labels type: <class 'numpy.ndarray'>"]:
        assert line in out
    # The labels as the post prints its 50,000: the first three, '...', the last three, at any size
    for name, labels in (('Training', cnn.train_labels), ('Test', cnn.test_labels)):
        first, last = ('\n '.join(f'[{v}]' for v in labels[s, 0]) for s in (slice(3), slice(-3, None)))
        assert f'{name} labels: [{first}\n ...\n {last}]\n' in out
    assert (tmp_path / '25-train-images.png').stat().st_size > 10_000


def test_preprocess_data_scales_the_images_and_each_batch_to_float32(cifar_dir, tmp_path):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), batch_size=8)
    loaded = cnn.train_imgs.copy(), cnn.test_imgs.copy()
    cnn.preprocess_data()
    for scaled, pixels in zip((cnn.train_imgs, cnn.test_imgs), loaded):  # the post's / 255.0, in float32
        assert scaled.dtype == np.float32 and np.array_equal(scaled, pixels / np.float32(255))
    assert cnn.validation_ds is cnn.test_ds  # the post validates on the test set
    x, y = next(iter(cnn.test_ds))
    assert x.dtype.name == 'float32' and y.dtype.name == 'uint8'
    np.testing.assert_array_equal(x.numpy(), cnn.test_imgs[:len(x)])  # unshuffled: the same numbers
    batches = [(bx.numpy(), by.numpy()) for bx, by in cnn.train_ds]
    assert [len(bx) for bx, _ in batches] == [8] * 5
    seen = np.concatenate([bx for bx, _ in batches])
    # every training image exactly once per epoch, with its own label
    order = np.argsort(seen.reshape(40, -1)[:, :8].sum(axis=1))
    expected = np.argsort(cnn.train_imgs.reshape(40, -1)[:, :8].sum(axis=1))
    np.testing.assert_array_equal(seen[order], cnn.train_imgs[expected])
    np.testing.assert_array_equal(np.concatenate([by for _, by in batches])[order], cnn.train_labels[expected])
    assert (tmp_path / 'normalized.png').stat().st_size > 5_000


def divide_as_the_post_does(cnn):
    cnn.train_imgs = cnn.train_imgs / 255.0


@pytest.mark.parametrize('typed_first', [divide_as_the_post_does, cifar_cnn.CifarCNN.preprocess_data])
def test_images_already_scaled_are_not_scaled_twice(cifar_dir, typed_first):
    """The post's own division typed before preprocess_data(), or preprocess_data() run twice: [0, 1] stays."""
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, show=False)
    expected = cnn.train_imgs / np.float32(255)
    typed_first(cnn)
    cnn.preprocess_data()
    assert cnn.train_imgs.dtype == np.float32 and np.allclose(cnn.train_imgs, expected)
    np.testing.assert_allclose(next(iter(cnn.test_ds))[0].numpy(), cnn.test_imgs, atol=1e-7)


def test_build_model_is_the_posts_network(cifar_dir, tmp_path, capsys):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = cnn.build_model()
    assert [str(w.message) for w in caught] == []  # e.g. no input_shape= warning from Keras 3
    assert 'Total params: 122,570' in capsys.readouterr().out
    assert model.count_params() == 122_570
    assert [type(layer).__name__ for layer in model.layers] == [
        'Conv2D', 'MaxPooling2D', 'Conv2D', 'MaxPooling2D', 'Conv2D', 'Flatten', 'Dense', 'Dense']
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert isinstance(model.optimizer, cifar_cnn.keras.optimizers.Adam)
    assert model.loss.from_logits is True


def test_train_model_returns_the_history_and_prints_epoch_times(trained):
    history = trained.history  # what train_model() returned, 2 epochs
    assert history.history.keys() == {'accuracy', 'loss', 'val_accuracy', 'val_loss'}
    assert history.epoch == [0, 1] and len(history.history['val_accuracy']) == 2
    times = re.search(r'^Epoch times \(s\): (\d+\.\d), (\d+\.\d); mean (\d+\.\d) s/epoch$', trained.training_output,
                      re.MULTILINE)
    assert times and float(times.group(3)) > 0


def test_evaluate_model_prints_and_plots_the_whole_history(trained, capsys, monkeypatch):
    cifar_cnn.plt.figure()
    cifar_cnn.plt.xticks(range(10))  # a figure left open, with fixed ticks: evaluate_model draws a new one
    limits = []
    original_ylim = cifar_cnn.plt.ylim
    monkeypatch.setattr(cifar_cnn.plt, 'ylim', lambda lim: limits.append(lim) or original_ylim(lim))
    assert trained.evaluate_model() is None
    loss, accuracy = trained.model.evaluate(trained.test_ds, verbose=0)
    out = capsys.readouterr().out
    assert f'Loss: {loss}' in out and f'Accuracy: {accuracy}' in out and 0.0 <= accuracy <= 1.0
    assert os.path.getsize(os.path.join(trained.figures_dir, 'history.png')) > 5_000
    lowest = min(trained.history.history['accuracy'] + trained.history.history['val_accuracy'])
    assert lowest < 0.5 and limits == [[np.floor(lowest * 10) / 10, 1]]  # the post's [0.5, 1] would hide it


def test_the_posts_own_lines_give_the_classes_numbers(trained):
    """What the post types after preprocess_data() works on the class's data: the post's evaluate and its
    prob_model give what evaluate_model() and make_prediction() give."""
    keras = cifar_cnn.keras
    loss, accuracy = trained.model.evaluate(trained.test_imgs, trained.test_labels, verbose=0)  # the post's line
    ours = trained.model.evaluate(trained.test_ds, verbose=0)
    assert accuracy == ours[1] and loss == pytest.approx(ours[0], rel=1e-4)
    prob_model = keras.Sequential([trained.model, keras.layers.Softmax()])  # the post's make_prediction
    np.testing.assert_allclose(prob_model.predict(trained.test_imgs, verbose=0), trained.predictions, atol=1e-5)


@pytest.fixture
def fresh(session_cifar_dir):
    """A CifarCNN of the tiny data set, its data prepared and a model built, not trained; nothing shown."""
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, epochs=1, batch_size=8, show=False)
    cnn.preprocess_data()
    with contextlib.redirect_stdout(io.StringIO()):
        cnn.model = cnn.build_model()
    return cnn


def test_training_again_goes_on_says_so_and_the_curve_shows_every_epoch(fresh, capsys, monkeypatch):
    fresh.history = fresh.train_model()
    assert 'already' not in capsys.readouterr().out
    fresh.epochs = 2
    fresh.train_model()  # and cnn.history not kept: evaluate_model() draws the model's whole training all the same
    out = capsys.readouterr().out
    assert 'trained 1 epoch already' in out and 'cnn.model = cnn.build_model()' in out and 'Epoch 3/3' in out
    drawn = []
    monkeypatch.setattr(cifar_cnn.plt, 'show', lambda: drawn.append([len(line.get_xdata()) for line in
                                                                     cifar_cnn.plt.gca().get_lines()]))
    fresh.show = True
    fresh.evaluate_model()
    assert drawn == [[3, 3]] and fresh.history.epoch == [0, 1, 2] and len(fresh.history.history['loss']) == 3


def test_evaluate_model_before_any_training_says_why_there_is_no_curve(fresh, capsys):
    fresh.evaluate_model()
    out = capsys.readouterr().out
    assert 'Accuracy: ' in out and 'No accuracy curve' in out and 'cnn.history = cnn.train_model()' in out


@pytest.mark.parametrize(('name', 'value', 'names'), [
    ('epochs', 0, ['epochs=0', '10,000']), ('epochs', '2', ["epochs='2'", 'whole number']),
    ('epochs', 2.5, ['epochs=2.5', 'whole number']), ('batch_size', 0, ['batch_size=0', '4,096']),
    ('variations', 'augment', ['variations=', 'Variations(...)']),
    ('variations.dropout', 2, ['dropout=2', 'not including, 1']),
    ('variations', Variations(batch_norm=True), ['build_model()', 'again']),
    ('variations', Variations(cosine_decay=True), ['build_model()', 'again'])])
def test_an_attribute_changed_after_the_constructor_is_checked_where_it_is_used(fresh, name, value, names):
    """cnn.epochs = 0 typed after the constructor: the same line as CifarCNN(epochs=0) when train_model() uses it.
    Variations that build_model() made the network with, changed since: build it again."""
    owner, attribute = (fresh.variations, 'dropout') if name == 'variations.dropout' else (fresh, name)
    setattr(owner, attribute, value)
    with refused('train_model()' if 'build_model' in names else names[0], *names):
        fresh.train_model()


def test_a_batch_size_or_augmentation_changed_after_preprocess_data_is_applied(fresh, capsys):
    fresh.batch_size, fresh.variations = 40, Variations(augment=True)  # the tiny set: 40 training images
    fresh.train_model()
    assert '1/1 - ' in capsys.readouterr().out  # one step of 40, not five of 8
    assert len(next(iter(fresh.train_ds))[0]) == 40


def test_arrays_put_in_place_of_the_classes_are_what_the_steps_then_use(fresh, capsys):
    """The post's own line typed again after preprocess_data(), or a subset: the pipelines are remade from the
    arrays as they are now, so that evaluate_model() and the post's evaluate agree."""
    fresh.test_imgs, fresh.test_labels = fresh.test_imgs[:10], fresh.test_labels[:10]
    fresh.evaluate_model()
    assert '1/1 - ' in capsys.readouterr().out  # one batch of 10, not of 24
    fresh.make_prediction()
    assert fresh.predictions.shape == (10, 10)
    _, accuracy = fresh.model.evaluate(fresh.test_imgs, fresh.test_labels, verbose=0)
    assert accuracy == fresh.model.evaluate(fresh.test_ds, verbose=0)[1]


def test_variations_set_to_none_after_the_constructor_are_none_of_them_as_in_it(fresh, capsys):
    fresh.variations = None
    fresh.model = fresh.build_model()
    fresh.train_model()
    assert 'Epoch times' in capsys.readouterr().out and fresh.variations == Variations()


@pytest.mark.parametrize('labels', ['train_labels', 'test_labels'])
def test_labels_put_in_place_for_another_count_of_images_are_one_line(fresh, labels):
    setattr(fresh, labels, getattr(fresh, labels)[:10])
    for step in (fresh.train_model, fresh.evaluate_model):
        with refused(f'cnn.{labels}', f'cnn.{labels.replace("labels", "imgs")}', 'labels of those very images'):
            step()


def test_test_labels_shortened_after_the_predictions_are_one_line(trained, monkeypatch):
    monkeypatch.setattr(trained, 'test_labels', trained.test_labels[:10])
    for step in (trained.plot_confusion_matrix, trained.plot_mistakes):
        with refused('cnn.test_labels', 'cnn.test_imgs', 'labels of those very images'):
            step()


def test_pixels_put_in_place_as_floats_from_0_to_255_are_scaled_as_everywhere(fresh, capsys):
    """cnn.test_imgs = raw.astype(np.float32), not divided: the steps scale them by scaled()'s one rule, as
    grad_cam() and the figures do, and evaluate_model() gives the numbers of the images as loaded."""
    def loss():
        fresh.evaluate_model()
        return float(next(line for line in capsys.readouterr().out.splitlines() if line.startswith('Loss:'))[6:])
    as_loaded = loss()
    fresh.test_imgs = (fresh.test_imgs * 255).round().astype(np.float32)
    assert loss() == pytest.approx(as_loaded, rel=1e-5)


def test_plot_img_refuses_what_is_not_probabilities(trained):
    logits = trained.model.predict(trained.test_imgs[:1], verbose=0)[0] * 100  # the model's raw outputs
    for prediction in (logits, np.full(10, 0.5)):
        with refused('prediction', 'probabilities', 'Softmax'):
            trained.plot_img(prediction, 1, trained.test_imgs[0])


def test_python_and_the_command_line_each_name_what_was_typed(tmp_path, capsys):
    with refused(f"data_dir='{tmp_path / 'nope'}'", 'no such folder'):
        cifar_cnn.CifarCNN(data_dir=str(tmp_path / 'nope'))
    assert cifar_cnn.main(['--data-dir', str(tmp_path / 'nope'), '--figures-dir', str(tmp_path / 'f')]) == 1
    assert f"--data-dir {tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    (tmp_path / 'bad.keras').write_bytes(b'not a zip')
    with refused(f"load_model('{tmp_path / 'bad.keras'}')", 'damaged'):
        cifar_cnn.load_model(str(tmp_path / 'bad.keras'))
    assert capsys.readouterr().out == ''  # nothing printed before the refusal


def test_labels_fit_the_figure(trained):
    """predictions.png's longest labels ('automobile 100% (automobile)') stay within the figure."""
    fig = cifar_cnn.plt.figure(figsize=(12, 10))
    for i in range(15):
        cifar_cnn.plt.subplot(5, 6, 2 * i + 1)
        trained.plot_img(np.eye(10)[1], 1, trained.test_imgs[0])
    cifar_cnn.plt.tight_layout()
    fig.canvas.draw()
    width = fig.bbox.width
    extents = [ax.xaxis.label.get_window_extent() for ax in fig.axes]
    assert all(0 <= extent.x0 and extent.x1 <= width for extent in extents)
    assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(extents) if a.y0 == b.y0)  # nor run into the next
    cifar_cnn.plt.close(fig)


def test_plot_img_colours_and_label(trained):
    fig = cifar_cnn.plt.figure()
    prediction = np.array([0.05, 0.8, 0.15] + [0.0] * 7)
    trained.plot_img(prediction, 1, trained.test_imgs[0])
    label = fig.axes[0].xaxis.label
    assert label.get_text() == 'automobile 80% (automobile)' and label.get_color() == 'blue'
    cifar_cnn.plt.clf()
    trained.plot_img(prediction, 2, trained.test_imgs[0])
    label = fig.gca().xaxis.label
    assert label.get_text() == 'automobile 80% (bird)' and label.get_color() == 'red'
    cifar_cnn.plt.close(fig)


def test_plot_predictions_colours_bars(trained):
    fig = cifar_cnn.plt.figure()
    trained.plot_predictions(np.array([0.05, 0.8, 0.15] + [0.0] * 7), 2)
    colours = [bar.get_facecolor()[:3] for bar in fig.gca().patches]
    assert colours[1] == (1.0, 0.0, 0.0)  # predicted: red
    assert colours[2] == (0.0, 0.0, 1.0)  # actual: blue
    assert colours[0] == colours[3] != colours[1]  # the rest grey
    cifar_cnn.plt.close(fig)


def test_make_prediction_keeps_probabilities_and_draws_15(trained):
    assert trained.make_prediction() is None
    predictions = trained.predictions
    assert predictions.shape == (24, 10) and predictions.dtype == np.float32
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    logits = trained.model.predict(trained.test_imgs[:3], verbose=0).astype(np.float32)
    np.testing.assert_array_equal(predictions[:3].argmax(axis=1), logits.argmax(axis=1))
    assert os.path.getsize(os.path.join(trained.figures_dir, 'predictions.png')) > 10_000


# ─── A learner's mistakes: one line that says what to do next ────────────────────────────────────

BAD_ARGUMENTS = [  # (name, value, what the line must name besides `name=value`: what the argument takes)
    ('epochs', 0, '1', '10,000'), ('epochs', 10_001, '1', '10,000'), ('epochs', 2.5, 'whole'),
    ('epochs', True, 'whole'),
    ('epochs', None, 'given'), ('batch_size', 0, '1', '4,096'), ('batch_size', 4097, '4,096'), ('limit', -5, '50,000'),
    ('limit', 0, '1', '50,000'), ('limit', 50_001, '50,000'), ('data_dir', '', 'name', '4,096'),
    ('figures_dir', 'a\0b', 'name', 'NUL'), ('figures_dir', 5, 'name'), ('show', 'yes', 'True', 'False'),
    ('variations', 'augment', 'Variations(...)'), ('dropout', 1.5, '0', '1'), ('dropout', float('nan'), '0', '1'),
    ('validation_split', -0.5, '0', '1'), ('validation_split', 1.0, 'not including, 1'),
    ('augment', 'yes', 'True', 'False'), ('tensorboard', '', 'name')]
VARIATIONS = {field.name for field in cifar_cnn.dataclasses.fields(Variations)}


@pytest.mark.parametrize(('name', 'value', 'takes'), [(name, value, takes) for name, value, *takes in BAD_ARGUMENTS])
def test_an_argument_out_of_range_is_one_line_before_anything_loads(name, value, takes):
    """Checked as the command line checks its options, before the data set is looked for (here: none)."""
    with refused(f'{name}={value!r}', *takes):
        if name in VARIATIONS:
            Variations(**{name: value})
        else:
            cifar_cnn.CifarCNN(**{'data_dir': '/nonexistent', name: value})


OPTIONS_WITH_VALUES = {'epochs', 'batch_size', 'limit', 'data_dir', 'figures_dir', 'dropout', 'validation_split',
                       'tensorboard'}


@pytest.mark.parametrize(('name', 'value', 'takes'), [
    (name, value, takes) for name, value, *takes in BAD_ARGUMENTS
    if name in OPTIONS_WITH_VALUES and value is not None and (isinstance(value, str) or name not in plumbing.OPTIONAL)])
def test_the_command_line_follows_the_same_rules(name, value, takes, capsys):
    with pytest.raises(SystemExit) as stopped:
        cifar_cnn.parse_args([f'--{name.replace("_", "-")}', str(value)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and f'--{name.replace("_", "-")}' in err and all(part in err for part in takes)


STEPS_FIRST = {  # each step, and what an earlier step must have made (as plumbing.require checks it)
    'train_model': ['test_ds', 'model'], 'evaluate_model': ['test_ds', 'model'],
    'make_prediction': ['test_ds', 'model'], 'confusion_matrix': ['predictions'],
    'plot_confusion_matrix': ['predictions'], 'mistakes': ['predictions'], 'plot_mistakes': ['predictions'],
    'filters': ['model'], 'plot_filters': ['model'], 'feature_maps': ['model'], 'plot_feature_maps': ['model'],
    'plot_grad_cam': ['model', 'predictions']}
MADE_BY = {'test_ds': 'cnn.preprocess_data()', 'model': 'cnn.model = cnn.build_model()',
           'predictions': 'cnn.make_prediction()'}
NOT_WHAT_IT_MAKES = {  # for each thing a step makes, one of its type that the step does not make, and what is said
    'model': (cifar_cnn.keras.Sequential([cifar_cnn.keras.Input((32, 32, 3)), cifar_cnn.keras.layers.Flatten(),
                                          cifar_cnn.keras.layers.Dense(10)]), ['compiled', 'model.compile(']),
    'predictions': (np.full((5, 10), 0.1, np.float32), ['cnn.make_prediction()', 'cnn.predictions', '24 test images'])}


@pytest.mark.parametrize(('step', 'missing', 'instead'), [
    (step, made, instead) for step, needs in STEPS_FIRST.items() for made in needs
    for instead in ('none', 'the method', *(['another'] if made in NOT_WHAT_IT_MAKES else []))])
def test_a_step_called_before_the_one_it_needs_says_which(trained, monkeypatch, step, missing, instead):
    """Every step with each earlier step missing (or its result the method itself, the brackets forgotten:
    cnn.model = cnn.build_model): one line naming the step called and the one to run first, in the post's words."""
    made, said = NOT_WHAT_IT_MAKES.get(missing, (None, []))
    monkeypatch.setattr(trained, missing, {'none': None, 'the method': trained.build_model, 'another': made}[instead])
    why = {'none': [MADE_BY[missing]], 'the method': [MADE_BY[missing], 'brackets'], 'another': said}[instead]
    with refused(f'{step}()', *why):
        getattr(trained, step)()


def test_evaluate_model_with_the_method_in_cnn_history_says_to_add_the_brackets(trained, monkeypatch):
    monkeypatch.setattr(trained, 'history', trained.train_model)  # cnn.history = cnn.train_model
    with refused('evaluate_model()', 'brackets'):
        trained.evaluate_model()


def test_a_network_of_your_own_trains_and_only_the_steps_that_look_at_convolutions_need_them(cifar_dir):
    """A reader's own compiled network (no Conv2D at all) trains, evaluates and predicts; filters, feature maps
    and Grad-CAM say that they look at convolutions."""
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, epochs=1, batch_size=8, show=False)
    cnn.preprocess_data()
    keras = cifar_cnn.keras
    cnn.model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    cnn.model.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])
    cnn.history = cnn.train_model()
    cnn.evaluate_model()
    cnn.make_prediction()
    cnn.plot_confusion_matrix()
    for step in ('plot_filters', 'plot_feature_maps', 'plot_grad_cam'):
        with refused(f'{step}()', 'Conv2D'):
            getattr(cnn, step)()


@pytest.mark.parametrize(('call', 'names'), [
    (lambda cnn: cnn.plot_img([0.5, 0.5], 1, cnn.test_imgs[0]), ['prediction', '10 probabilities']),
    (lambda cnn: cnn.plot_img(cnn.predictions[0], 10, cnn.test_imgs[0]), ['actual_label=10', '0', '9']),
    (lambda cnn: cnn.plot_img(cnn.predictions[0], 1, np.zeros(5)), ['img', '(height, width, 3)', '(5,)']),
    (lambda cnn: cnn.plot_predictions(cnn.predictions[0], -1), ['actual_label=-1', '0', '9']),
    (lambda cnn: cnn.plot_predictions('cat', 3), ['prediction', 'numbers', 'cat']),
    (lambda cnn: cnn.plot_feature_maps(index=-1), ['index=-1', '0', '23']),
    (lambda cnn: cnn.feature_maps(24), ['index=24', '0', '23']),
    (lambda cnn: cnn.plot_feature_maps(channels=0), ['channels=0', '1', '32']),
    (lambda cnn: cnn.plot_grad_cam(count=0), ['count=0', '1', '50']),
    (lambda cnn: cnn.grad_cam(cnn.test_imgs[0]), ['imgs', '(N, 32, 32, 3)', '(32, 32, 3)']),
    (lambda cnn: cnn.grad_cam([[1], 2]), ['grad_cam(imgs)', 'numbers', 'list']),
    (lambda cnn: cnn.plot_img([[1], 2], 1, cnn.test_imgs[0]), ['prediction', 'numbers', 'list']),
    (lambda cnn: cnn.plot_img(cnn.predictions[0], 1, np.array([['a']])), ['img', 'numbers']),
    (lambda cnn: cnn.plot_img(cnn.predictions[0], 1, np.zeros((0, 0, 3))), ['img', '(0, 0, 3)'])])
def test_a_plotting_steps_own_argument_out_of_range_is_one_line(trained, call, names):
    with refused(*names):
        call(trained)


def test_numbers_from_numpy_tensorflow_or_fractions_are_taken(trained):
    heat = trained.grad_cam(cifar_cnn.tf.constant(trained.test_imgs[:2]))  # a uint8 tensor, as numpy's
    np.testing.assert_allclose(heat, trained.grad_cam(trained.test_imgs[:2]), atol=1e-6)
    assert Variations(dropout=fractions.Fraction(1, 4)).dropout == 0.25  # a float, which Keras can save


def test_a_mistake_is_one_line_in_jupyter_too():
    """IPython shows an exception's _render_traceback_() instead of a traceback: its one line, printable."""
    assert CifarError('step\x1b[31m first')._render_traceback_() == ['CifarError: step\\x1b[31m first']
