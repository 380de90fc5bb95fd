"""Loading CIFAR-10: the three --data-dir layouts, the download and its cache, and what is refused."""

import hashlib
import io
import os
import pickle
import tarfile
import threading
import zlib

import numpy as np
import pytest
from conftest import make_cifar_folder, make_tarball, write_batch
from PIL import Image

import cifar_cnn
from cifar_cnn import CifarError, load_cifar10


def check_arrays(loaded, written):
    (x_train, y_train), (x_test, y_test) = loaded
    wx_train, wy_train, wx_test, wy_test = written
    assert x_train.dtype == np.uint8 and x_train.shape == (40, 32, 32, 3)
    assert x_test.dtype == np.uint8 and x_test.shape == (24, 32, 32, 3) and x_test.flags.c_contiguous
    assert y_train.dtype == np.uint8 and y_train.shape == (40, 1)
    assert y_test.dtype == np.uint8 and y_test.shape == (24, 1)
    np.testing.assert_array_equal(x_train, wx_train)  # same pixels, same order, channels last
    np.testing.assert_array_equal(x_test, wx_test)
    np.testing.assert_array_equal(y_train[:, 0], wy_train)
    np.testing.assert_array_equal(y_test[:, 0], wy_test)


@pytest.mark.parametrize('layout', ['folder holding cifar-10-batches-py', 'cifar-10-batches-py itself',
                                    'folder holding the .tar.gz'])
def test_every_data_dir_layout_gives_the_same_arrays(tmp_path, layout):
    if layout.endswith('.tar.gz'):
        _, written = make_tarball(str(tmp_path))
        data_dir = str(tmp_path)
    else:
        folder, written = make_cifar_folder(str(tmp_path))
        data_dir = folder if layout.endswith('itself') else str(tmp_path)
    check_arrays(load_cifar10(data_dir), written)


def test_same_as_keras_loader(tmp_path):
    """Keras's own batch reader (restricted unpickler) agrees with ours on the same file."""
    from keras.src.datasets.cifar import load_batch
    folder, _ = make_cifar_folder(str(tmp_path))
    data, labels = load_batch(os.path.join(folder, 'test_batch'))
    (_, _), (x_test, y_test) = load_cifar10(folder)
    np.testing.assert_array_equal(x_test, data.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_test[:, 0], labels)


# ─── The download and Keras's cache ──────────────────────────────────────────────────────────────

class FakeResponse(io.BytesIO):
    """What urlopen returns, serving `bytes`."""


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras home (KERAS_HOME); conftest's no_network fixture keeps the network away."""
    monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'keras'))
    return tmp_path / 'keras'


def test_no_network_is_one_clear_line(keras_home, capsys):
    with pytest.raises(CifarError, match=r'^could not download CIFAR-10 \(\[Errno -3\] Temporary failure in name '
                                         r'resolution\)\. Download .* --data-dir FOLDER_HOLDING_IT$'):
        load_cifar10(None)
    assert os.listdir(keras_home / 'datasets') == []  # no half-downloaded file left in the cache
    assert cifar_cnn.main(['--figures-dir', str(keras_home / 'figures')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: could not download CIFAR-10')


def test_download_is_checked_cached_and_read_once(keras_home, tmp_path, monkeypatch):
    archive, written = make_tarball(str(tmp_path / 'served'))
    with open(archive, 'rb') as f:
        served = f.read()
    monkeypatch.setattr(cifar_cnn.urllib.request, 'urlopen', lambda url, timeout: FakeResponse(b'<html>moved</html>'))
    with pytest.raises(CifarError, match=r'is not CIFAR-10 \(its SHA-256 differs\)'):
        load_cifar10(None)
    assert os.listdir(keras_home / 'datasets') == []
    monkeypatch.setattr(cifar_cnn, 'CIFAR_SHA256', hashlib.sha256(served).hexdigest())
    monkeypatch.setattr(cifar_cnn.urllib.request, 'urlopen', lambda url, timeout: FakeResponse(served))
    check_arrays(load_cifar10(None), written)
    assert (keras_home / 'datasets' / 'cifar-10-python.tar.gz').read_bytes() == served
    monkeypatch.setattr(cifar_cnn.urllib.request, 'urlopen', None)  # the second time: from the cache
    check_arrays(load_cifar10(None), written)


def test_kerases_own_unpacked_copy_is_used(keras_home):
    _, written = make_cifar_folder(str(keras_home / 'datasets' / 'cifar-10-batches-py-target'))
    check_arrays(load_cifar10(None), written)


@pytest.mark.parametrize(('damage', 'message'), [
    ('datasets is a file', r"datasets: Keras's download folder is a file, not a folder; move it away$"),
    ('archive is truncated', (r'cifar-10-python.tar.gz: truncated or not a .tar.gz archive .*\(in Keras\'s '
                              r'download cache: delete it to download CIFAR-10 again\)$')),
    ('unpacked batch is damaged', r'test_batch: damaged or not a CIFAR-10 batch file .*\(in Keras\'s download cache')])
def test_a_broken_cache_is_blamed_not_the_network(keras_home, damage, message):
    if damage == 'datasets is a file':
        keras_home.mkdir()
        (keras_home / 'datasets').write_text('')
    elif damage == 'archive is truncated':
        archive, _ = make_tarball(str(keras_home / 'datasets'))
        with open(archive, 'r+b') as f:
            f.truncate(os.path.getsize(archive) // 2)
    else:
        folder, _ = make_cifar_folder(str(keras_home / 'datasets'))
        with open(os.path.join(folder, 'test_batch'), 'r+b') as f:
            f.truncate(100)
    with pytest.raises(CifarError, match=message):
        load_cifar10(None)


# ─── What --data-dir refuses ─────────────────────────────────────────────────────────────────────

def refused(data_dir, message):
    with pytest.raises(CifarError, match=message) as error:
        load_cifar10(data_dir)
    return str(error.value)


@pytest.mark.parametrize(('setup', 'message'), [
    (lambda d: str(d / 'nonexistent'), r'--data-dir .*nonexistent: no such folder$'),
    (lambda d: (d / 'f').write_text('x') and str(d / 'f'), r'--data-dir .*f: is not a folder$'),
    (lambda d: str(d), r'holds neither cifar-10-batches-py/ nor cifar-10-python.tar.gz'),
    (lambda d: os.remove(make_cifar_folder(str(d))[0] + '/data_batch_3') or str(d), r'data_batch_3: no such file$'),
])
def test_a_data_dir_without_cifar10_says_what_is_missing(tmp_path, setup, message):
    refused(setup(tmp_path), message)


@pytest.mark.parametrize(('batch', 'message'), [
    # each names the file and what is wrong with it, blaming the right thing
    ({b'data': np.zeros((3, 3072), np.float32), b'labels': [0, 1, 2]}, r'pixels are float32, expected uint8'),
    ({b'data': np.zeros((4, 1024), np.uint8), b'labels': [0] * 4}, r'images have shape \(4, 1024\), expected \(N, 3072\)'),
    ({b'data': np.zeros((3, 3072), np.uint8), b'labels': np.zeros((3, 1), np.int64)},
     r'labels must be a flat list of whole numbers 0-9, found an array of shape \(3, 1\)'),
    ({b'data': np.zeros((3, 3072), np.uint8), b'labels': [[1], [2], [1, 2]]},
     r'labels must be a flat list of whole numbers 0-9, found a list holding a list'),
    ({b'data': np.zeros((3, 3072), np.uint8), b'labels': [0, 1]}, r'2 labels for 3 images'),
    ({b'data': np.zeros((3, 3072), np.uint8), b'labels': [0, 10, 2]}, r'labels must be 0-9, found 0..10'),
    ({b'data': np.zeros((3, 3072), np.uint8)}, r"not a CIFAR-10 batch file \(no b'labels' entry\)"),
    ([1, 2, 3], r'not a CIFAR-10 batch file \(it holds a list, not a dict\)')])
def test_a_bad_batch_file_is_named_with_what_is_wrong(tmp_path, batch, message):
    folder, _ = make_cifar_folder(str(tmp_path))
    with open(os.path.join(folder, 'data_batch_2'), 'wb') as f:
        pickle.dump(batch, f)
    assert refused(folder, message).startswith(os.path.join(folder, 'data_batch_2') + ': ')


def test_an_empty_data_set_is_refused(tmp_path):
    folder, _ = make_cifar_folder(str(tmp_path))
    write_batch(os.path.join(folder, 'test_batch'), np.zeros((0, 32, 32, 3), np.uint8), [])
    refused(folder, r'holds no test images$')


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
    refused(folder, r'data_batch_1: refused to load: it asks for (posix|os)\.system')
    assert not marker.exists()


def test_an_array_claiming_a_huge_size_is_refused_before_it_is_allocated(tmp_path):
    """numpy pickles rebuild an array as _reconstruct(ndarray, (0,), b'b') and then fill it: this
    one claims (10**12,) up front, which would allocate a terabyte, so anything but (0,) is refused."""
    folder, _ = make_cifar_folder(str(tmp_path))
    claim = (b'\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n'
             b'\x8a\x05' + (10**12).to_bytes(5, 'little') + b'\x85U\x01b\x87R.')
    (tmp_path / 'cifar-10-batches-py' / 'test_batch').write_bytes(claim)
    refused(folder, r'test_batch: refused to load: an array in a form numpy does not write')


@pytest.mark.parametrize('member', ['cifar-10-batches-py/../../escaped.txt', '/etc/escaped.txt'])
def test_a_tar_member_outside_its_folder_is_refused(tmp_path, member):
    path, _ = make_tarball(str(tmp_path))
    evil = tmp_path / 'evil.tar.gz'
    with tarfile.open(path) as src, tarfile.open(evil, 'w:gz') as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        info = tarfile.TarInfo(member)
        info.size = 3
        dst.addfile(info, io.BytesIO(b'hi\n'))
    os.replace(evil, path)
    refused(str(tmp_path), rf"refused: member '{member}' would extract outside its folder")


def test_a_tarball_that_unpacks_too_big_is_refused(tmp_path, monkeypatch):
    """A few kB that unpack to megabytes of zeros (a gzip bomb, scaled down with the limit)."""
    monkeypatch.setattr(cifar_cnn, 'MAX_ARCHIVE_BYTES', 1_000_000)
    with tarfile.open(tmp_path / 'cifar-10-python.tar.gz', 'w:gz') as tar:
        info = tarfile.TarInfo('cifar-10-batches-py/data_batch_1')
        info.size = 2_000_000
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert os.path.getsize(tmp_path / 'cifar-10-python.tar.gz') < 10_000
    refused(str(tmp_path), r'cifar-10-python.tar.gz: unpacks to more than 1,000,000 bytes')


# ─── Things that are not regular files: refused at once, never opened ────────────────────────────

def fifo(path):
    os.mkfifo(path)


def symlink_loop(path):
    os.symlink(path, path)


def folder(path):
    os.mkdir(path)


READERS = {  # each reader of a file the user names, and the file it reads
    'batch file': (lambda d: os.path.join(make_cifar_folder(d)[0], 'data_batch_1'),
                   lambda d, path: load_cifar10(d)),
    'tarball': (lambda d: os.path.join(d, 'cifar-10-python.tar.gz'), lambda d, path: load_cifar10(d)),
    '--load-model': (lambda d: os.path.join(d, 'm.keras'), lambda d, path: cifar_cnn.load_model(path)),
    '--predict': (lambda d: os.path.join(d, 'photo.png'), lambda d, path: cifar_cnn.read_image(path)),
}


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs named pipes')
@pytest.mark.parametrize('reader', READERS)
@pytest.mark.parametrize(('make', 'message'), [(fifo, 'is not a regular file'), (folder, 'is a folder, not a file'),
                                               (symlink_loop, 'cannot read it'), ('/dev/zero', 'is not a regular file')])
def test_what_is_not_a_regular_file_is_refused_without_waiting(tmp_path, reader, make, message):
    where, read = READERS[reader]
    path = where(str(tmp_path))
    if os.path.lexists(path):
        os.remove(path)
    if make == '/dev/zero':
        os.symlink('/dev/zero', path)
    else:
        make(path)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(pytest.raises(CifarError, read, str(tmp_path), path)),
                              daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), f'{reader} waited on a {make}'
    assert message in str(outcome[0].value)


def test_an_image_claiming_a_huge_size_is_refused_before_decoding(tmp_path):
    path = tmp_path / 'bomb.png'
    Image.new('L', (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = (100_000).to_bytes(4, 'big') * 2  # the IHDR chunk now claims 100,000 x 100,000
    data[29:33] = zlib.crc32(data[12:29]).to_bytes(4, 'big')  # with a checksum to match
    path.write_bytes(bytes(data))
    with pytest.raises(CifarError, match=r'bomb.png: claims more than 64,000,000 pixels|bomb.png: claims 100,000 x'):
        cifar_cnn.read_image(str(path))
