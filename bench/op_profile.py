"""Where a training step of the post's network goes, op by op: TensorFlow's profiler over cifar_cnn.py's
training, each op's time summed, in ms per step, grouped into forward, backward, loss and optimizer.

    python bench/op_profile.py --data-dir /tmp/cifar10                            # the CPU as it is
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/op_profile.py --data-dir /tmp/cifar10    # its AVX2 kernels only

64 steps to warm up, then --steps steps under tf.profiler.experimental (host tracer level 2: every op), the
same number again without it for the step time the profiler does not disturb. Ops are read from the trace
(the .xplane.pb the profiler writes, TensorBoard's input) on TensorFlow's compute threads: an op's time is
from its start to its end on the thread that ran it, oneDNN's kernels inside included. Ops of one layer,
pass and type are one row (Adam's ~27 ops per variable are one row per type).
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile

from common import machine, training_run


def read_ops(logdir, layer_names):
    """{(pass, layer, op type): total picoseconds} from the trace under `logdir`, and the ops' count."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # the trace's format (TensorFlow's own copy)
    space = xplane_pb2.XSpace()
    with open(max(glob.glob(os.path.join(logdir, 'plugins', 'profile', '*', '*.xplane.pb'))), 'rb') as f:
        space.ParseFromString(f.read())
    host = next(plane for plane in space.planes if plane.name == '/host:CPU')
    totals, count = collections.Counter(), 0
    for line in host.lines:
        if not line.name.startswith('tf_Compute'):
            continue
        for event in line.events:
            name = host.event_metadata[event.metadata_id].name  # "scope/.../node:OpType" for an op
            if ':' not in name or name.startswith(('ExecutorState', 'ThreadpoolListener')):
                continue
            node, op = name.rsplit(':', 1)
            node = node.rsplit('StatefulPartitionedCall/', 1)[-1]  # the step's body, not the loop around it
            totals[(pass_of(node), layer_of(node, layer_names), op)] += event.duration_ps
            count += 1
    return totals, count


def pass_of(node):
    if node.startswith('gradient_tape/'):
        return 'backward'
    for prefix, name in (('sequential', 'forward'), ('adam/', 'optimizer (Adam)'), ('compile_loss/', 'loss')):
        if node.startswith(prefix):
            return name
    return 'other (loop, metrics)'


def layer_of(node, layer_names):
    """The model layer a node belongs to: its scope names the layer, with the number TensorFlow adds to make
    each call's scope unique (conv2d_1_2 is conv2d_1 called again)."""
    for part in node.split('/'):
        if (base := re.sub(r'_\d+$', '', part)) in layer_names:
            return base
    return ''


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True, help='a CIFAR-10 folder cifar_cnn.py --data-dir accepts')
    p.add_argument('--steps', type=int, default=320, help='training steps profiled, after 64 to warm up')
    args = p.parse_args()
    model, train = training_run(args.data_dir, args.steps)
    import tensorflow as tf
    layer_names = [layer.name for layer in model.layers]
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir, options=tf.profiler.experimental.ProfilerOptions(host_tracer_level=2))
        profiled = train()
        tf.profiler.experimental.stop()
        totals, count = read_ops(logdir, layer_names)
    unprofiled = train()
    steps, total = args.steps, sum(totals.values())
    ms = lambda ps: ps / 1e9 / steps  # picoseconds over all the steps -> ms per step
    print(f'{machine()}; ONEDNN_MAX_CPU_ISA={os.environ.get("ONEDNN_MAX_CPU_ISA", "(not set)")}; TensorFlow '
          f'{tf.__version__}, threads: intra {os.environ.get("TF_NUM_INTRAOP_THREADS", "default")}, inter '
          f'{os.environ.get("TF_NUM_INTEROP_THREADS", "default")}.\n{steps} training steps of batch 32 profiled, '
          f'{count / steps:.0f} ops a step: {profiled / steps * 1e3:.2f} ms per step profiled, '
          f'{unprofiled / steps * 1e3:.2f} without the profiler; the ops add up to {ms(total):.2f}.\n')
    passes = collections.Counter()
    for (passed, _, _), ps in totals.items():
        passes[passed] += ps
    print('| pass | ms/step | share of the ops |\n|---|---|---|')
    for passed, ps in passes.most_common():
        print(f'| {passed} | {ms(ps):.2f} | {ps / total:.0%} |')
    print(f'| **all ops** | **{ms(total):.2f}** | 100% |\n')
    print('| pass | layer | op | ms/step | share of the ops |\n|---|---|---|---|---|')
    shown = 0
    for (passed, layer, op), ps in totals.most_common():
        if ms(ps) < 0.01:
            break
        shown += ps
        print(f'| {passed} | {layer} | `{op}` | {ms(ps):.3f} | {ps / total:.1%} |')
    print(f'| | | the rest ({len(totals) - len([1 for ps in totals.values() if ms(ps) >= 0.01])} rows under '
          f'0.01 ms) | {ms(total - shown):.3f} | {(total - shown) / total:.1%} |')


if __name__ == '__main__':
    sys.exit(main())
