"""Execute a notebook's code cells in order, without Jupyter, and optionally store their outputs.

``python experiments/run_notebook.py experiments/posterior_sample.ipynb --write`` runs every code cell in
one namespace, captures what each prints and the matplotlib figures it leaves open (as PNG), and writes
them back as the cells' outputs. The tests call :func:`execute` to check that the notebook still runs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import sys
from pathlib import Path


def _figures() -> list[dict]:
    if "matplotlib.pyplot" not in sys.modules:
        return []
    import matplotlib.pyplot as plt

    outputs = []
    for number in plt.get_fignums():
        buffer = io.BytesIO()
        plt.figure(number).savefig(buffer, format="png", dpi=72, bbox_inches="tight")
        outputs.append({"output_type": "display_data", "metadata": {},
                        "data": {"image/png": base64.b64encode(buffer.getvalue()).decode(), "text/plain": ["<Figure>"]}})
    plt.close("all")
    return outputs


def execute(path: str | Path, write: bool = False) -> list[list[dict]]:
    """Run the code cells of ``path`` in order; returns (and with ``write`` stores) each cell's outputs."""
    import matplotlib

    matplotlib.use("Agg")
    path = Path(path)
    notebook = json.loads(path.read_text())
    namespace: dict = {"__name__": "__main__"}
    count, all_outputs = 0, []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        count += 1
        source = "".join(cell["source"])
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            try:
                exec(compile(source, f"{path.name}[cell {count}]", "exec"), namespace)
            except Exception as e:
                raise RuntimeError(f"{path}: code cell {count} failed: {type(e).__name__}: {e}") from e
        outputs = []
        if stdout.getvalue():
            outputs.append({"output_type": "stream", "name": "stdout",
                            "text": stdout.getvalue().splitlines(keepends=True)})
        outputs += _figures()
        cell["outputs"], cell["execution_count"] = outputs, count
        all_outputs.append(outputs)
    if write:
        path.write_text(json.dumps(notebook, indent=1) + "\n")
    return all_outputs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook")
    parser.add_argument("--write", action="store_true", help="store the outputs in the notebook")
    args = parser.parse_args()
    execute(args.notebook, write=args.write)
