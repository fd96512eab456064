"""Executes notebooks in place with the tslab kernel (nbclient, Debian's python3-nbclient).

    /usr/bin/python3 execute.py [--timeout SECONDS] [--check] NOTEBOOK...

Each notebook runs in a fresh kernel with its own folder as working directory (as in Jupyter). A cell that raises,
or that tslab cannot compile (a type error), stops the run: the notebook file is left as it was and the exit
status is 1. With --check nothing is written (the run only has to pass). Per-cell timing metadata is not recorded
and consecutive console.log outputs are stored as one, so re-running changes only what the outputs say.
"""
import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError


def merge_streams(outputs):
    """tslab sends every console.log as its own stream message; Jupyter shows consecutive ones as one block, and
    storing them as one keeps the file (and its diffs) small."""
    merged = []
    for output in outputs:
        if (output.output_type == 'stream' and merged and merged[-1].output_type == 'stream'
                and merged[-1].name == output.name):
            merged[-1].text += output.text
        else:
            merged.append(output)
    return merged


def execute(path, timeout, check):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name='tslab', timeout=timeout, record_timing=False,
                            resources={'metadata': {'path': os.path.dirname(os.path.abspath(path))}})
    start = time.monotonic()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as error:
        print(f'{path}: FAILED after {time.monotonic() - start:.0f} s\n{error}', file=sys.stderr)
        # tslab reports compile errors on stderr with an empty error reply: show what the failing cell printed.
        ran = [cell for cell in nb.cells if cell.get('execution_count') is not None]
        if ran:
            for output in ran[-1].get('outputs', []):
                if output.output_type == 'stream' and output.name == 'stderr':
                    print(output.text, end='', file=sys.stderr)
                elif output.output_type == 'error':
                    print('\n'.join(output.get('traceback', [])) or output.get('evalue', ''), file=sys.stderr)
        return False
    for cell in nb.cells:
        cell.get('metadata', {}).pop('execution', None)
        if cell.cell_type == 'code':
            cell.outputs = merge_streams(cell.outputs)
    nbformat.validate(nb)
    if not check:
        nbformat.write(nb, path)
    print(f'{path}: {len(nb.cells)} cells executed in {time.monotonic() - start:.0f} s'
          + (' (--check: not saved)' if check else ''))
    return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--timeout', type=int, default=600, help='seconds per cell (default 600)')
    parser.add_argument('--check', action='store_true', help='execute only; do not save the outputs')
    parser.add_argument('notebooks', nargs='+')
    args = parser.parse_args()
    ok = [execute(path, args.timeout, args.check) for path in args.notebooks]
    sys.exit(0 if all(ok) else 1)


if __name__ == '__main__':
    main()
