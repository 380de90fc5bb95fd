"""Fuzzing every reader of untrusted input: each case must load, or raise the program's own
CifarError (one line for the user). Any other exception is a bug, and fails with the case that
found it, so that it can be replayed.

A seeded mutation fuzzer starts from valid files (a batch pickle, the .tar.gz, a saved .keras, a
PNG and a JPEG) and applies byte flips, truncations, chunk edits, header-field edits and size
claims, calling the readers in-process. Hypothesis builds the structured cases: batch contents of
every type and shape, and option values. The default run takes seconds; for a long one:

    FUZZ_CASES=100000 FUZZ_SEED=1 .venv/bin/python -m pytest tests/test_fuzz.py -q
"""

import contextlib
import gzip
import io
import json
import os
import pickle
import pickletools
import random
import struct
import tarfile
import warnings
import zipfile
import zlib

import h5py
import numpy as np
import pytest
from conftest import batch_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import cifar_cnn
import cifar_cnn_readers as readers
from cifar_cnn import CifarError

CASES = int(os.environ.get('FUZZ_CASES', '1000'))  # per starting file
SEED = int(os.environ.get('FUZZ_SEED', '0'))
HUGE = [2**31 - 1, 2**32 - 1, 2**40, 2**63 - 1, 10**12, 0, 1, 0xFFFF]


# ─── Mutations ───────────────────────────────────────────────────────────────────────────────────

def flip_bits(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def set_bytes(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    return bytes(data)


def truncate(rng, data):
    return data[:rng.randrange(len(data))]


def splice(rng, data):
    """Deletes, repeats or inserts a chunk."""
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randint(1, 64))
    return rng.choice([data[:i] + data[j:], data[:j] + data[i:j] + data[j:],
                       data[:i] + os.urandom(j - i) + data[i:]])


def claim_size(rng, data):
    """Overwrites 2, 4 or 8 bytes with a large (or zero) number: a length or size field, wherever it is."""
    width = rng.choice([2, 4, 8])
    value = rng.choice(HUGE) % (1 << (8 * width))
    i = rng.randrange(max(1, len(data) - width))
    return data[:i] + value.to_bytes(width, rng.choice(['little', 'big'])) + data[i + width:]


BYTE_MUTATIONS = [flip_bits, set_bytes, truncate, splice, claim_size]


def mutate(rng, data):
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if data:
            data = rng.choice(BYTE_MUTATIONS)(rng, data)
    return data


def pickle_field_edit(rng, data):
    """Sets one opcode's fixed-width argument (a length, a memo index, an integer, a frame size) to
    a large, small or random value: the claims an unpickler may act on before reading the data."""
    try:
        fields = [(pos + 1, op.arg.n) for op, _, pos in pickletools.genops(data)
                  if op.arg is not None and op.arg.n in (1, 2, 4, 8)]
    except ValueError:
        return mutate(rng, data)
    if not fields:  # protocol 0 writes its numbers as text
        return mutate(rng, data)
    at, width = rng.choice(fields)
    value = rng.choice(HUGE + [rng.randrange(256)]) % (1 << (8 * width))
    return data[:at] + value.to_bytes(width, 'little') + data[at + width:]


def png_chunks_fixed(data):
    """Recomputes every PNG chunk's CRC, so that edits reach the decoder instead of the checksum test."""
    out, i = bytearray(data[:8]), 8
    while i + 8 <= len(data):
        length = int.from_bytes(data[i:i + 4], 'big')
        body = data[i + 4:i + 8 + length]
        if i + 12 + length > len(data):
            return bytes(out) + data[i:]
        out += data[i:i + 4] + body + zlib.crc32(body).to_bytes(4, 'big')
        i += 12 + length
    return bytes(out) + data[i:]


def png_header_edit(rng, data):
    """Edits IHDR's width, height, bit depth, colour type or interlace (with a valid CRC)."""
    data = bytearray(data)
    field = rng.choice([(16, 4), (20, 4), (24, 1), (25, 1), (28, 1)])
    value = rng.choice(HUGE + [rng.randrange(256)]) % (1 << (8 * field[1]))
    data[field[0]:sum(field)] = value.to_bytes(field[1], 'big')
    return png_chunks_fixed(bytes(data))


def jpeg_header_edit(rng, data):
    """Edits the frame header (SOF0): precision, height, width or component count."""
    at = data.find(b'\xff\xc0')
    data = bytearray(data)
    offset, width = rng.choice([(4, 1), (5, 2), (7, 2), (9, 1)])
    data[at + offset:at + offset + width] = (rng.choice(HUGE + [rng.randrange(256)]) % (1 << 8 * width)).to_bytes(
        width, 'big')
    return bytes(data)


def tar_header_edit(rng, tar_bytes):
    """Edits a tar header field in the unpacked archive: size, name, type or link name."""
    headers = [i for i in range(0, len(tar_bytes) - 512, 512) if tar_bytes[i + 257:i + 262] == b'ustar']
    at = rng.choice(headers)
    data = bytearray(tar_bytes)
    field = rng.choice(['size', 'name', 'type', 'link'])
    if field == 'size':
        data[at + 124:at + 136] = rng.choice([b'77777777777\0', b'\x80' + bytes(3) + (2**62).to_bytes(8, 'big'),
                                              b'00000000000\0', b'zz\0' + bytes(9)])
    elif field == 'name':
        data[at:at + 100] = rng.choice([b'../../x', b'/etc/passwd', b'cifar-10-batches-py/data_batch_1',
                                        b'cifar-10-batches-py/../test_batch', os.urandom(100)]).ljust(100, b'\0')[:100]
    elif field == 'type':
        data[at + 156:at + 157] = rng.choice([b'1', b'2', b'3', b'5', b'6', b'x', b'L', b'K', b'g'])
    else:
        data[at + 157:at + 257] = rng.choice([b'../../../etc', b'/etc/shadow', b'data_batch_2']).ljust(100, b'\0')
    # the header checksum, so that tarfile reads the edit instead of rejecting the block
    data[at + 148:at + 156] = b' ' * 8
    data[at + 148:at + 156] = f'{sum(data[at:at + 512]):06o}\0 '.encode()
    return bytes(data)


# ─── Starting files ──────────────────────────────────────────────────────────────────────────────

def small_batch(rng, n=4):
    images = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = [rng.randrange(10) for _ in range(n)]
    return batch_bytes(images, np.array(labels) if rng.random() < 0.3 else labels,
                       protocol=rng.randrange(pickle.HIGHEST_PROTOCOL + 1))  # every protocol pickle writes


def tar_of_batches(rng):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
        for name in readers.BATCH_FILES:
            data = small_batch(rng, 2)
            info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def picture(fmt, mode='RGB', size=(20, 14), **options):
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    if mode in ('I;16', 'F'):
        grey = np.asarray(img.convert('L'), np.float32)
        img = Image.fromarray((grey * 257).astype(np.uint16)) if mode == 'I;16' else Image.fromarray(grey / 255)
    else:
        img = img.convert(mode)
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def outcome(read, *args):
    """Runs one case: None if it loaded, 'refused' if it raised CifarError; anything else propagates."""
    try:
        read(*args)
    except CifarError as e:
        assert '\n' not in str(e) and len(str(e)) < 600  # one line for the user
        return 'refused'
    return None


def fuzz(tmp_path, name, seeds, mutate_one, read, cases=CASES):
    """`cases` mutants of the starting files `seeds`, each written to a file and read by `read(path)`.
    Returns how many loaded, so that a test can check the fuzzer is not refusing everything."""
    rng, loaded = random.Random(f'{SEED}-{name}'), 0
    path = str(tmp_path / name)
    for case in range(cases):
        data = mutate_one(rng, rng.choice(seeds))
        with open(path, 'wb') as f:
            f.write(data)
        try:
            loaded += outcome(read, path) is None
        except Exception as e:  # noqa: BLE001 -- the finding: report the case to replay, then fail
            (tmp_path / 'finding').write_bytes(data)
            pytest.fail(f'{name} case {case} (FUZZ_SEED={SEED}) raised {type(e).__name__}: {e}; '
                        f'input kept in {tmp_path / "finding"}')
    return loaded


# ─── The fuzzers ─────────────────────────────────────────────────────────────────────────────────

def test_batch_files(tmp_path):
    seeds = [small_batch(random.Random(i)) for i in range(4)]
    loaded = fuzz(tmp_path, 'data_batch_1', seeds,
                  lambda rng, data: pickle_field_edit(rng, data) if rng.random() < 0.3 else mutate(rng, data),
                  lambda path: readers.read_batch(path, readers.read_file(path, path, readers.MAX_BATCH_BYTES)))
    assert 0 < loaded < CASES


@pytest.mark.parametrize('layer', ['gzip stream', 'tar headers'])
def test_tarballs(tmp_path, layer):
    tars = [tar_of_batches(random.Random(i)) for i in range(2)]
    if layer == 'gzip stream':
        seeds = [gzip.compress(t) for t in tars]
        mutate_one = mutate
    else:  # mutations under a valid gzip wrapper reach the tar reader itself
        seeds = tars
        def mutate_one(rng, tar):
            edited = tar_header_edit(rng, tar) if rng.random() < 0.5 else mutate(rng, tar)
            return gzip.compress(edited, compresslevel=1)
    fuzz(tmp_path, 'cifar-10-python.tar.gz', seeds, mutate_one, readers.read_tarball, cases=CASES // 2)


def exif():
    """EXIF as cameras write it: an orientation (read_image turns the image upright by it) and tags of every
    type: text, whole numbers, fractions."""
    tags = Image.Exif()
    tags.update({0x0112: 6, 0x010F: 'Camera', 0x0131: 'Software 1.0', 0x0128: 2, 0x011A: 72.0, 0x0132: '2026:11:30'})
    return tags.tobytes()


IMAGE_SEEDS = {  # every format read_image opens, in the modes and encodings Pillow writes it, with and without EXIF
    'PNG': [('RGB', {}), ('P', {}), ('RGBA', {}), ('L', {'transparency': 7}), ('I;16', {}), ('1', {}),
            ('RGB', {'exif': exif()})],
    'JPEG': [('RGB', {}), ('L', {}), ('CMYK', {}), ('RGB', {'progressive': True}), ('RGB', {'exif': exif()})],
    'GIF': [('P', {}), ('L', {'transparency': 3})],
    'BMP': [('RGB', {}), ('P', {}), ('1', {}), ('RGBA', {})],
    'WEBP': [('RGB', {}), ('RGBA', {'lossless': True}), ('RGB', {'exif': exif()})],
    'TIFF': [('RGB', {}), ('RGB', {'compression': 'tiff_deflate'}), ('RGB', {'compression': 'tiff_lzw'}),
             ('L', {'compression': 'packbits'}), ('I;16', {}), ('F', {}), ('CMYK', {}),
             ('1', {'compression': 'group4'}),
             ('RGB', {'exif': exif()})]}


@pytest.mark.parametrize('fmt', readers.IMAGE_FORMATS)
def test_images(tmp_path, fmt):
    seeds = [picture(fmt, mode, **options) for mode, options in IMAGE_SEEDS[fmt]]
    edit = {'PNG': png_header_edit, 'JPEG': jpeg_header_edit}.get(fmt)

    def mutate_one(rng, data):
        data = edit(rng, data) if edit and rng.random() < 0.3 else mutate(rng, data)
        return png_chunks_fixed(data) if fmt == 'PNG' and rng.random() < 0.7 else data
    loaded = fuzz(tmp_path, f'photo.{fmt.lower()}', seeds, mutate_one, readers.read_image, cases=CASES // 3)
    assert loaded > 0


EXIF_TAGS = [0x0112, 0x010F, 0x0110, 0x0128, 0x011A, 0x0131, 0x0132, 0x8769, 0x8825, 0x0100, 0xA002, 0x9003]


def exif_of_any_types(rng):
    """An EXIF block whose tags (orientation, make, resolution, ...) each carry a type of TIFF's twelve, a
    count and a value at random: what a camera or an editor may write, and what a damaged file holds."""
    tags = sorted(rng.sample(EXIF_TAGS[1:], rng.randint(1, len(EXIF_TAGS) - 1)) + [0x0112])
    data = b''.join(struct.pack('<HHIHH', tag, 3, 1, rng.randint(2, 8), 0) if tag == 0x0112 and rng.random() < 0.8
                    else struct.pack('<HHI', tag, rng.randint(1, 12), rng.choice([0, 1, 2, 4, 9, 2**31]))
                    + rng.choice([struct.pack('<I', rng.choice([0, 6, 70000, 2**32 - 1])), rng.randbytes(4)])
                    for tag in tags)  # mostly a valid orientation: then the image is turned, and its EXIF written anew
    header = b'Exif\x00\x00II*\x00\x08\x00\x00\x00' + struct.pack('<H', len(tags))
    return header + data + b'\x00' * 4 + rng.randbytes(64)


@pytest.mark.parametrize('fmt', ['JPEG', 'PNG', 'WEBP'])
def test_images_with_exif_of_any_tag_types(tmp_path, fmt):
    """read_image turns a picture upright by its EXIF, so EXIF's every tag is read: whatever types they claim."""
    rng = random.Random(f'{SEED}-exif-{fmt}')
    path = tmp_path / f'photo.{fmt.lower()}'
    for case in range(CASES // 10):
        path.write_bytes(picture(fmt, exif=exif_of_any_types(rng)))
        try:
            outcome(readers.read_image, str(path))
        except Exception as e:  # noqa: BLE001 -- the finding
            pytest.fail(f'exif case {case} (FUZZ_SEED={SEED}) raised {type(e).__name__}: {e}; kept in {path}')


def test_keras_files(saved_model, tmp_path):
    """Byte-level damage to a saved model: the zip's checks stop nearly all of it before Keras."""
    with open(saved_model, 'rb') as f:
        seed = f.read()
    fuzz(tmp_path, 'model.keras', [seed], mutate, lambda path: readers.read_keras_file(path, path))


CONFIG_EDITS = 15 if CASES <= 1000 else CASES // 100  # each that passes the checks costs a Keras load


def test_keras_configs(saved_model, tmp_path):
    """Edits of config.json inside a whole zip: what reaches Keras must load or be refused."""
    with zipfile.ZipFile(saved_model) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members['config.json'])
    rng = random.Random(f'{SEED}-config')
    path = tmp_path / 'edited.keras'
    for case in range(CONFIG_EDITS):
        edited = json.loads(json.dumps(config))
        for _ in range(rng.randint(1, 3)):
            edit_json(rng, edited)
        with zipfile.ZipFile(path, 'w') as zf:
            for name, data in members.items():
                zf.writestr(name, json.dumps(edited) if name == 'config.json' else data)
        try:
            outcome(cifar_cnn.load_model, str(path))
        except Exception as e:  # noqa: BLE001 -- the finding
            pytest.fail(f'config case {case} (FUZZ_SEED={SEED}) raised {type(e).__name__}: {e}; '
                        f'edited config: {json.dumps(edited)[:3000]}')


def test_models_keras_itself_writes(tmp_path):
    """Random layer stacks, dtype policies and build states, saved by Keras: each loads (only the
    network --save-model writes can) or is refused with a line, and quickly: nothing of the file is
    handed to Keras."""
    rng, path = random.Random(f'{SEED}-stacks'), str(tmp_path / 'stack.keras')
    layers = cifar_cnn.keras.layers
    palette = [lambda: layers.Conv2D(rng.choice([8, 32, 64]), 3, activation=rng.choice(['relu', None])),
               lambda: layers.MaxPool2D(2), layers.Flatten, lambda: layers.Dense(rng.choice([10, 64])),
               layers.BatchNormalization, lambda: layers.Dropout(rng.choice([0.1, 0.5])),
               lambda: layers.RandomFlip('horizontal')]
    post = [lambda: layers.Conv2D(32, 3, activation='relu'), lambda: layers.MaxPool2D(2),
            lambda: layers.Conv2D(64, 3, activation='relu'), lambda: layers.MaxPool2D(2),
            lambda: layers.Conv2D(64, 3, activation='relu'), layers.Flatten,
            lambda: layers.Dense(64, activation='relu'), lambda: layers.Dense(10)]
    loaded = 0
    for case in range(STACKS):
        stack = [make() for make in post] if case % 4 == 0 else \
            [rng.choice(palette)() for _ in range(rng.randint(1, 12))]
        policy = rng.choice(['float32', 'mixed_bfloat16'])
        cifar_cnn.keras.mixed_precision.set_global_policy(policy)  # conftest restores it
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # Keras, on saving a model never built
            built = rng.random() < 0.8
            try:
                cifar_cnn.keras.Sequential(([cifar_cnn.keras.Input((32, 32, 3))] if built else []) + stack).save(path)
            except ValueError:  # a stack Keras cannot build on 32x32 images: nothing to load
                continue
        try:
            loaded += outcome(cifar_cnn.load_model, path) is None
        except Exception as e:  # noqa: BLE001 -- the finding
            pytest.fail(f'stack case {case} (FUZZ_SEED={SEED}) raised {type(e).__name__}: {e}; '
                        f'{[type(layer).__name__ for layer in stack]}, {policy}, built={built}')
    assert loaded > 0  # the post's network, at least


STACKS = 12 if CASES <= 1000 else CASES // 100


def weights_edit(rng, h5_bytes):
    """One edit of the HDF5 inside a .keras file, through h5py: a weight's shape, dtype, chunks,
    compression, fill value, storage or values; an attribute; an extra or missing group."""
    buffer = io.BytesIO(h5_bytes)
    with h5py.File(buffer, 'a') as f:
        paths = []
        f['layers'].visititems(lambda name, obj: paths.append(name) if isinstance(obj, h5py.Dataset) else None)
        where = rng.choice(paths)
        old = f['layers'][where]
        edit = rng.choice(['shape', 'dtype', 'chunks', 'fill', 'attribute', 'extra', 'missing', 'group', 'values'])
        if edit == 'attribute':
            old.attrs[rng.choice(['name', 'x'])] = rng.choice([np.zeros(1000), 'x' * 1000, 3])
            return _closed(f, buffer)
        if edit == 'extra':
            f['layers'].create_group(f'extra_{rng.randrange(9)}/vars').create_dataset('0', data=np.zeros(3, 'f4'))
            return _closed(f, buffer)
        shape, data = old.shape, old[()]
        del f['layers'][where]
        if edit == 'missing':
            return _closed(f, buffer)
        if edit == 'group':
            f['layers'].create_group(where)
            return _closed(f, buffer)
        kwargs = {'shape': shape, 'dtype': 'f4'}
        if edit == 'values':  # numbers training would not write there: a negative variance, huge, NaN
            kwargs = {'data': (data * rng.choice([-1.0, 0.0, 1e30, -1e30, np.nan])).astype('f4')}
        elif edit == 'shape':
            kwargs['shape'] = rng.choice([(10**9,), (2**31, 2), (), (0,), shape[::-1], (*shape, 1)])
            kwargs['chunks'] = True if kwargs['shape'] not in ((), (0,)) else None
        elif edit == 'dtype':
            kwargs['dtype'] = rng.choice(['f8', 'f2', '>f4', 'i4', 'u1', 'S4', h5py.string_dtype()])
        elif edit == 'chunks':
            kwargs.update(chunks=True, compression=rng.choice(['gzip', 'lzf', None]), data=data)
            del kwargs['shape']
        else:
            kwargs['fillvalue'] = rng.choice([np.nan, np.inf, 1e30, 0.0])
        f['layers'].create_dataset(where, **kwargs)
    return buffer.getvalue()


def _closed(f, buffer):
    f.close()
    return buffer.getvalue()


def test_weights_inside_keras_files(saved_model, tmp_path):
    """The HDF5 inside a whole zip, edited through h5py or byte by byte: what reaches h5py must load
    or be refused, whatever its datasets claim."""
    with zipfile.ZipFile(saved_model) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}

    def mutate_one(rng, data):
        weights = weights_edit(rng, members['model.weights.h5']) if rng.random() < 0.6 else \
            mutate(rng, members['model.weights.h5'])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, 'w') as zf:
            for name, member in members.items():
                zf.writestr(name, weights if name == 'model.weights.h5' else member)
        return buffer.getvalue()
    fuzz(tmp_path, 'weights.keras', [b''], mutate_one, cifar_cnn.load_model, cases=WEIGHT_EDITS)


WEIGHT_EDITS = 60 if CASES <= 1000 else CASES // 20


def edit_json(rng, node):
    """Replaces one value somewhere in a JSON tree with something else of any type, or deletes it."""
    parent, key = None, None
    while isinstance(node, (dict, list)) and node and rng.random() < 0.85:
        keys = list(node) if isinstance(node, dict) else range(len(node))
        parent, key = node, rng.choice(list(keys))
        node = node[key]
    if parent is None:
        return
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[key]
        return
    parent[key] = rng.choice([None, True, -1, 0, 3, 2**31, 1e308, 'relu', 'Conv2D', 'keras.layers', [], {},
                              [32, 32, 3], [None, 28, 28, 1], {'class_name': 'Dense', 'config': {}},
                              'x' * 1000, node if not isinstance(node, (int, float)) else -node])


# ─── Structured cases (Hypothesis) ───────────────────────────────────────────────────────────────

scalars = st.one_of(st.none(), st.booleans(), st.integers(-20, 2**70), st.floats(allow_nan=True), st.binary(max_size=8),
                    st.text(max_size=8))
labels = st.one_of(st.lists(st.integers(-3, 12), max_size=6),
                   st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner),
                                max_leaves=12),
                   hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)))
data = st.one_of(hnp.arrays(st.sampled_from([np.uint8, np.int8, np.uint16, np.float32, np.float64, np.bool_]),
                            st.one_of(st.just((3, 3072)), st.just((0, 3072)),
                                      hnp.array_shapes(min_dims=0, max_dims=4, max_side=5))),
                 hnp.arrays(np.uint8, st.tuples(st.integers(0, 6), st.just(3072))), scalars)


@settings(max_examples=300 if CASES <= 1000 else CASES // 10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entries=st.dictionaries(st.sampled_from([b'data', b'labels', b'batch_label', 'data', b'filenames', 0]),
                               st.one_of(data, labels), max_size=5),
       protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_batch_contents_of_every_type_and_shape(entries, protocol):
    """Whatever a batch holds loads to valid arrays or is refused with a message."""
    raw = pickle.dumps(entries, protocol=protocol)
    try:
        images, labels_ = readers.read_batch('data_batch_1', raw)
    except CifarError as e:
        assert str(e).startswith('data_batch_1: ') and '\n' not in str(e)
        return
    assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
    assert labels_.dtype == np.uint8 and labels_.shape == (len(images), 1) and (labels_ <= 9).all()


OPTION_VALUES = st.one_of(st.text(max_size=12), st.sampled_from(['0', '1', '-1', '1e3', 'nan', 'inf', '0.5', '4096',
                                                                 '10001',
                                                                 '50001', str(2**32), 'x.keras', '', 'x' * 5000]))
OPTIONS = ['--epochs', '--batch-size', '--seed', '--data-dir', '--figures-dir', '--limit', '--precision',
           '--save-model', '--load-model', '--predict', '--dropout', '--validation-split', '--tensorboard']
FLAGS = ['--show', '--augment', '--batch-norm', '--cosine-decay']


@settings(max_examples=500 if CASES <= 1000 else CASES // 10, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.sampled_from(OPTIONS), OPTION_VALUES), st.tuples(st.sampled_from(FLAGS))),
                max_size=5))
def test_options(pairs):
    """Any option values, in any combination: a usable configuration or a usage error (exit 2)."""
    argv, err = [token for pair in pairs for token in pair], io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = cifar_cnn.parse_args(argv)
    except SystemExit as e:
        assert e.code == 2 and 'error:' in err.getvalue()
        return
    assert 1 <= args.epochs <= 10_000 and 1 <= args.batch_size <= 4096
    assert args.precision in ('auto', 'float32', 'mixed')
    assert args.limit is None or 1 <= args.limit <= 50_000
    assert args.dropout is None or 0 <= args.dropout < 1
    assert args.validation_split is None or 0 <= args.validation_split < 1
    assert args.seed is None or 0 <= args.seed < 2**32
    assert not (args.load_model and (args.save_model or args.augment))
    for path in (args.data_dir, args.figures_dir, args.save_model, args.load_model, args.tensorboard):
        assert path is None or (0 < len(path) <= 4096 and '\0' not in path)
