"""The post's steps, one test per method of `CifarCNN`, in the post's order, on tiny synthetic data."""

import os
import re
import warnings

import numpy as np

import cifar_cnn


def test_init_loads_cifar10_and_keeps_the_posts_names(cifar_dir):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, limit=30)
    assert cnn.classes == ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
    (x_train, y_train), (x_test, y_test) = cifar_cnn.load_cifar10(cifar_dir)
    np.testing.assert_array_equal(cnn.train_imgs, x_train[:30])  # --limit: the first N of each
    np.testing.assert_array_equal(cnn.train_labels, y_train[:30])
    np.testing.assert_array_equal(cnn.test_imgs, x_test[:24])
    np.testing.assert_array_equal(cnn.test_labels, y_test[:24])
    assert (cnn.epochs, cnn.model, cnn.history) == (10, None, None)  # the post uses them, never sets them
    assert (cnn.figures_dir, cnn.show) == (None, None)  # figures shown where there is a display, not written


def test_explore_data_prints_and_draws(cifar_dir, tmp_path, capsys):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path))
    cnn.explore_data()
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


def test_preprocess_data_scales_each_batch_to_float32(cifar_dir, tmp_path):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), batch_size=8)
    cnn.preprocess_data()
    assert cnn.train_imgs.dtype == np.uint8  # no float64 copy of the data set
    assert cnn.validation_ds is cnn.test_ds  # the post validates on the test set
    x, y = next(iter(cnn.test_ds))
    assert x.dtype.name == 'float32' and y.dtype.name == 'uint8'
    np.testing.assert_allclose(x.numpy(), cnn.test_imgs[:len(x)] / 255.0, atol=1e-6)  # unshuffled, [0, 1]
    batches = [(bx.numpy(), by.numpy()) for bx, by in cnn.train_ds]
    assert [len(bx) for bx, _ in batches] == [8] * 5
    seen = np.concatenate([bx for bx, _ in batches])
    # every training image exactly once per epoch, with its own label
    order = np.argsort(seen.reshape(40, -1)[:, :8].sum(axis=1))
    expected = np.argsort((cnn.train_imgs.reshape(40, -1)[:, :8] / 255.0).sum(axis=1))
    np.testing.assert_allclose(seen[order], cnn.train_imgs[expected] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([by for _, by in batches])[order], cnn.train_labels[expected])
    assert (tmp_path / 'normalized.png').stat().st_size > 5_000


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


def test_train_model_returns_the_history_and_prints_epoch_times(cifar_dir, tmp_path, capsys):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), epochs=2, batch_size=8)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    history = cnn.train_model()
    assert history.history.keys() == {'accuracy', 'loss', 'val_accuracy', 'val_loss'}
    assert history.epoch == [0, 1] and len(history.history['val_accuracy']) == 2
    times = re.search(r'^Epoch times \(s\): (\d+\.\d), (\d+\.\d); mean (\d+\.\d) s/epoch$',
                      capsys.readouterr().out, re.MULTILINE)
    assert times and float(times.group(3)) > 0


def test_evaluate_model_prints_and_plots_the_whole_history(trained, capsys, monkeypatch):
    limits = []
    original_ylim = cifar_cnn.plt.ylim
    monkeypatch.setattr(cifar_cnn.plt, 'ylim', lambda lim: limits.append(lim) or original_ylim(lim))
    loss, acc = trained.evaluate_model()
    out = capsys.readouterr().out
    assert f'Loss: {loss}' in out and f'Accuracy: {acc}' in out and 0.0 <= acc <= 1.0
    assert os.path.getsize(os.path.join(trained.figures_dir, 'history.png')) > 5_000
    lowest = min(trained.history.history['accuracy'] + trained.history.history['val_accuracy'])
    assert lowest < 0.5 and limits == [[np.floor(lowest * 10) / 10, 1]]  # the post's [0.5, 1] would hide it


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


def test_make_prediction_returns_probabilities_and_draws_15(trained):
    predictions = trained.make_prediction()
    assert predictions.shape == (24, 10) and predictions.dtype == np.float32
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    logits = trained.model.predict(trained.test_imgs[:3] / np.float32(255), verbose=0).astype(np.float32)
    np.testing.assert_array_equal(predictions[:3].argmax(axis=1), logits.argmax(axis=1))
    assert os.path.getsize(os.path.join(trained.figures_dir, 'predictions.png')) > 10_000
