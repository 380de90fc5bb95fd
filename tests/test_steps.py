"""The post's steps, one method at a time, on the tiny synthetic data set."""

import os
import re
import warnings

import numpy as np
import pytest

import cifar_cnn


def test_explore_data_prints_and_draws(cifar_dir, tmp_path, capsys):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path))
    cnn.explore_data()
    out = capsys.readouterr().out
    for line in ['40 training examples ...', 'Training image shape: (32, 32, 3)', 'Training labels: [[',
                 "Training labels type: <class 'numpy.ndarray'>", '24 test examples ...',
                 'Test image shape: (32, 32, 3)', 'Test labels: [[', "Test labels type: <class 'numpy.ndarray'>"]:
        assert line in out
    assert (tmp_path / '25-train-images.png').stat().st_size > 10_000


def test_preprocess_scales_per_batch_to_float32(cifar_dir, tmp_path):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), batch_size=8)
    cnn.preprocess_data()
    assert cnn.train_imgs.dtype == np.uint8  # no float64 copy of the data set
    x, y = next(iter(cnn.test_ds))
    assert x.dtype.name == 'float32' and y.dtype.name == 'uint8'
    np.testing.assert_allclose(x.numpy(), cnn.test_imgs[:len(x)] / 255.0, atol=1e-6)  # unshuffled, [0, 1]
    batches = [(bx.numpy(), by.numpy()) for bx, by in cnn.train_ds]
    assert [len(bx) for bx, _ in batches] == [8] * 5
    seen = np.concatenate([bx for bx, _ in batches])
    assert seen.min() >= 0.0 and seen.max() <= 1.0
    # every training image exactly once per epoch, with its own label
    order = np.argsort(seen.reshape(40, -1)[:, :8].sum(axis=1))
    expected = np.argsort((cnn.train_imgs.reshape(40, -1)[:, :8] / 255.0).sum(axis=1))
    np.testing.assert_allclose(seen[order], cnn.train_imgs[expected] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([by for _, by in batches])[order], cnn.train_labels[expected])
    assert (tmp_path / 'normalized.png').exists()


def test_build_model_is_the_posts_network(cifar_dir, tmp_path, capsys):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = cnn.build_model()
    assert [str(w.message) for w in caught] == []
    out = capsys.readouterr().out
    assert 'Total params: 122,570' in out
    assert model.count_params() == 122_570
    assert [type(layer).__name__ for layer in model.layers] == [
        'Conv2D', 'MaxPooling2D', 'Conv2D', 'MaxPooling2D', 'Conv2D', 'Flatten', 'Dense', 'Dense']
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert isinstance(model.optimizer, cifar_cnn.keras.optimizers.Adam)
    assert model.loss.from_logits is True


def test_train_model_keeps_history_and_epoch_times(trained, capsys):
    assert trained.history.history.keys() >= {'accuracy', 'loss', 'val_accuracy', 'val_loss'}
    assert len(trained.history.history['accuracy']) == 2
    assert len(trained.epoch_times) == 2 and all(t > 0 for t in trained.epoch_times)


def test_evaluate_model_prints_and_plots(trained, capsys):
    loss, acc = trained.evaluate_model()
    out = capsys.readouterr().out
    assert f'Loss: {loss}' in out and f'Accuracy: {acc}' in out
    assert 0.0 <= acc <= 1.0
    assert os.path.getsize(os.path.join(trained.figures_dir, 'history.png')) > 5_000


def test_history_plot_shows_accuracy_below_one_half(trained, monkeypatch):
    limits = []
    monkeypatch.setattr(cifar_cnn.plt, 'ylim', lambda lim: limits.append(lim))
    trained.evaluate_model()
    lowest = min(trained.history.history['accuracy'] + trained.history.history['val_accuracy'])
    assert limits and limits[0][0] <= lowest and limits[0][1] == 1


def test_make_prediction_returns_probabilities(trained):
    predictions = trained.make_prediction()
    assert predictions.shape == (24, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-4)
    assert os.path.getsize(os.path.join(trained.figures_dir, 'predictions.png')) > 10_000


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
    cifar_cnn.plt.close(fig)


def test_confusion_matrix_counts_every_test_image(trained, capsys):
    predictions = trained.make_prediction()
    matrix = trained.confusion_matrix(predictions)
    assert matrix.shape == (10, 10) and matrix.sum() == 24
    predicted = predictions.argmax(axis=1)
    for t, p in zip(trained.test_labels[:, 0], predicted):
        assert matrix[t, p] >= 1
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(trained.test_labels[:, 0], minlength=10))
    out = capsys.readouterr().out
    rows = re.findall(r'^  (\w+)\s+(\d\.\d\d)$', out, re.MULTILINE)
    assert sorted(name for name, _ in rows) == sorted(cifar_cnn.CLASSES)
    values = [float(v) for _, v in rows]
    assert values == sorted(values)  # worst first
    assert os.path.exists(os.path.join(trained.figures_dir, 'confusion-matrix.png'))


def test_failed_figure_write_keeps_the_previous_figure(trained, tmp_path, monkeypatch):
    trained.figures_dir = str(tmp_path)
    (tmp_path / 'normalized.png').write_bytes(b'previous figure')

    def half_write(self, path, **kwargs):
        with open(path, 'wb') as f:
            f.write(b'\x89PNG half')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(cifar_cnn.matplotlib.figure.Figure, 'savefig', half_write)
    with pytest.raises(cifar_cnn.CifarError, match=r'cannot write .*normalized.png: No space left on device'):
        trained.preprocess_data()
    assert (tmp_path / 'normalized.png').read_bytes() == b'previous figure'
    assert os.listdir(tmp_path) == ['normalized.png']  # no temporary file left behind


def test_stop_on_ctrl_c_keeps_finished_epochs(cifar_dir, tmp_path, capsys):
    """Ctrl-C arriving in epoch 3: epochs 1-2 are kept, training ends, the model stays usable."""
    import signal
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), epochs=50, batch_size=8)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()

    class CtrlCInEpoch3(cifar_cnn.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                signal.raise_signal(signal.SIGINT)
    original_fit = cnn.model.fit
    cnn.model.fit = lambda *a, callbacks, **k: original_fit(*a, callbacks=[CtrlCInEpoch3(), *callbacks], **k)
    history = cnn.train_model()
    assert len(history.history['accuracy']) == 2 and history.epoch == [0, 1]
    assert len(cnn.epoch_times) == 2
    assert 'Training stopped by Ctrl-C after 2 finished epoch(s)' in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


@pytest.mark.skipif(bool(cifar_cnn.tf.config.list_physical_devices('GPU')), reason='CPU rules only')
@pytest.mark.parametrize(('native', 'requested', 'policy'), [
    (False, 'auto', 'float32'), (True, 'auto', 'mixed_bfloat16'),
    (False, 'mixed', 'mixed_bfloat16'), (True, 'float32', 'float32')])
def test_choose_precision_on_cpu(monkeypatch, native, requested, policy):
    monkeypatch.setattr(cifar_cnn, 'cpu_has_bfloat16', lambda: native)
    chosen, why = cifar_cnn.choose_precision(requested)
    assert chosen == policy and why


def test_mixed_precision_keeps_the_network_and_float32_probabilities(cifar_dir, tmp_path):
    """What `--precision mixed` (or auto on a CPU with native bf16) runs: same 122,570 weights,
    float32 probabilities that sum to 1 (bfloat16 ones are off by up to 1%)."""
    cifar_cnn.keras.mixed_precision.set_global_policy('mixed_bfloat16')  # the autouse fixture undoes it
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), epochs=1, batch_size=8)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    assert cnn.model.count_params() == 122_570
    assert cnn.model.layers[0].compute_dtype == 'bfloat16' and cnn.model.layers[0].variable_dtype == 'float32'
    cnn.history = cnn.train_model()
    predictions = cnn.make_prediction()
    assert predictions.dtype == np.float32
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
