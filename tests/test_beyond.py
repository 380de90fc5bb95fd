"""Beyond the post: the confusion matrix, the next experiments (--augment, --batch-norm, --dropout,
--validation-split, --cosine-decay, --tensorboard), keeping the model, and your own pictures."""

import io
import json
import math
import os
import re
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import refused, write_batch
from PIL import Image

import cifar_cnn
import cifar_cnn_plumbing as plumbing
import cifar_cnn_readers as readers
from cifar_cnn import Variations


def test_confusion_matrix_counts_every_test_image(trained, capsys):
    matrix = trained.confusion_matrix()
    assert matrix.shape == (10, 10) and matrix.sum() == 24
    for t, p in zip(trained.test_labels[:, 0], trained.predictions.argmax(axis=1)):
        assert matrix[t, p] >= 1
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(trained.test_labels[:, 0], minlength=10))
    assert trained.plot_confusion_matrix() is None
    rows = re.findall(r'^  (\w+)\s+(\d\.\d\d|no test images)$', capsys.readouterr().out, re.MULTILINE)
    assert sorted(name for name, _ in rows) == sorted(cifar_cnn.CLASSES)
    values = [float(v) for _, v in rows if v != 'no test images']
    assert values == sorted(values)  # worst first
    assert os.path.getsize(os.path.join(trained.figures_dir, 'confusion-matrix.png')) > 10_000


def test_classes_without_test_images_say_so_and_come_last(session_cifar_dir, capsys):
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, limit=3)
    cnn.predictions = np.eye(10, dtype=np.float32)[cnn.test_labels[:, 0]]  # each right
    cnn.plot_confusion_matrix()
    rows = capsys.readouterr().out.split('Per-class accuracy, worst first:\n')[1].splitlines()[:10]
    present = sorted({cifar_cnn.CLASSES[i] for i in cnn.test_labels[:, 0]})
    assert sorted(row.split()[0] for row in rows[:len(present)]) == present
    assert all(row.endswith(' 1.00') for row in rows[:len(present)])
    assert all(row.endswith(' no test images') for row in rows[len(present):])


# ─── What did it learn? ──────────────────────────────────────────────────────────────────────────

def drawn(cnn, monkeypatch):
    """The figures `cnn` shows, in the order shown, kept open instead of drawn on a screen: matplotlib's own
    plt.show() is what CifarCNN(show=True) calls where the post does."""
    figures = []
    monkeypatch.setattr(cnn, 'show', True)
    monkeypatch.setattr(cifar_cnn.plt, 'show', lambda: figures.append(cifar_cnn.plt.gcf()))
    monkeypatch.setattr(cifar_cnn.plt, 'close', lambda fig=None: None)
    return figures


def test_mistakes_are_wrong_and_the_most_confident_first(trained, monkeypatch):
    predictions, labels = trained.predictions, trained.test_labels[:, 0]
    mistakes = trained.mistakes()
    assert sorted(mistakes) == list(np.flatnonzero(predictions.argmax(axis=1) != labels)) and len(mistakes)
    confidence = predictions[mistakes].max(axis=1)
    assert list(confidence) == sorted(confidence, reverse=True)
    figures = drawn(trained, monkeypatch)
    assert trained.plot_mistakes() is None
    shown = [ax.xaxis.label.get_text() for ax in figures[0].axes[::2]]
    assert shown == [f'{trained.classes[predictions[k].argmax()]} {100 * predictions[k].max():2.0f}% '
                     f'({trained.classes[labels[k]]})' for k in mistakes[:15]]
    monkeypatch.undo()
    trained.plot_mistakes()
    assert os.path.getsize(os.path.join(trained.figures_dir, 'mistakes.png')) > 10_000


def test_filters_are_the_first_convolutions_kernels_one_panel_each(trained, monkeypatch):
    figures = drawn(trained, monkeypatch)
    assert trained.plot_filters() is None
    kernels = trained.filters()
    np.testing.assert_array_equal(kernels, np.moveaxis(trained.model.layers[0].kernel.numpy(), -1, 0))
    assert kernels.shape == (32, 3, 3, 3) and len(figures[0].axes) == 32


def test_feature_maps_follow_the_posts_summary(trained, monkeypatch):
    figures = drawn(trained, monkeypatch)
    assert trained.plot_feature_maps(index=2) is None
    maps = trained.feature_maps(2)
    assert [m.shape for m in maps] == [(30, 30, 32), (13, 13, 64), (4, 4, 64)]
    probe = cifar_cnn.keras.Model(trained.model.layers[0].input, trained.model.layers[0].output)
    np.testing.assert_allclose(maps[0], probe(trained.test_imgs[2:3])[0], rtol=1e-5, atol=1e-6)
    titles = [ax.get_title() for ax in figures[0].axes]
    assert titles[::9] == ['conv 1: 30x30x32', 'conv 2: 13x13x64', 'conv 3: 4x4x64']
    shown = [int(title[1:]) for title in titles[1:9]]  # the most active of the first layer's 32 maps
    assert sorted(maps[0].mean(axis=(0, 1)), reverse=True)[:8] == list(maps[0].mean(axis=(0, 1))[shown])


@pytest.fixture(scope='module')
def corner_model(tmp_path_factory):
    """A model trained on images whose class is decided by a patch in one corner: class 1 has a white
    8x8 patch at the top left, class 0 none; both are noise elsewhere."""
    folder = tmp_path_factory.mktemp('corner') / 'cifar-10-batches-py'
    folder.mkdir()
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 600).astype(np.uint8)
    imgs = rng.integers(0, 120, (600, 32, 32, 3), dtype=np.uint8)
    imgs[labels == 1, :8, :8] = 255
    for i, name in enumerate(readers.BATCH_FILES):
        part = slice(i * 100, (i + 1) * 100)
        write_batch(str(folder / name), imgs[part], labels[part])
    cifar_cnn.keras.utils.set_random_seed(0)
    cnn = cifar_cnn.CifarCNN(data_dir=str(folder), epochs=4, batch_size=16)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    cnn.history = cnn.train_model()
    return cnn


def test_grad_cam_figure_has_a_scale_from_none_to_most(trained, monkeypatch):
    figures = drawn(trained, monkeypatch)
    assert trained.plot_grad_cam(count=7) is None
    fig, = figures
    assert len(fig.axes) == 7 + 1 and fig.axes[-1].get_ylabel().startswith('evidence for the predicted class')
    assert [ax.get_title() != '' for ax in fig.axes[:7]] == [True] * 7


def test_grad_cam_looks_where_the_class_is_decided(corner_model):
    cnn = corner_model
    predicted = cnn.model.predict(cnn.test_imgs, verbose=0).argmax(axis=1)
    patched = cnn.test_imgs[(cnn.test_labels[:, 0] == 1) & (predicted == 1)]
    assert len(patched) >= 30  # it learned the patch
    heat = cnn.grad_cam(patched)
    assert heat.shape == (len(patched), 32, 32) and heat.min() >= 0 and np.allclose(heat.max(axis=(1, 2)), 1)
    peaks = [np.unravel_index(np.argmax(h), h.shape) for h in heat]
    assert all(row < 16 and col < 16 for row, col in peaks)  # the top-left quarter, where the patch is


# ─── The next experiments ────────────────────────────────────────────────────────────────────────

def layer_names(variations, cifar_dir, tmp_path):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), variations=variations)
    model = cnn.build_model()
    return [type(layer).__name__ for layer in model.layers], model


POST_LAYERS = ['Conv2D', 'MaxPooling2D', 'Conv2D', 'MaxPooling2D', 'Conv2D', 'Flatten', 'Dense', 'Dense']


@pytest.mark.parametrize(('variations', 'expected', 'params'), [
    (Variations(augment=True), POST_LAYERS, 122_570),  # the training pipeline augments, not the network
    (Variations(batch_norm=True), ['Conv2D', 'BatchNormalization', 'MaxPooling2D', 'Conv2D', 'BatchNormalization',
                                   'MaxPooling2D', 'Conv2D', 'BatchNormalization', 'Flatten', 'Dense', 'Dense'],
     122_570 + 4 * (32 + 64 + 64)),  # a scale, an offset and two running statistics per channel
    (Variations(dropout=0.3), [*POST_LAYERS[:6], 'Dropout', 'Dense', 'Dropout', 'Dense'], 122_570),
    (Variations(validation_split=0.2, cosine_decay=True), POST_LAYERS, 122_570)])  # not the network
def test_each_flag_changes_the_network_as_said(cifar_dir, tmp_path, variations, expected, params):
    names, model = layer_names(variations, cifar_dir, tmp_path)
    assert names == expected and model.count_params() == params
    assert all(layer.rate == 0.3 for layer in model.layers if type(layer).__name__ == 'Dropout')


def test_fused_batch_norm_is_kerases_batch_norm():
    """--batch-norm's layer computes with TensorFlow's fused kernel: the same outputs and moving
    statistics as Keras's own, in training and inference, and the same saved layer."""
    keras = cifar_cnn.keras
    x = cifar_cnn.tf.random.stateless_normal((8, 6, 6, 4), seed=(1, 2)) * 3 + 1
    ours, theirs = plumbing.fused_batch_norm(keras.layers.BatchNormalization()), keras.layers.BatchNormalization()
    for _ in range(3):
        np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), atol=1e-5)
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), atol=1e-5)
    assert type(ours) is keras.layers.BatchNormalization and ours.get_config() == theirs.get_config() | {
        'name': ours.name}


@pytest.fixture(scope='module')
def varied(session_cifar_dir, tmp_path_factory):
    """Every flag at once, 2 epochs on the tiny data set."""
    cifar_cnn.keras.utils.set_random_seed(1)
    out = tmp_path_factory.mktemp('varied')
    variations = Variations(augment=True, batch_norm=True, dropout=0.3, validation_split=0.25, cosine_decay=True,
                            tensorboard=str(out / 'logs'))
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, figures_dir=str(out), epochs=2, batch_size=8,
                             variations=variations)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    cnn.history = cnn.train_model()
    return cnn


def test_dropout_acts_only_in_training(varied):
    x = varied.test_imgs[:8]
    first, second = varied.model.predict(x, verbose=0), varied.model.predict(x, verbose=0)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(varied.model(x, training=True).numpy(), first)


def test_augmentation_flips_and_shifts_each_training_image_the_same_for_a_seed(cifar_dir):
    """Each augmented image is its original, flipped or not, shifted by -3..3 pixels each way with the
    border reflected; the labels stay with their images; a seed repeats it all."""
    (x, y), _ = readers.load_cifar10(cifar_dir)
    runs = []
    for _ in range(2):
        cifar_cnn.keras.utils.set_random_seed(5)
        runs.append([(a.numpy(), b.numpy()) for a, b in plumbing.pipeline(x, y, 40, augment=True)])
    (augmented, labels), = runs[0]
    np.testing.assert_array_equal(augmented, runs[1][0][0])
    np.testing.assert_array_equal(labels, y)
    padded = np.pad(x, [(0, 0), (3, 3), (3, 3), (0, 0)], mode='reflect') / np.float32(255)
    moves = []
    for img, original in zip(augmented, padded):
        moves += [(flip, dy, dx) for flip in (False, True) for dy in range(7) for dx in range(7)
                  if np.array_equal(img, (original[:, ::-1] if flip else original)[dy:dy + 32, dx:dx + 32])]
    assert len(moves) == 40  # one move each (random images: no two moves give the same picture)
    assert 10 < sum(flip for flip, _, _ in moves) < 30 and len({(dy, dx) for _, dy, dx in moves}) > 15


def test_validation_split_holds_out_the_last_training_images(varied, monkeypatch):
    """40 training images, --validation-split 0.25: fit trains on the first 30 and validates on the
    last 10, unaugmented (--augment is on); the test set is seen only by evaluate_model."""
    (val_x, val_y), = [(x.numpy(), y.numpy()) for x, y in varied.validation_ds]
    np.testing.assert_allclose(val_x, varied.train_imgs[30:], atol=1e-6)
    np.testing.assert_array_equal(val_y, varied.train_labels[30:])
    assert sum(len(x) for x, _ in varied.train_ds) == 30
    seen = []
    monkeypatch.setattr(varied.model, 'fit', lambda *a, **k: seen.extend([*a, *k.values()]))
    varied.train_model()
    assert varied.test_ds not in seen and varied.validation_ds in seen
    assert varied.validation_label == 'val_accuracy (last 10 training images)'


def test_cosine_decay_lowers_the_learning_rate_every_step(varied):
    """2 epochs of 30 images in batches of 8: 8 steps, the rate from 1e-3 to 0 along a cosine."""
    optimizer = varied.model.optimizer
    assert int(optimizer.iterations) == 8 and float(optimizer.learning_rate) == pytest.approx(0, abs=1e-9)
    fresh = varied.build_model().optimizer  # a new model, its schedule at step 0
    for step in range(9):  # within the first epoch too, so --epochs 1 decays as well
        fresh.iterations.assign(step)
        assert float(fresh.learning_rate) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * step / 8)), abs=1e-9)


def test_variations_name_the_flags_in_effect():
    assert str(Variations()) == "none (the post's network and training)"
    assert str(Variations(augment=True, dropout=0.3, cosine_decay=True)) == '--augment --dropout 0.3 --cosine-decay'


def test_tensorboard_writes_event_files(varied):
    logs = varied.variations.tensorboard
    for part in ('train', 'validation'):
        assert any(name.startswith('events.out.tfevents') for name in os.listdir(os.path.join(logs, part)))


def test_a_varied_model_saves_loads_and_predicts(varied, tmp_path):
    """--augment --batch-norm --dropout --cosine-decay: saved with its cosine schedule, loaded, the same answers."""
    path = str(tmp_path / 'varied.keras')
    cifar_cnn.save_model(varied.model, path)
    compiled = json.loads(zipfile.ZipFile(path).read('config.json'))['compile_config']
    assert compiled['optimizer']['config']['learning_rate']['class_name'] == 'CosineDecay'
    loaded = cifar_cnn.load_model(path)
    x = varied.test_imgs[:5]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), varied.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    Image.fromarray((varied.test_imgs[0] * 255).round().astype(np.uint8)).save(tmp_path / 'img.png')
    cifar_cnn.predict_files(loaded, [str(tmp_path / 'img.png')])


# ─── Keep the model ──────────────────────────────────────────────────────────────────────────────

def test_save_and_load_round_trip(trained, saved_model):
    assert os.listdir(os.path.dirname(saved_model)) == ['model.keras']  # no temporary file left
    loaded = cifar_cnn.load_model(saved_model)
    x = trained.test_imgs[:5]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trained.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def rezip(saved_model, path, compression=zipfile.ZIP_STORED, **replace):
    with zipfile.ZipFile(saved_model) as src, zipfile.ZipFile(path, 'w', compression) as dst:
        for name in src.namelist():
            dst.writestr(name, replace.pop(name, src.read(name)))
        for name, data in replace.items():
            dst.writestr(name, data)
    return str(path)


def foreign_class(saved_model, path):
    config = json.loads(zipfile.ZipFile(saved_model).read('config.json'))
    config['config']['layers'][1]['module'] = 'antigravity'  # importing it would open a web browser
    return rezip(saved_model, path, **{'config.json': json.dumps(config)})


def other_model(saved_model, path):
    other = cifar_cnn.keras.Sequential([cifar_cnn.keras.Input((28, 28, 1)), cifar_cnn.keras.layers.Flatten(),
                                        cifar_cnn.keras.layers.Dense(10)])
    other.save(path)
    return str(path)


@pytest.mark.parametrize(('make', 'names'), [
    (lambda saved, path: str(path), ['no such file']),
    (lambda saved, path: path.write_bytes(Path(saved).read_bytes()[:5000]) and str(path), ['damaged', '.keras']),
    (lambda saved, path: rezip(saved, path, **{'notes.txt': b'hi'}), ['not a model saved by', 'notes.txt']),
    (lambda saved, path: zipfile.ZipFile(path, 'w').close() or str(path), ['not a model saved by', 'nothing']),
    (foreign_class, ['refused', 'layer 2', 'antigravity.Conv2D']),
    (lambda saved, path: edit_config(saved, path, 1, {'class_name': 'Dropout', 'config': []}),
     ['refused', 'dropout rate', '[]']),
    (other_model, ['refused', 'layer 1', 'InputLayer']),
    (lambda saved, path: keras_made(path, [cifar_cnn.keras.layers.Dense(10) for _ in range(40)]),
     ['refused', 'layer 2', 'keras.layers.Dense', 'Conv2D']),
    (lambda saved, path: keras_made(path, [cifar_cnn.keras.layers.Dense(10)], built=False),
     ['refused', 'layer 1', 'keras.layers.Dense', 'InputLayer']),
    (lambda saved, path: rezip(saved, path, **{'model.weights.h5': b'not HDF5 at all'}),
     ['damaged', 'model.weights.h5']),
    (lambda saved, path: edit_weights(saved, path, 'dense/vars/0', shape=(10**9,), compression='gzip',
                                      chunks=(10**6,)),
     ['refused', 'layers/dense/vars/0', '(1024, 64)', 'float32']),
    (lambda saved, path: edit_weights(saved, path, 'dense/vars/0', data=np.zeros((1024, 64), '>f4')),
     ['refused', 'layers/dense/vars/0', 'float32']),
    (lambda saved, path: edit_weights(saved, path, 'conv2d/vars/1', data=np.full(32, np.nan, np.float32)),
     ['refused', 'NaN']),
    (lambda saved, path: edit_weights(saved, path, 'flatten_1/vars/0', data=np.zeros(3, np.float32)),
     ['refused', 'weights']),
    (lambda saved, path: rezip(saved, path, **{'config.json': b'[' * 100_000}), ['damaged', 'recursion']),
    (lambda saved, path: edit_config(saved, path, 2, {'module': 'keras.layers', 'class_name': 'Conv2D', 'config': [1]}),
     ['refused', 'layer 3']),
    (lambda saved, path: rezip(saved, path, compression=zipfile.ZIP_DEFLATED,
                               **{'metadata.json': bytes(readers.MAX_MODEL_BYTES)}), ['unpacks to more than'])])
def test_load_model_refuses_what_save_model_did_not_write(saved_model, tmp_path, make, names):
    path = make(saved_model, tmp_path / 'bad.keras')
    with refused(path, *names):
        cifar_cnn.load_model(path)


def edit_config(saved_model, path, index, layer):
    """The saved model with config.json's layer `index` replaced by `layer`."""
    config = json.loads(zipfile.ZipFile(saved_model).read('config.json'))
    config['config']['layers'][index] = layer
    return rezip(saved_model, path, **{'config.json': json.dumps(config)})


def keras_made(path, stack, built=True):
    """A model file Keras itself writes, of `stack` on 32x32x3 inputs (or never built)."""
    model = cifar_cnn.keras.Sequential(([cifar_cnn.keras.Input((32, 32, 3))] if built else []) + stack)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Keras, on saving one never built
        model.save(path)
    return str(path)


def edit_weights(saved_model, path, where, **dataset):
    """The saved model with one weight dataset replaced (h5py's create_dataset arguments)."""
    weights = io.BytesIO(zipfile.ZipFile(saved_model).read('model.weights.h5'))
    with h5py.File(weights, 'a') as f:
        if f'layers/{where}' in f:
            del f[f'layers/{where}']
        f['layers'].create_dataset(where, **dataset)
    return rezip(saved_model, path, **{'model.weights.h5': weights.getvalue()})


@pytest.mark.parametrize(('kind', 'weight'), [*readers.WEIGHT_RANGES, ('conv2d', 'kernel'), ('dense', 'bias')])
def test_weights_outside_what_training_writes_are_refused(varied, tmp_path, kind, weight):
    """Finite, but out of the range the layer's training keeps (a negative moving variance; any weight beyond
    1e4): every image would get the same answer, which would look like an answer."""
    saved = str(tmp_path / 'varied.keras')
    cifar_cnn.save_model(varied.model, saved)
    path, variable = next((path, variable) for path, variable in readers.keras_weight_paths(varied.model).items()
                          if path.startswith(kind) and variable.name == weight)
    low, high = readers.WEIGHT_RANGES.get((kind, weight), (-1e4, 1e4))
    value = variable.numpy().copy()
    value.flat[0] = low - 1 if low == 0 else high * 10
    bad = edit_weights(saved, tmp_path / 'bad.keras', path, data=value)
    with refused('refused', weight, f'layers/{path}', f'{low:g}', f'{high:g}'):
        cifar_cnn.load_model(bad)


def test_a_model_file_claiming_a_billion_weights_costs_no_more_memory_than_a_good_one(saved_model, tmp_path):
    """Its weights claim 4 GB, compressed into a few kB: refused from the claim, never read. Were it read,
    this process's peak memory would rise by 4 GB."""
    hostile = edit_weights(saved_model, tmp_path / 'hostile.keras', 'dense/vars/0', shape=(10**9,),
                           compression='gzip', chunks=(10**6,), fillvalue=1.0)
    assert os.path.getsize(hostile) < 2_000_000  # as the good one: 1.5 MB
    peak = peak_memory_mb()
    with refused('refused', 'layers/dense/vars/0'):
        cifar_cnn.load_model(hostile)
    assert peak_memory_mb() < peak + 200


def peak_memory_mb():
    """This process's peak resident memory in MB: ru_maxrss counts kB on Linux, bytes on macOS (no resource
    module on Windows)."""
    resource = pytest.importorskip('resource')
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == 'darwin' else 2**10)


# ─── Your own pictures ───────────────────────────────────────────────────────────────────────────

def as_loaded(images):
    """Images scaled by preprocess_data(), back as the uint8 pixels a picture file holds."""
    return (np.asarray(images) * 255).round().astype(np.uint8)


def test_predict_files_answers_each_image_and_counts_failures(trained, tmp_path, capsys):
    img = as_loaded(trained.test_imgs[0])
    exact = tmp_path / 'test0.png'  # a CIFAR-sized RGB file goes through unchanged
    Image.fromarray(img).save(exact)
    big_jpeg = tmp_path / 'big.jpg'
    Image.fromarray(img).resize((640, 480)).save(big_jpeg)
    text = tmp_path / 'notes.png'
    text.write_text('not an image')
    odd = tmp_path / 'a\nerror: \x1b[31mforged.png'  # a newline and a terminal's escape code in a name
    assert cifar_cnn.predict_files(trained.model, [str(exact), str(text), str(tmp_path / 'missing.png'),
                                                   str(big_jpeg), str(exact), str(odd)]) is None  # nothing to print
    out, err = capsys.readouterr()
    probs = trained.model.predict(img[np.newaxis] / np.float32(255), verbose=0)[0]
    assert out.startswith(f'{exact}: {cifar_cnn.CLASSES[int(np.argmax(probs))]} ')
    assert [line.split(': ')[0] for line in out.splitlines()] == [str(exact), str(big_jpeg), str(exact)]
    for line in out.splitlines():
        top = [(name, float(p)) for name, p in (item.split() for item in line.split(': ', 1)[1].split(', '))]
        assert len(top) == 3 and all(name in cifar_cnn.CLASSES for name, _ in top)
        assert [p for _, p in top] == sorted([p for _, p in top], reverse=True)
    assert err.splitlines() == [f'error: {text}: not an image in a format read here (PNG, JPEG, GIF, BMP, WEBP, TIFF)',
                                f'error: {tmp_path / "missing.png"}: no such file',
                                f'error: {tmp_path}/a\\nerror: \\x1b[31mforged.png: no such file']  # one line


def test_predict_files_with_no_image_to_answer_says_why_for_each(trained, tmp_path, capsys):
    cifar_cnn.predict_files(trained.model, [str(tmp_path / 'a.png'), str(tmp_path / 'b.png')])
    out, err = capsys.readouterr()
    assert out == '' and len(err.splitlines()) == 2


def test_predict_files_answers_more_files_than_one_batch_holds(trained, tmp_path, capsys):
    """Files are read and answered plumbing.EVAL_BATCH_SIZE at a time: one more than that is answered too."""
    Image.fromarray(as_loaded(trained.test_imgs[0])).save(tmp_path / 'one.png')
    cifar_cnn.predict_files(trained.model, [str(tmp_path / 'one.png')] * (plumbing.EVAL_BATCH_SIZE + 1))
    answers = capsys.readouterr().out.splitlines()
    assert len(answers) == plumbing.EVAL_BATCH_SIZE + 1 and len(set(answers)) == 1


def test_asking_again_and_again_stays_quiet(trained, tmp_path, capsys, caplog):
    """A learner trying pictures one at a time: each call prints its answer alone, and TensorFlow never warns
    about retracing (from the fifth call on, were each call's probability model a new one)."""
    Image.fromarray(as_loaded(trained.test_imgs[0])).save(tmp_path / 'one.png')
    for _ in range(7):
        cifar_cnn.predict_files(trained.model, [str(tmp_path / 'one.png')])
    assert len(capsys.readouterr().out.splitlines()) == 7 and 'retracing' not in caplog.text


def test_file_names_may_be_path_objects_one_name_or_a_generator(trained, tmp_path, capsys):
    """The ways Python hands over file names: pathlib's Path, one name for one picture, names as they come."""
    cifar_cnn.save_model(trained.model, tmp_path / 'm.keras')
    model = cifar_cnn.load_model(tmp_path / 'm.keras')
    picture = tmp_path / 'cat.png'
    Image.fromarray(as_loaded(trained.test_imgs[0])).save(picture)
    capsys.readouterr()
    for paths in (picture, str(picture), (path for path in [picture, str(picture)])):
        cifar_cnn.predict_files(model, paths)
    assert [line.split(': ')[0] for line in capsys.readouterr().out.splitlines()] == [str(picture)] * 4


def test_the_cnn_instead_of_its_model_or_no_file_names_is_one_line(trained, tmp_path):
    with refused('save_model(model, ...)', 'cnn.model', 'CifarCNN'):
        cifar_cnn.save_model(trained, str(tmp_path / 'm.keras'))
    with refused('predict_files(model, ...)', 'cnn.model', 'CifarCNN'):
        cifar_cnn.predict_files(trained, [str(tmp_path / 'cat.png')])
    for paths in (None, 5, [str(tmp_path / 'cat.png'), None]):
        with refused('predict_files(model, paths)', 'file name'):
            cifar_cnn.predict_files(trained.model, paths)
    assert os.listdir(tmp_path) == []


def test_a_model_that_computes_non_numbers_says_its_weights_are_unusable(session_cifar_dir, tmp_path):
    """Weights within what training writes can still overflow: a --batch-norm model with every weight 1e4 and
    moving variances 0 computes NaN. Its answers are one line saying so, not 'truck nan', nor a blame on raw
    outputs."""
    model = cifar_cnn.build_network(batch_norm=True)
    for variable in model.weights:
        variable.assign(np.full(variable.shape, 0 if 'moving_variance' in variable.path else 1e4, np.float32))
    cifar_cnn.save_model(model, tmp_path / 'nan.keras')
    loaded = cifar_cnn.load_model(tmp_path / 'nan.keras')
    Image.new('RGB', (32, 32), 'red').save(tmp_path / 'red.png')
    with refused('non-numbers', 'red.png', 'weights are unusable'):
        cifar_cnn.predict_files(loaded, [str(tmp_path / 'red.png')])
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, show=False)
    cnn.preprocess_data()
    cnn.model = loaded
    with refused('non-numbers', 'weights are unusable'):
        cnn.make_prediction()


RAMP = np.linspace(0, 1, 32 * 32, dtype=np.float64).reshape(32, 32)  # black to white, every grey level


def encode(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(('name', 'data'), [
    ('8-bit grey PNG', lambda: encode((RAMP * 255).round().astype(np.uint8), 'PNG')),
    ('16-bit grey PNG', lambda: encode((RAMP * 65535).round().astype(np.uint16), 'PNG')),
    ('16-bit grey TIFF', lambda: encode((RAMP * 65535).round().astype(np.uint16), 'TIFF')),
    ('float TIFF', lambda: encode(RAMP.astype(np.float32), 'TIFF')),
    ('palette PNG', lambda: _convert((RAMP * 255).round().astype(np.uint8), 'P', 'PNG')),
    ('opaque RGBA PNG', lambda: _convert((RAMP * 255).round().astype(np.uint8), 'RGBA', 'PNG')),
    ('grey + alpha PNG', lambda: _convert((RAMP * 255).round().astype(np.uint8), 'LA', 'PNG')),
    ('CMYK JPEG', lambda: _convert((RAMP * 255).round().astype(np.uint8), 'CMYK', 'JPEG', quality=100)),
    ('RGB JPEG', lambda: _convert((RAMP * 255).round().astype(np.uint8), 'RGB', 'JPEG', quality=100))])
def test_read_image_gives_every_mode_the_same_8_bit_pixels(tmp_path, name, data):
    """The same grey ramp in every mode Pillow opens reads back as the same 0-255 pixels, as CIFAR-10's: 16-bit
    images by their white level, not clipped at 255 as a plain convert('RGB') would."""
    path = tmp_path / 'ramp'
    path.write_bytes(data())
    pixels = readers.read_image(str(path))
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    tolerance = 5 if 'JPEG' in name else 1  # of 255
    np.testing.assert_allclose(pixels, np.repeat(RAMP[..., np.newaxis], 3, axis=2) * 255, atol=tolerance)


def _convert(grey, mode, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(grey, 'L').convert(mode).save(buffer, fmt, **options)
    return buffer.getvalue()


def test_read_image_shows_transparency_on_white_and_refuses_unknown_scales(tmp_path):
    clear = tmp_path / 'clear.png'
    Image.new('RGBA', (32, 32), (0, 0, 0, 0)).save(clear)
    np.testing.assert_array_equal(readers.read_image(str(clear)), np.full((32, 32, 3), 255, np.uint8))
    hdr = tmp_path / 'hdr.tiff'
    Image.fromarray(np.full((32, 32), 4.0, np.float32)).save(hdr)
    with refused('hdr.tiff', 'pixels outside 0-1.0'):
        readers.read_image(str(hdr))
    signed = tmp_path / 'signed.tiff'
    Image.fromarray(np.full((32, 32), -5, np.int32)).save(signed)
    with refused('signed.tiff', 'mode I', '8- or 16-bit'):
        readers.read_image(str(signed))


def with_transparent_grey(png, level):
    """A greyscale PNG's bytes with the grey `level` marked transparent: a tRNS chunk after the header (IHDR),
    as image editors write it at 8 and 16 bits (Pillow 10.0 saves it at 8 bits only)."""
    chunk = b'tRNS' + level.to_bytes(2, 'big')
    end_of_header = 8 + 4 + 4 + 13 + 4  # the PNG signature, then IHDR: length, type, 13 bytes, CRC
    return png[:end_of_header] + len(chunk[4:]).to_bytes(4, 'big') + chunk + zlib.crc32(chunk).to_bytes(4, 'big') \
        + png[end_of_header:]


@pytest.mark.parametrize('bits', [8, 16])
def test_transparency_shows_on_white_at_every_bit_depth(tmp_path, bits):
    grey = np.full((32, 32), 40000, np.uint16)
    grey[:16] = 0  # the top half: the grey level marked transparent
    path, png = tmp_path / f'grey{bits}.png', io.BytesIO()
    Image.fromarray(grey if bits == 16 else (grey // 257).astype(np.uint8)).save(png, 'PNG')
    path.write_bytes(with_transparent_grey(png.getvalue(), 0))
    pixels = readers.read_image(str(path))
    np.testing.assert_array_equal(pixels[:15], 255)  # white, as in an 8-bit file
    np.testing.assert_allclose(pixels[17:], 40000 / 65535 * 255, atol=1)


@pytest.mark.parametrize('kind', ['JPEG', 'MPO'])  # MPO: a JPEG file of several pictures (a 3D camera's)
def test_a_jpeg_in_too_many_scans_is_refused_before_it_is_decoded(tmp_path, kind):
    """Each scan of a progressive JPEG is a pass over every pixel, and libjpeg counts none: a 2 MB file of
    200,000 empty scans over 9000 x 9000 pixels takes hours. Photos have at most a few dozen."""
    buffer = io.BytesIO()
    several = {'save_all': True, 'append_images': [Image.new('L', (64, 64), 100)]} if kind == 'MPO' else {}
    Image.new('L', (64, 64), 128).save(buffer, kind, progressive=True, **several)
    data = buffer.getvalue()
    last_scan = data[data.rindex(b'\xff\xda'):-2]  # the last scan, up to the end-of-image marker
    (tmp_path / 'scans.jpg').write_bytes(data[:-2] + last_scan * 200 + data[-2:])
    with refused('scans.jpg', 'scans'):
        readers.read_image(str(tmp_path / 'scans.jpg'))


def test_formats_outside_the_list_are_refused_unopened(tmp_path):
    """Pillow opens dozens of formats, some rarely used and less tested (DDS, IM, PCX, ...): only
    the ones photos come in are read."""
    path = tmp_path / 'photo.pcx'
    Image.new('RGB', (8, 8), 'red').save(path)
    with refused('photo.pcx', *readers.IMAGE_FORMATS):
        readers.read_image(str(path))


def test_a_damaged_tiff_is_one_line_and_libtiff_says_nothing(tmp_path, capfd):
    """libtiff writes its complaints straight to file descriptor 2, and Pillow warns: neither shows."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)).save(
        buffer, 'TIFF', compression='tiff_deflate')
    data = bytearray(buffer.getvalue())
    start = data.index(b'\x78\xda') if b'\x78\xda' in data else data.index(b'\x78\x9c')
    data[start + 20:start + 60] = bytes(40)  # the compressed pixels, damaged
    path = tmp_path / 'damaged.tiff'
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught, refused('damaged.tiff', 'damaged image'):
        warnings.simplefilter('always')
        readers.read_image(str(path))
    assert caught == [] and capfd.readouterr().err == ''  # raw Pillow: "ZIPDecode: Decoding error" on fd 2
