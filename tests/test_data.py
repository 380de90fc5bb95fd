"""Loading CIFAR-10: the three --data-dir layouts, the download path, and every bad input."""

import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from conftest import make_cifar_folder, make_tarball, write_batch

import cifar_cnn
from cifar_cnn import CifarError, load_cifar10


def check_arrays(loaded, written):
    (x_train, y_train), (x_test, y_test) = loaded
    wx_train, wy_train, wx_test, wy_test = written
    assert x_train.dtype == np.uint8 and x_train.shape == (40, 32, 32, 3)
    assert x_test.dtype == np.uint8 and x_test.shape == (24, 32, 32, 3)
    assert y_train.dtype == np.uint8 and y_train.shape == (40, 1)
    assert y_test.dtype == np.uint8 and y_test.shape == (24, 1)
    np.testing.assert_array_equal(x_train, wx_train)  # same pixels, same order, channels last
    np.testing.assert_array_equal(x_test, wx_test)
    np.testing.assert_array_equal(y_train[:, 0], wy_train)
    np.testing.assert_array_equal(y_test[:, 0], wy_test)


def test_folder_holding_batches(tmp_path):
    _, written = make_cifar_folder(str(tmp_path))
    check_arrays(load_cifar10(str(tmp_path)), written)


def test_batches_folder_itself(tmp_path):
    folder, written = make_cifar_folder(str(tmp_path))
    check_arrays(load_cifar10(folder), written)


def test_tarball(tmp_path):
    _, written = make_tarball(str(tmp_path / 'dl'))
    check_arrays(load_cifar10(str(tmp_path / 'dl')), written)


def test_same_as_keras_loader(tmp_path):
    """Keras's own batch reader (restricted unpickler) agrees with ours on the same file."""
    from keras.src.datasets.cifar import load_batch
    folder, _ = make_cifar_folder(str(tmp_path))
    data, labels = load_batch(os.path.join(folder, 'test_batch'))
    (_, _), (x_test, y_test) = load_cifar10(folder)
    np.testing.assert_array_equal(x_test, data.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_test[:, 0], labels)


def test_download_failure_is_one_clear_line(monkeypatch, tmp_path, capsys):
    message = ('URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: None '
               '-- [Errno -3] Temporary failure in name resolution')

    def no_network():
        raise Exception(message)  # noqa: TRY002 -- what Keras's get_file raises
    monkeypatch.setattr(cifar_cnn.keras.datasets.cifar10, 'load_data', no_network)
    with pytest.raises(CifarError, match=r'could not download CIFAR-10 .*--data-dir'):
        load_cifar10(None)
    assert cifar_cnn.main(['--figures-dir', str(tmp_path / 'f')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: could not download CIFAR-10')


def test_missing_folder():
    with pytest.raises(CifarError, match='no such folder'):
        load_cifar10('/nonexistent/cifar')


def test_empty_folder(tmp_path):
    with pytest.raises(CifarError, match='holds neither cifar-10-batches-py/ nor cifar-10-python.tar.gz'):
        load_cifar10(str(tmp_path))


def test_missing_file(tmp_path):
    folder, _ = make_cifar_folder(str(tmp_path))
    os.remove(os.path.join(folder, 'data_batch_3'))
    with pytest.raises(CifarError, match=r'data_batch_3: missing'):
        load_cifar10(str(tmp_path))


def test_truncated_file(tmp_path):
    folder, _ = make_cifar_folder(str(tmp_path))
    path = os.path.join(folder, 'test_batch')
    with open(path, 'rb') as f:
        head = f.read(5000)
    with open(path, 'wb') as f:
        f.write(head)
    with pytest.raises(CifarError, match=r'test_batch: truncated or not a CIFAR-10 batch file'):
        load_cifar10(folder)


def test_wrong_shape(tmp_path):
    folder, _ = make_cifar_folder(str(tmp_path))
    batch = {b'data': np.zeros((4, 1024), np.uint8), b'labels': [0, 1, 2, 3]}
    with open(os.path.join(folder, 'data_batch_2'), 'wb') as f:
        pickle.dump(batch, f)
    with pytest.raises(CifarError, match=r'data_batch_2: images have shape \(4, 1024\), expected \(N, 3072\) uint8'):
        load_cifar10(folder)


def test_labels_out_of_range(tmp_path):
    folder, _ = make_cifar_folder(str(tmp_path))
    write_batch(os.path.join(folder, 'data_batch_1'), np.zeros((3, 32, 32, 3), np.uint8), [0, 10, 2])
    with pytest.raises(CifarError, match=r'data_batch_1: labels must be integers 0-9, found 0..10'):
        load_cifar10(folder)


def test_label_count_mismatch(tmp_path):
    folder, _ = make_cifar_folder(str(tmp_path))
    batch = {b'data': np.zeros((3, 3072), np.uint8), b'labels': [0, 1]}
    with open(os.path.join(folder, 'test_batch'), 'wb') as f:
        pickle.dump(batch, f)
    with pytest.raises(CifarError, match=r'test_batch: 2 labels for 3 images'):
        load_cifar10(folder)


class Payload:
    """Unpickling this runs os.system(...): the classic pickle exploit."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_pickle_payload_is_refused_not_run(tmp_path):
    folder, _ = make_cifar_folder(str(tmp_path))
    marker = tmp_path / 'pwned'
    with open(os.path.join(folder, 'data_batch_1'), 'wb') as f:
        pickle.dump({b'data': Payload(marker), b'labels': []}, f)
    with pytest.raises(CifarError, match=r'data_batch_1: refused to load: it asks for (posix|os)\.system'):
        load_cifar10(folder)
    assert not marker.exists()


def test_tar_member_outside_folder_is_refused(tmp_path):
    path, _ = make_tarball(str(tmp_path))
    evil = tmp_path / 'evil.tar.gz'
    with tarfile.open(path) as src, tarfile.open(evil, 'w:gz') as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        info = tarfile.TarInfo('cifar-10-batches-py/../../escaped.txt')
        info.size = 3
        dst.addfile(info, io.BytesIO(b'hi\n'))
    os.replace(evil, path)
    with pytest.raises(CifarError, match=r"refused: member 'cifar-10-batches-py/../../escaped.txt' would extract"):
        load_cifar10(str(tmp_path))
    assert not (tmp_path.parent / 'escaped.txt').exists()


def test_truncated_tarball(tmp_path):
    path, _ = make_tarball(str(tmp_path))
    with open(path, 'rb') as f:
        head = f.read(os.path.getsize(path) // 2)
    with open(path, 'wb') as f:
        f.write(head)
    with pytest.raises(CifarError, match=r'cifar-10-python.tar.gz: truncated or not a .tar.gz archive'):
        load_cifar10(str(tmp_path))


def test_tarball_missing_member(tmp_path):
    path = tmp_path / 'cifar-10-python.tar.gz'
    with gzip.open(path, 'wb') as gz, tarfile.open(fileobj=gz, mode='w') as t:
        info = tarfile.TarInfo('cifar-10-batches-py/batches.meta')
        info.size = 2
        t.addfile(info, io.BytesIO(b'{}'))
    with pytest.raises(CifarError, match=r'has no cifar-10-batches-py/data_batch_1'):
        load_cifar10(str(tmp_path))


def test_limit_takes_the_first_images(cifar_dir, tmp_path):
    cnn = cifar_cnn.CifarCNN(data_dir=cifar_dir, figures_dir=str(tmp_path), limit=5)
    (x_train, y_train), (x_test, _) = load_cifar10(cifar_dir)
    assert cnn.train_imgs.shape == (5, 32, 32, 3) and cnn.test_imgs.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(cnn.train_imgs, x_train[:5])
    np.testing.assert_array_equal(cnn.train_labels, y_train[:5])
    np.testing.assert_array_equal(cnn.test_imgs, x_test[:5])
