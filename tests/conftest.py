"""Tiny synthetic CIFAR-10 data in the real `cifar-10-batches-py` format, and shared fixtures."""

import importlib
import os
import pickle
import socket
import tarfile
import urllib.error

import matplotlib
import numpy as np
import pytest

matplotlib.use('Agg')  # tests never open windows

import cifar_cnn

file_utils = importlib.import_module('keras.src.utils.file_utils')  # keras.utils.get_file's module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PER_BATCH = 8  # 5 batches -> 40 training images
TEST_IMAGES = 24


def batch_bytes(images, labels, protocol=4):
    """A batch file's bytes: images (N, 32, 32, 3) uint8 stored the way the official archive does."""
    batch = {b'batch_label': b'synthetic',
             b'labels': labels if isinstance(labels, np.ndarray) else [int(v) for v in labels],
             b'data': images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
             b'filenames': [f'img_{i}.png'.encode() for i in range(len(images))]}
    return pickle.dumps(batch, protocol=protocol)


def write_batch(path, images, labels):
    with open(path, 'wb') as f:
        f.write(batch_bytes(images, labels))


def make_cifar_folder(parent, seed=0):
    """parent/cifar-10-batches-py with 40 training and 24 test random images.
    Returns the folder and the arrays written: (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(parent, 'cifar-10-batches-py')
    os.makedirs(folder, exist_ok=True)
    x_train = rng.integers(0, 256, (5 * TRAIN_PER_BATCH, 32, 32, 3), dtype=np.uint8)
    y_train = rng.integers(0, 10, 5 * TRAIN_PER_BATCH).astype(np.uint8)
    x_test = rng.integers(0, 256, (TEST_IMAGES, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, TEST_IMAGES).astype(np.uint8)
    for i in range(5):
        s = slice(i * TRAIN_PER_BATCH, (i + 1) * TRAIN_PER_BATCH)
        write_batch(os.path.join(folder, f'data_batch_{i + 1}'), x_train[s], y_train[s])
    write_batch(os.path.join(folder, 'test_batch'), x_test, y_test)
    return folder, (x_train, y_train, x_test, y_test)


def make_tarball(parent, seed=0):
    """parent/cifar-10-python.tar.gz holding cifar-10-batches-py, like the official download."""
    folder, arrays = make_cifar_folder(os.path.join(parent, 'src'), seed)
    path = os.path.join(parent, 'cifar-10-python.tar.gz')
    with tarfile.open(path, 'w:gz') as t:
        t.add(folder, arcname='cifar-10-batches-py')
    return path, arrays


@pytest.fixture(autouse=True)
def no_network(tmp_path_factory, monkeypatch):
    """No test downloads: Keras's downloader fails as it does offline, into an empty Keras cache."""
    def offline(url, target, reporthook=None):
        raise urllib.error.URLError(socket.gaierror(-3, 'Temporary failure in name resolution'))
    monkeypatch.setattr(file_utils, 'urlretrieve', offline)
    use_keras_home(monkeypatch, tmp_path_factory.mktemp('keras-home'))


def use_keras_home(monkeypatch, home):
    """Points Keras's cache at `home`: KERAS_HOME, which Keras reads once as it loads, so also the
    value it keeps (what keras.utils.get_file uses, if it exists: else /tmp/.keras)."""
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv('KERAS_HOME', str(home))
    monkeypatch.setattr(importlib.import_module('keras.src.backend.config'), '_KERAS_DIR', str(home))
    return home


@pytest.fixture(autouse=True)
def restore_dtype_policy():
    """main() sets Keras's global dtype policy (mixed_bfloat16 on a CPU with native bf16): undo it."""
    policy = cifar_cnn.keras.mixed_precision.global_policy()
    yield
    cifar_cnn.keras.mixed_precision.set_global_policy(policy)


@pytest.fixture
def cifar_dir(tmp_path):
    """A folder holding cifar-10-batches-py (what --data-dir usually points at)."""
    make_cifar_folder(str(tmp_path))
    return str(tmp_path)


@pytest.fixture(scope='session')
def session_cifar_dir(tmp_path_factory):
    parent = str(tmp_path_factory.mktemp('cifar'))
    make_cifar_folder(parent)
    return parent


@pytest.fixture(scope='session')
def trained(session_cifar_dir, tmp_path_factory):
    """A CifarCNN that ran the post's steps up to training (2 epochs) on the tiny data set."""
    cifar_cnn.keras.utils.set_random_seed(0)
    figures = str(tmp_path_factory.mktemp('figures'))
    cnn = cifar_cnn.CifarCNN(data_dir=session_cifar_dir, figures_dir=figures, epochs=2, batch_size=8)
    cnn.preprocess_data()
    cnn.model = cnn.build_model()
    cnn.history = cnn.train_model()
    return cnn


@pytest.fixture(scope='session')
def saved_model(trained, tmp_path_factory):
    """The trained model, saved by save_model (what --save-model writes)."""
    path = str(tmp_path_factory.mktemp('model') / 'model.keras')
    cifar_cnn.save_model(trained.model, path)
    return path
