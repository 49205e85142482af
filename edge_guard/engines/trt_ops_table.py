"""Regenerate ``trt10_onnx_ops.json`` from onnx-tensorrt's ``docs/operators.md``.

The JSON is data in the repository; this module only documents (and repeats) how it was
made, so a newer TensorRT's table can replace it::

    git -C onnx-tensorrt show 10.1-GA:docs/operators.md > operators.md
    python -m edge_guard.engines.trt_ops_table operators.md --commit <sha> --branch 10.1-GA \\
        > edge_guard/engines/trt10_onnx_ops.json
"""

import argparse
import json
import re
import sys

# The table's type words -> ONNX TensorProto data type names.
TYPE_WORDS = {
    "FP32": "FLOAT", "FP16": "FLOAT16", "BF16": "BFLOAT16", "INT32": "INT32", "INT64": "INT64",
    "INF64": "INT64",  # a typo in the 10.x table (ConstantOfShape)
    "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL", "FP8": "FLOAT8E4M3FN", "INT4": "INT4",
    "DOUBLE": "DOUBLE",
}


def parse_operators_md(text: str) -> dict:
    """{op: {"supported": bool, "types": [onnx type names], "restrictions": str}} of the table."""
    ops = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0]
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name) or name == "Operator":
            continue
        supported = cells[1].upper().startswith("Y") if len(cells) > 1 else False
        types = []
        for word in (cells[2].split(",") if len(cells) > 2 else []):
            word = word.strip().upper()
            if word:
                if word not in TYPE_WORDS:
                    raise ValueError(f"unknown type word {word!r} for {name}")
                types.append(TYPE_WORDS[word])
        restrictions = cells[3] if len(cells) > 3 else ""
        ops[name] = {"supported": supported, "types": sorted(set(types)),
                     "restrictions": restrictions.replace("<br />", " ")}
    if not ops:
        raise ValueError("no operator table found")
    return ops


def opset_range(text: str) -> tuple:
    """(min, max) opset from 'supports operators in the inclusive range of opset A to opset B'."""
    match = re.search(r"opset (\d+) to opset (\d+)", text)
    if not match:
        raise ValueError("no opset range found")
    return int(match.group(1)), int(match.group(2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("operators_md")
    p.add_argument("--commit", required=True, help="onnx-tensorrt commit the file comes from")
    p.add_argument("--branch", required=True, help="onnx-tensorrt branch, e.g. 10.1-GA")
    args = p.parse_args(argv)
    text = open(args.operators_md, encoding="utf-8").read()
    low, high = opset_range(text)
    table = {
        "source": {
            "repository": "https://github.com/onnx/onnx-tensorrt",
            "branch": args.branch,
            "commit": args.commit,
            "path": "docs/operators.md",
            "url": f"https://github.com/onnx/onnx-tensorrt/blob/{args.commit}/docs/operators.md",
        },
        "opset_min": low,
        "opset_max": high,
        "notes": [
            "UINT8 is only supported as network input or output tensor type.",
            "INT8, INT4 and FP8 are quantized types: only through QuantizeLinear/DequantizeLinear.",
            "DOUBLE has limited support (cast down to FLOAT).",
        ],
        "ops": parse_operators_md(text),
    }
    json.dump(table, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
