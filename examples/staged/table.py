"""Prints the experiment's table (markdown) from the summary.json files of run.sh."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/staged-experiment")


def stages(run):
    path = out / run / "summary.json"
    return json.loads(path.read_text())["stages"] if path.exists() else []


def pct(v):
    return "-" if v is None else f"{100 * v:.1f}"


rows = []
for run, label in [
    ("staged", "staged"),
    ("unstaged", "unstaged"),
    ("remedies", "staged + EMA"),
    ("m3-long", "staged, M3 x3 iterations"),
    ("m3-long-remedies", "staged + EMA, M3 x3 iterations"),
]:
    for s in stages(run):
        name = {"unstaged": "M3 (no stages)", "m3-long": "M3", "m3-long-remedies": "M3"}.get(run, s["name"])
        note = label if s["name"] != "fp32" else "float, from scratch"
        flips = s.get("flip_fraction")
        rows.append((name, note, s, s["map50"], s["avg_iou"], flips))
        corrected = s.get("corrected")
        if corrected:
            rows.append((name, label + " + QC", s, corrected["map50"], corrected["avg_iou"], flips))

fp32 = next((r[3] for r in rows if r[0] == "fp32"), None)
print("| model | method | ternary layers | iterations | mAP@0.5 | vs fp32 | avg IoU | flips | packed weights |")
print("|---|---|---|---|---|---|---|---|---|")
for name, note, s, m, iou, flips in rows:
    delta = "-" if fp32 is None or m is None else f"{100 * (m - fp32):+.1f}"
    size = f"{s['packed_bytes'] / 1024:.0f} KiB"
    fl = "-" if flips is None else f"{100 * flips:.2f}%"
    print(
        f"| {name} | {note} | {s['ternary_layers']} of {s['weight_layers']} | {s['iterations']} | "
        f"{pct(m)} | {delta} | {pct(iou)} | {fl} | {size} |"
    )
