"""Which oneDNN kernel runs each part of a training step of the post's network, and for how long: oneDNN's
own verbose log (ONEDNN_VERBOSE=1) over cifar_cnn.py's training, summed per primitive, in ms per step.

    python bench/onednn_log.py --data-dir /tmp/cifar10                            # the CPU as it is
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/onednn_log.py --data-dir /tmp/cifar10    # its AVX2 kernels only

Trains in a process of its own with the log on (your environment passed on, ONEDNN_MAX_CPU_ISA included):
64 steps to warm up, then --steps steps that it sums. Each row is one primitive of one layer: the pass
(forward; backward to the input; backward to the weights), oneDNN's implementation (its name ends in the ISA
it runs), the algorithm, the memory formats of source / weights / destination (acdb is NHWC, the layout
TensorFlow keeps; blocked formats such as Acdb8a are oneDNN's own) and the fused post-ops, then its time
and, for convolutions and dense layers, GFLOP/s. A second process, without the log, times the same steps:
what the step takes beyond the primitives is TensorFlow's (its other ops, its executor, the optimizer).
"""

import argparse
import ast
import collections
import math
import os
import re
import subprocess
import sys

from common import machine, training_run

# a verbose line: onednn_verbose,v1,primitive,exec,cpu,KIND,IMPLEMENTATION,PROP,FORMATS,ATTRIBUTES,AUX,SHAPE,MS
FIELDS = ('kind', 'implementation', 'prop', 'formats', 'attributes', 'aux', 'shape', 'ms')
PASSES = {'forward_training': 'forward', 'forward_inference': 'forward', 'backward_data': 'backward, input',
          'backward_weights': 'backward, weights'}


def child(args):
    """Trains with the log on (or off, timing the steps), printing the step count the parent divides by."""
    model, train = training_run(args.data_dir, args.steps)
    seconds = train()
    layers = [(layer.name, type(layer).__name__, tuple(layer.input.shape[1:]), tuple(layer.output.shape[1:]))
              for layer in model.layers]
    print(f'STEPS {args.steps} SECONDS {seconds:.6f} LAYERS {layers!r}', flush=True)


def layer_of(kind, shape, layers):
    """The layer a primitive belongs to, from its shape: a convolution's or pooling's input channels and height,
    a dense layer's inputs and units, a weights reorder's (out, in, height, width), a matmul's two dims."""
    def numbers(pattern):
        found = re.search(pattern, shape)
        return tuple(int(n) for n in found.groups()) if found else ()
    dims = tuple(int(n) for n in re.findall(r'\d+', shape))
    for name, kind_name, inputs, outputs in layers:
        if kind == 'convolution' and kind_name == 'Conv2D':
            if numbers(r'ic(\d+)oc(\d+)_ih(\d+)') == (inputs[-1], outputs[-1], inputs[0]):
                return name
        elif kind == 'pooling' and kind_name == 'MaxPooling2D':
            if numbers(r'ic(\d+)_ih(\d+)') == (inputs[-1], inputs[0]):
                return name
        elif kind == 'inner_product' and kind_name == 'Dense':
            if numbers(r'ic(\d+)oc(\d+)') == (inputs[-1], outputs[-1]):
                return name
        elif kind == 'reorder' and kind_name == 'Conv2D' and len(dims) == 4:
            if dims[:2] == (outputs[-1], inputs[-1]):
                return name
        elif kind == 'gemm_api' and kind_name == 'Dense' and {inputs[-1], outputs[-1]} <= set(dims):
            return name
    return '?'


def flops(kind, shape):
    """FLOPs of one call: 2 per multiply-add; the same for a convolution's three passes."""
    if kind == 'convolution':
        n = dict(re.findall(r'([a-z]+)(\d+)', shape.replace('_', '')))
        return 2 * math.prod(int(n[key]) for key in ('mb', 'oc', 'ic', 'oh', 'ow', 'kh', 'kw'))
    if kind == 'inner_product':
        n = dict(re.findall(r'([a-z]+)(\d+)', shape))
        return 2 * int(n['mb']) * int(n['ic']) * int(n['oc'])
    if kind == 'gemm_api':  # MxK:KxN
        m, k, _, n = (int(x) for x in re.findall(r'\d+', shape))
        return 2 * m * k * n
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True, help='a CIFAR-10 folder cifar_cnn.py --data-dir accepts')
    p.add_argument('--steps', type=int, default=320, help='training steps summed, after 64 to warm up')
    p.add_argument('--child', choices=['log', 'time'], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    def run(mode, **env):
        out = subprocess.run([sys.executable, __file__, '--data-dir', args.data_dir, '--steps', str(args.steps),
                              '--child', mode], env={**os.environ, **env}, capture_output=True, text=True, check=False)
        if out.returncode:
            sys.exit(f'the {mode} run failed:\n{out.stderr[-3000:]}')
        return out.stdout
    log = run('log', ONEDNN_VERBOSE='1')
    timed = re.search(r'^STEPS (\d+) SECONDS ([\d.]+) LAYERS (.*)$', run('time'), re.MULTILINE)
    steps, layers = int(timed.group(1)), ast.literal_eval(timed.group(3))
    step_ms = float(timed.group(2)) / steps * 1e3

    info = [line.split(',', 3)[3] for line in log.splitlines() if line.startswith('onednn_verbose,v1,info,')]
    calls = [dict(zip(FIELDS, line.split(',')[5:])) for line in log.splitlines()
             if line.startswith('onednn_verbose,v1,primitive,exec,cpu,')]
    first = next(layer for layer in layers if layer[1] == 'Conv2D')
    starts = [i for i, c in enumerate(calls) if c['kind'] == 'convolution' and c['prop'] == 'forward_training'
              and layer_of('convolution', c['shape'], [first]) == first[0]]  # one per step: the first convolution
    calls = calls[starts[-steps]:]  # the summed steps only, the warm-up's left out
    rows = collections.defaultdict(lambda: [0, 0.0])
    for c in calls:
        post_ops = re.search(r'attr-post-ops:(\S+)', c['attributes'])
        formats = ' / '.join(re.search(r'blocked:(\w+)', part).group(1) for part in c['formats'].split()
                             if part.startswith(('src', 'wei', 'dst')) and 'blocked:' in part)
        passed = {'reorder': 'weights reorder', 'gemm_api': 'backward (matmul)'}.get(c['kind'], PASSES.get(c['prop']))
        key = (layer_of(c['kind'], c['shape'], layers), c['kind'], passed or c['prop'], c['implementation'] or 'sgemm',
               c['aux'].replace('alg:', ''), formats,
               post_ops.group(1) if post_ops else '', c['shape'])
        rows[key][0] += 1
        rows[key][1] += float(c['ms'])
    total = sum(ms for _, ms in rows.values()) / steps
    order = [layer[0] for layer in layers] + ['?']
    print(f'{machine()}; ONEDNN_MAX_CPU_ISA={os.environ.get("ONEDNN_MAX_CPU_ISA", "(not set)")}; '
          f'{"; ".join(info[:3])}\n{steps} training steps of batch 32, summed after 64 to warm up. '
          'Formats: source / weights / destination, as oneDNN names them.\n')
    print('| layer | primitive | pass | implementation | algorithm | formats | post-ops | calls/step | ms/step '
          '| share | GFLOP/s |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for key, (count, ms) in sorted(rows.items(), key=lambda kv: (order.index(kv[0][0]), -kv[1][1])):
        layer, kind, passed, implementation, algorithm, formats, post_ops, shape = key
        gflops = f'{flops(kind, shape) * count / ms / 1e6:.0f}' if flops(kind, shape) else ''
        print(f'| {layer} | {kind} `{shape}` | {passed} | `{implementation}` | {algorithm} | {formats} | {post_ops} '
              f'| {count / steps:.2g} | {ms / steps:.3f} | {ms / steps / total:.0%} | {gflops} |')
    print(f'\noneDNN primitives: **{total:.2f} ms per step**; the same steps without the log: {step_ms:.2f} ms per '
          f'step, so {step_ms - total:.2f} ms ({(step_ms - total) / step_ms:.0%}) is spent outside oneDNN\'s kernels.')


if __name__ == '__main__':
    main()
