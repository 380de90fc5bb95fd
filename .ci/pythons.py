"""Which Pythons install requirements.txt, on which systems: for each Python 3.10-3.14 and each system below, pip
resolves requirements.txt as it would install it there, dependencies and all, from wheels only (what a reader
without a compiler gets), reading the packages' metadata and installing nothing:

    pip install --isolated --dry-run --python-version X --platform TAG --only-binary=:all: \
        --ignore-installed --target TMP --report - -r requirements.txt

and this prints a Markdown table: the versions pip picks for tensorflow, keras, numpy and matplotlib, or its
error line. Run it from anywhere, with any Python whose pip is 24.2 or later (before 24.2, `pip install` checked
each package's Requires-Python against the Python running pip, not --python-version: pypa/pip#12216):

    python .ci/pythons.py                       # every system below
    python .ci/pythons.py --system linux        # one, or a few

pip evaluates a dependency's environment markers (`; sys_platform == "win32"`) as on the machine running it, so a
dependency that only another system needs is not resolved here; the wheels themselves are those of that system.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile

PYTHONS = ['3.10', '3.11', '3.12', '3.13', '3.14']
SHOWN = ['tensorflow', 'keras', 'numpy', 'matplotlib']  # the versions the table names
SYSTEMS = {  # pip's --platform tags for each, as a reader's machine takes them
    'linux': ['manylinux1_x86_64', 'manylinux2010_x86_64', 'manylinux2014_x86_64',
              *(f'manylinux_2_{minor}_x86_64' for minor in range(5, 36))],  # glibc 2.35: Ubuntu 22.04, Colab
    'macos-arm64': ['macosx_14_0_arm64'],  # pip adds the macOS versions before 14 and universal2
    'macos-x86_64': ['macosx_14_0_x86_64'],
    'windows': ['win_amd64']}
OLDEST_PIP = (24, 2)
# --isolated: PyPI alone, as a reader's pip sees it, without this machine's pip configuration (another index, a
# wheel folder); but with the certificates it was told to trust, where a proxy needs them
CERTIFICATES = ['--cert', os.environ['PIP_CERT']] if os.environ.get('PIP_CERT') else []
REQUIREMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'requirements.txt')


def resolve(python, system):
    """(the versions pip picks, by lower-case name; or None) and pip's last error line (or '')."""
    with tempfile.TemporaryDirectory() as target:
        command = [sys.executable, '-m', 'pip', 'install', '--isolated', *CERTIFICATES, '--dry-run', '--quiet',
                   '--ignore-installed', '--python-version', python, *(f'--platform={tag}' for tag in SYSTEMS[system]),
                   '--only-binary=:all:', '--target', target, '--report', '-', '-r', REQUIREMENTS]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode == 0:
        report = json.loads(result.stdout)
        return {item['metadata']['name'].lower(): item['metadata']['version'] for item in report['install']}, ''
    errors = [line.removeprefix('ERROR: ') for line in result.stderr.splitlines() if line.startswith('ERROR: ')]
    return None, (errors or result.stderr.strip().splitlines() or [f'pip exited {result.returncode}'])[-1]


def shown(version):
    """A version as the table shows it, a pre-release marked: pip 26.3 takes one where no release fits (25.2 not)."""
    return f'{version} (pre-release)' if re.search(r'(a|b|rc|\.dev)\d+$', version) else version


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--system', choices=list(SYSTEMS), action='append', help='only these (default: all)')
    systems = parser.parse_args().system or list(SYSTEMS)
    pip = subprocess.run([sys.executable, '-m', 'pip', '--version'], check=False, capture_output=True, text=True)
    pip = (pip.stdout.split() + ['?', '?'])[1]  # 'pip 26.3 from ...'
    if tuple(int(part) for part in re.findall(r'\d+', pip)[:2]) < OLDEST_PIP:
        sys.exit(f'error: needs pip {".".join(map(str, OLDEST_PIP))} or later, which checks Requires-Python against '
                 f'--python-version (this is pip {pip}): {sys.executable} -m pip install -U pip')
    cases = [(python, system) for python in PYTHONS for system in systems]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # each waits on the index, mostly
        results = dict(zip(cases, pool.map(lambda case: resolve(*case), cases)))
    print(f'{datetime.date.today().isoformat()}, pip {pip}, wheels only:\n')
    print(f'| Python | system | installs | {" | ".join(SHOWN)} | pip\'s error |')
    print(f'|---|---|---|{"---|" * len(SHOWN)}---|')
    for (python, system), (versions, error) in results.items():
        picked = [shown(versions.get(name, '-')) for name in SHOWN] if versions else [''] * len(SHOWN)
        error = error.replace('|', '\\|')
        print(f'| {python} | {system} | {"yes" if versions else "**no**"} | {" | ".join(picked)} | '
              f'{f"`{error}`" if error else ""} |')
    return 0 if any(versions for versions, _ in results.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
