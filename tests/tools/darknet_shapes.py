#!/usr/bin/env python3
"""Independent reference calculation of Darknet (AlexeyAB fork) layer shapes,
.weights float counts and BFLOPs for every .cfg under models/darknet and
models/darknet-twn.

Standard library only.  Re-run from the repository root:

    python3 tests/tools/darknet_shapes.py

It (re)writes tests/data/expected_shapes.json, keyed by the cfg path relative
to models/ (e.g. "darknet/yolov3-tiny.cfg"):

    {"darknet/yolov3-tiny.cfg": {
        "dir": "darknet", "file": "yolov3-tiny.cfg",
        "input": [c, h, w],
        "total_params": N, "total_bflops": F,
        "layers": [{"index": 0, "type": "convolutional",
                    "input": [c, h, w], "output": [c, h, w],
                    "params": N, "bflops": F}, ...]},
     ...}

The rules mirror AlexeyAB darknet's src/parser.c (read_cfg, read_option,
option_find_*, parse_*) and the make_*_layer constructors.  This file is
deliberately written without looking at the project's own Rust parser.

Deviations from literal Darknet behaviour that the caller asked for (they do
not matter for any cfg currently in the repository, see warnings printed):
  * convolutional output size uses the dilated kernel extent
    ((size-1)*dilation+1) and the padding pad*dilation that Darknet's im2col
    applies; Darknet's convolutional_out_height() uses plain `size` and `pad`,
    which agrees for odd kernels with pad=size/2.
  * softmax / cost report output = input shape; Darknet never sets out_w/h/c
    for these layers (they stay 0), but their `outputs` equals `inputs`.
  * type names: [reorg] -> "reorg", [reorg3d] -> "reorg3d" (Darknet's own
    get_layer_string() would say "none" and "reorg" respectively).
"""

from __future__ import annotations

import json
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL_DIRS = ["darknet", "darknet-twn"]
OUT_PATH = os.path.join(ROOT, "tests", "data", "expected_shapes.json")


class CfgError(Exception):
    pass


class Unsupported(CfgError):
    pass


# --------------------------------------------------------------------------
# C library number parsing (atoi / atof semantics: leading number, else 0)
# --------------------------------------------------------------------------

_INT_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?\d+)")
_FLOAT_RE = re.compile(
    r"[ \t\n\v\f\r]*([+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf(?:inity)?|nan))",
    re.IGNORECASE,
)


def atoi(s: str) -> int:
    m = _INT_RE.match(s)
    if not m:
        return 0
    v = int(m.group(1))
    # C int is 32-bit; atoi overflow is UB, wrap like glibc's strtol->int cast would.
    v &= 0xFFFFFFFF
    if v >= 0x80000000:
        v -= 0x100000000
    return v


def atof(s: str) -> float:
    m = _FLOAT_RE.match(s)
    if not m:
        return 0.0
    return float(m.group(1))


def cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    if b == 0:
        raise CfgError("division by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


# --------------------------------------------------------------------------
# cfg reading: read_cfg() + strip() + read_option()
# --------------------------------------------------------------------------

_STRIP_CHARS = {" ", "\t", "\n", "\r"}


class Section:
    def __init__(self, type_line: str, lineno: int):
        self.type = type_line          # whole stripped line, e.g. "[convolutional]"
        self.lineno = lineno
        self.options: list[tuple[str, str | None]] = []
        self.used: set[str] = set()

    def find(self, key: str) -> str | None:
        """option_find(): first occurrence wins; a key stored without '='
        (value NULL) shadows later occurrences and reads as 'absent'."""
        for k, v in self.options:
            if k == key:
                self.used.add(key)
                return v
        return None

    def has(self, key: str) -> bool:
        return self.find(key) is not None

    def int(self, key: str, default: int) -> int:
        v = self.find(key)
        return atoi(v) if v is not None else default

    def float(self, key: str, default: float) -> float:
        v = self.find(key)
        return atof(v) if v is not None else default

    def str(self, key: str, default: str | None) -> str | None:
        v = self.find(key)
        return v if v is not None else default


def read_cfg(path: str) -> tuple[list[Section], list[str]]:
    sections: list[Section] = []
    notes: list[str] = []
    current: Section | None = None
    with open(path, "rb") as f:
        data = f.read()
    # fgetl() reads up to '\n'; strip() removes ' ', '\t', '\n', '\r'.
    text = data.decode("latin-1")
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = "".join(ch for ch in raw if ch not in _STRIP_CHARS)
        if line == "" or line[0] in "#;":
            continue
        if line[0] == "[":
            current = Section(line, lineno)
            sections.append(current)
            continue
        # read_option()
        i = line.find("=")
        if i == len(line) - 1:
            # "key=" (or a lone "="): Darknet prints "Config file error" and drops it.
            notes.append(f"line {lineno}: option with empty value dropped by Darknet: {line!r}")
            continue
        if current is None:
            raise CfgError(f"line {lineno}: option before first section (Darknet would crash)")
        if i < 0:
            notes.append(f"line {lineno}: option without '=' (value NULL): {line!r}")
            current.options.append((line, None))
        else:
            current.options.append((line[:i], line[i + 1:]))
    return sections, notes


# --------------------------------------------------------------------------
# Layer type table (string_to_layer_type) and keys each parse_* reads
# --------------------------------------------------------------------------

TYPE_MAP = {
    "[net]": "net", "[network]": "net",
    "[conv]": "convolutional", "[convolutional]": "convolutional",
    "[max]": "maxpool", "[maxpool]": "maxpool",
    "[avg]": "avgpool", "[avgpool]": "avgpool",
    "[route]": "route",
    "[shortcut]": "shortcut",
    "[upsample]": "upsample",
    "[reorg]": "reorg",        # Darknet REORG_OLD
    "[reorg3d]": "reorg3d",    # Darknet REORG
    "[yolo]": "yolo",
    "[region]": "region",
    "[dropout]": "dropout",
    "[scale_channels]": "scale_channels",
    "[sam]": "sam",
    "[soft]": "softmax", "[softmax]": "softmax",
    "[cost]": "cost",
    "[conn]": "connected", "[connected]": "connected",
}

# Section types Darknet knows but this script does not model.
KNOWN_BUT_UNSUPPORTED = {
    "[crop]", "[detection]", "[Gaussian_yolo]", "[local]", "[activation]",
    "[crnn]", "[gru]", "[lstm]", "[conv_lstm]", "[history]", "[rnn]",
    "[local_avg]", "[local_avgpool]", "[lrn]", "[normalization]",
    "[batchnorm]", "[contrastive]", "[empty]", "[silence]", "[implicit]",
}

# Keys read in parse_network_cfg_custom for every layer section.
COMMON_LAYER_KEYS = {
    "clip", "onlyforward", "dont_update", "burnin_update", "stopbackward",
    "train_only_bn", "dontload", "dontloadscales", "learning_rate",
}

# Keys read by each parse_* function (from AlexeyAB parser.c).
READ_KEYS = {
    "net": {
        "max_batches", "batch", "learning_rate", "learning_rate_min", "sgdr_cycle", "sgdr_mult",
        "momentum", "decay", "subdivisions", "time_steps", "track", "augment_speed",
        "sequential_subdivisions", "try_fix_nan", "weights_reject_freq", "equidistant_point",
        "badlabels_rejection_percentage", "num_sigmas_reject_badlabels", "ema_alpha",
        "use_cuda_graph", "loss_scale", "dynamic_minibatch", "optimized_memory",
        "workspace_size_limit_MB", "adam", "B1", "B2", "eps", "height", "width", "channels",
        "inputs", "max_crop", "min_crop", "flip", "blur", "gaussian_noise", "mixup", "cutmix",
        "mosaic", "letter_box", "mosaic_bound", "contrastive", "contrastive_jit_flip",
        "contrastive_color", "unsupervised", "label_smooth_eps", "resize_step", "attention",
        "adversarial_lr", "max_chart_loss", "angle", "aspect", "saturation", "exposure", "hue",
        "power", "policy", "burn_in", "step", "scale", "steps", "scales", "seq_scales", "gamma",
        "show_receptive_field",
    },
    "convolutional": {
        "filters", "groups", "size", "stride", "stride_x", "stride_y", "dilation", "antialiasing",
        "pad", "padding", "activation", "assisted_excitation", "share_index", "batch_normalize",
        "cbn", "binary", "xnor", "bin_output", "sway", "rotate", "stretch", "stretch_sway",
        "flipped", "dot", "angle", "grad_centr", "reverse", "coordconv", "stream", "wait_stream",
    },
    "maxpool": {"stride", "stride_x", "stride_y", "size", "padding", "maxpool_depth",
                "out_channels", "antialiasing", "maxpool_zero_nonmax"},
    "avgpool": set(),
    "route": {"layers", "groups", "group_id", "stream", "wait_stream"},
    "shortcut": {"activation", "weights_type", "weights_normalization", "from"},
    "upsample": {"stride", "scale"},
    "reorg": {"stride", "reverse"},
    "reorg3d": {"stride", "reverse"},
    "yolo": {
        "classes", "num", "mask", "max", "show_details", "max_delta", "counters_per_class",
        "label_smooth_eps", "scale_x_y", "objectness_smooth", "new_coords", "iou_normalizer",
        "obj_normalizer", "cls_normalizer", "delta_normalizer", "iou_loss", "iou_thresh_kind",
        "beta_nms", "nms_kind", "jitter", "resize", "focal_loss", "ignore_thresh", "truth_thresh",
        "iou_thresh", "random", "track_history_size", "sim_thresh", "dets_for_track",
        "dets_for_show", "track_ciou_norm", "embedding_layer", "map", "anchors",
    },
    "region": {
        "coords", "classes", "num", "max", "log", "sqrt", "softmax", "focal_loss", "jitter",
        "resize", "rescore", "thresh", "classfix", "absolute", "random", "coord_scale",
        "object_scale", "noobject_scale", "mask_scale", "class_scale", "bias_match", "tree",
        "map", "anchors",
    },
    "dropout": {"probability", "dropblock", "dropblock_size_rel", "dropblock_size_abs"},
    "scale_channels": {"from", "scale_wh", "activation"},
    "sam": {"from", "activation"},
    "softmax": {"groups", "temperature", "tree", "spatial", "noloss"},
    "cost": {"type", "scale", "ratio"},
    "connected": {"output", "activation", "batch_normalize"},
}

# Keys that Darknet reads and that would change shapes / weight counts /
# BFLOPs in ways this script does not model: any non-zero value is an error.
UNSUPPORTED_NONZERO = {
    "convolutional": {"antialiasing", "share_index", "xnor"},
    "maxpool": {"maxpool_depth", "antialiasing"},
    "scale_channels": {"scale_wh"},
    "softmax": {"tree"},
    "region": {"tree"},
    "*": {"dontload", "dontloadscales"},
}


# --------------------------------------------------------------------------
# Shape / parameter / BFLOPs computation
# --------------------------------------------------------------------------

def layer_ref(sec: Section, value: str, index: int, n_layers: int, what: str) -> list[int]:
    """Comma-separated layer list as parse_route/parse_shortcut read it."""
    out = []
    for part in value.split(","):
        i = atoi(part)
        if i < 0:
            i = index + i
        if not (0 <= i < index):
            raise CfgError(f"layer {index} ({what}): reference {part!r} -> {i} out of range")
        out.append(i)
    return out


def analyse(path: str) -> tuple[dict, list[str]]:
    sections, notes = read_cfg(path)
    warnings = list(notes)
    if not sections:
        raise CfgError("Config file has no sections")
    net = sections[0]
    if TYPE_MAP.get(net.type) != "net":
        raise CfgError("First section must be [net] or [network]")
    h = net.int("height", 0)
    w = net.int("width", 0)
    c = net.int("channels", 0)
    if not (h and w and c):
        raise Unsupported("[net] without height/width/channels is not modelled")
    for k, _ in net.options:
        if k not in READ_KEYS["net"] and k not in COMMON_LAYER_KEYS:
            warnings.append(f"[net] line {net.lineno}: key {k!r} is not read by Darknet (Unused field)")

    layers: list[dict] = []
    outs: list[tuple[int, int, int]] = []   # (c, h, w) per layer
    prev = (c, h, w)

    for index, sec in enumerate(sections[1:]):
        if sec.type in KNOWN_BUT_UNSUPPORTED:
            raise Unsupported(f"layer {index}: section {sec.type} (line {sec.lineno}) is not modelled")
        kind = TYPE_MAP.get(sec.type)
        if kind is None or kind == "net":
            raise Unsupported(f"layer {index}: unknown section {sec.type!r} (line {sec.lineno});"
                              " Darknet would print 'Type not recognized'")

        # key checks
        allowed = READ_KEYS[kind] | COMMON_LAYER_KEYS
        for k, v in sec.options:
            if k not in allowed:
                warnings.append(f"layer {index} {sec.type} line {sec.lineno}: key {k!r}={v!r} is not read"
                                " by Darknet (Unused field) - ignored")
        for k in UNSUPPORTED_NONZERO.get(kind, set()) | UNSUPPORTED_NONZERO["*"]:
            v = sec.find(k)
            if v is not None and atof(v) != 0:
                raise Unsupported(f"layer {index} {sec.type}: {k}={v} is not modelled")

        pc, ph, pw = prev
        inp = prev
        params = 0
        bflops = 0.0

        if kind == "convolutional":
            n = sec.int("filters", 1)
            groups = sec.int("groups", 1)
            size = sec.int("size", 1)
            stride_x = sec.int("stride_x", -1)
            stride_y = sec.int("stride_y", -1)
            if stride_x < 1 or stride_y < 1:
                stride = sec.int("stride", 1)
                if stride_x < 1:
                    stride_x = stride
                if stride_y < 1:
                    stride_y = stride
            dilation = sec.int("dilation", 1)
            if size == 1:
                dilation = 1
            pad = sec.int("pad", 0)
            padding = sec.int("padding", 0)
            if pad:
                padding = cdiv(size, 2)
            bn = sec.int("batch_normalize", 0)
            if sec.int("cbn", 0):
                bn = 2
            if not (ph and pw and pc):
                raise CfgError(f"layer {index}: Layer before convolutional layer must output image.")
            if groups < 1 or pc % groups:
                raise CfgError(f"layer {index}: channels {pc} not divisible by groups {groups}")
            # Darknet's forward pass calls im2col_cpu_ext with padding pad*dilation.
            padding *= dilation
            ext = (size - 1) * dilation + 1
            oh = cdiv(ph + 2 * padding - ext, stride_y) + 1
            ow = cdiv(pw + 2 * padding - ext, stride_x) + 1
            out = (n, oh, ow)
            nweights = cdiv(pc, groups) * n * size * size
            params = n + (3 * n if bn else 0) + nweights
            bflops = (2.0 * nweights * oh * ow) / 1e9

        elif kind == "maxpool":
            stride = sec.int("stride", 1)
            stride_x = sec.int("stride_x", stride)
            stride_y = sec.int("stride_y", stride)
            size = sec.int("size", stride)
            padding = sec.int("padding", size - 1)
            if not (ph and pw and pc):
                raise CfgError(f"layer {index}: Layer before [maxpool] layer must output image.")
            oh = cdiv(ph + padding - size, stride_y) + 1
            ow = cdiv(pw + padding - size, stride_x) + 1
            out = (pc, oh, ow)
            bflops = (size * size * pc * oh * ow) / 1e9

        elif kind == "avgpool":
            if not (ph and pw and pc):
                raise CfgError(f"layer {index}: Layer before avgpool layer must output image.")
            out = (pc, 1, 1)

        elif kind == "route":
            v = sec.find("layers")
            if v is None:
                raise CfgError(f"layer {index}: Route Layer must specify input layers")
            refs = layer_ref(sec, v, index, len(outs), "route")
            groups = sec.int("groups", 1)
            group_id = sec.int("group_id", 0)
            first = outs[refs[0]]
            oc = first[0]
            for r in refs[1:]:
                nxt = outs[r]
                if nxt[1] != first[1] or nxt[2] != first[2]:
                    raise CfgError(f"layer {index}: route inputs {refs} have different h/w")
                oc += nxt[0]
            if groups < 1:
                raise CfgError(f"layer {index}: route groups={groups}")
            if not (0 <= group_id < groups):
                raise CfgError(f"layer {index}: route group_id={group_id} not in [0,{groups})")
            inp = first
            out = (cdiv(oc, groups), first[1], first[2])

        elif kind == "shortcut":
            v = sec.find("from")
            if v is None:
                raise CfgError(f"layer {index}: shortcut must specify from=")
            refs = layer_ref(sec, v, index, len(outs), "shortcut")
            for r in refs:
                if outs[r][1] != ph or outs[r][2] != pw:
                    # AlexeyAB: assert() here (aborts in a Makefile build; compiled
                    # out with NDEBUG, e.g. CMake Release, where it only prints the
                    # two shapes and keeps out = previous layer's shape).
                    warnings.append(f"layer {index}: shortcut from layer {r} {list(outs[r])} has different"
                                    f" h/w than previous {list(prev)}; Darknet asserts here (NDEBUG builds"
                                    " continue); output = previous layer's shape")
                if outs[r][0] != pc:
                    warnings.append(f"layer {index}: shortcut from layer {r} has {outs[r][0]} channels,"
                                    f" previous has {pc} (Darknet adds the overlap)")
            wt = sec.str("weights_type", "none")
            nrefs = len(refs)
            if wt in ("per_feature", "per_layer"):
                params = nrefs + 1
            elif wt == "per_channel":
                params = (nrefs + 1) * pc
            elif wt != "none":
                raise CfgError(f"layer {index}: Incorrect weights_type = {wt}")
            out = prev
            bflops = (pw * ph * pc * nrefs) / 1e9
            if wt != "none":
                bflops *= 2

        elif kind == "upsample":
            stride = sec.int("stride", 2)
            if stride < 0:
                s = -stride
                out = (pc, cdiv(ph, s), cdiv(pw, s))
            else:
                out = (pc, ph * stride, pw * stride)

        elif kind in ("reorg", "reorg3d"):
            stride = sec.int("stride", 1)
            reverse = sec.int("reverse", 0)
            if not (ph and pw and pc):
                raise CfgError(f"layer {index}: Layer before reorg layer must output image.")
            if reverse:
                out = (cdiv(pc, stride * stride), ph * stride, pw * stride)
            else:
                out = (pc * stride * stride, cdiv(ph, stride), cdiv(pw, stride))

        elif kind == "yolo":
            classes = sec.int("classes", 20)
            total = sec.int("num", 1)
            mask = sec.find("mask")
            num = total if mask is None else mask.count(",") + 1
            oc = num * (classes + 4 + 1)
            if oc * ph * pw != pc * ph * pw:
                raise CfgError(f"layer {index}: [yolo] expects {oc} channels, input has {pc}"
                               " (Darknet: filters= doesn't correspond to classes= or mask=)")
            out = (oc, ph, pw)

        elif kind == "region":
            coords = sec.int("coords", 4)
            classes = sec.int("classes", 20)
            num = sec.int("num", 1)
            oc = num * (classes + coords + 1)
            if oc * ph * pw != pc * ph * pw:
                raise CfgError(f"layer {index}: [region] expects {oc} channels, input has {pc}")
            out = (oc, ph, pw)

        elif kind in ("scale_channels", "sam"):
            v = sec.find("from")
            if v is None:
                raise CfgError(f"layer {index}: {kind} must specify from=")
            src = atoi(v)
            if src < 0:
                src = index + src
            if not (0 <= src < index):
                raise CfgError(f"layer {index}: {kind} from={v} out of range")
            out = outs[src]
            if out[0] != pc:
                raise CfgError(f"layer {index}: {kind} from-layer channels {out[0]} != input channels {pc}")

        elif kind == "softmax":
            groups = sec.int("groups", 1)
            if groups < 1 or (pc * ph * pw) % groups:
                raise CfgError(f"layer {index}: softmax inputs not divisible by groups={groups}")
            out = prev

        elif kind in ("dropout", "cost"):
            out = prev

        elif kind == "connected":
            output = sec.int("output", 1)
            bn = sec.int("batch_normalize", 0)
            inputs = pc * ph * pw
            out = (output, 1, 1)
            params = output + inputs * output + (3 * output if bn else 0)
            bflops = 0.0   # make_connected_layer never sets l.bflops

        else:  # pragma: no cover
            raise Unsupported(f"layer {index}: {kind}")

        if min(out) <= 0:
            raise CfgError(f"layer {index} {kind}: non-positive output shape {list(out)}")

        layers.append({
            "index": index,
            "type": kind,
            "input": list(inp),
            "output": list(out),
            "params": params,
            "bflops": bflops,
        })
        outs.append(out)
        prev = out

    total_params = sum(l["params"] for l in layers)
    total_bflops = sum(l["bflops"] for l in layers)
    return {
        "input": [c, h, w],
        "warnings": [wm for wm in warnings if not wm.startswith("line ")
                     and "is not read by Darknet" not in wm],
        "total_params": total_params,
        "total_bflops": total_bflops,
        "layers": layers,
    }, warnings


def dump_json(result: dict) -> str:
    """Valid JSON, one layer per line (keeps the file small and diffable)."""
    parts = []
    for rel, e in result.items():
        head = {k: v for k, v in e.items() if k != "layers"}
        fields = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in head.items()]
        layer_lines = ",\n".join(f"    {json.dumps(l)}" for l in e["layers"])
        fields.append(f'  "layers": [\n{layer_lines}\n  ]')
        parts.append(f" {json.dumps(rel)}: {{\n" + ",\n".join(fields) + "\n }")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main() -> int:
    result: dict[str, dict] = {}
    problems: list[str] = []
    for d in MODEL_DIRS:
        base = os.path.join(ROOT, "models", d)
        if not os.path.isdir(base):
            problems.append(f"missing directory models/{d}")
            continue
        for dirpath, _dirnames, filenames in os.walk(base):
            for fn in sorted(filenames):
                if not fn.endswith(".cfg"):
                    continue
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, os.path.join(ROOT, "models")).replace(os.sep, "/")
                try:
                    info, warns = analyse(full)
                except CfgError as e:
                    problems.append(f"{rel}: {e}")
                    print(f"ERROR {rel}: {e}", file=sys.stderr)
                    continue
                entry = {"dir": d, "file": fn}
                entry.update(info)
                result[rel] = entry
                # Collapse repetitive warnings (e.g. an unread key on every layer).
                summary: dict[str, int] = {}
                for wmsg in warns:
                    key = re.sub(r"^layer \d+ (\[\w+\]) line \d+: ", r"\1: ", wmsg)
                    key = re.sub(r"=('[^']*')", "=...", key)
                    summary[key] = summary.get(key, 0) + 1
                for k, cnt in summary.items():
                    print(f"WARN  {rel}: {k}" + (f" (x{cnt})" if cnt > 1 else ""), file=sys.stderr)

    result = dict(sorted(result.items()))
    for rel, e in result.items():
        c, h, w = e["input"]
        print(f"{rel:40s} {w:4d}x{h:<4d}x{c}  layers={len(e['layers']):4d}"
              f"  params={e['total_params']:>11d}  BFLOPs={e['total_bflops']:9.3f}")

    # Sanity checks against numbers printed by Darknet / known .weights sizes.
    checks_ok = True

    def expect(rel: str, field: str, want, tol=None):
        nonlocal checks_ok
        got = result.get(rel, {}).get(field)
        ok = got is not None and (got == want if tol is None else abs(got - want) <= tol)
        print(f"check {rel} {field}: got {got!r}, want {want!r} -> {'OK' if ok else 'FAIL'}")
        checks_ok &= ok

    expect("darknet/yolov3-tiny.cfg", "total_params", 8858734)
    expect("darknet/yolov3.cfg", "total_params", 62001757)
    expect("darknet/yolov3-tiny.cfg", "total_bflops", 5.571, tol=0.0005)
    expect("darknet/yolov4-tiny.cfg", "total_bflops", 6.910, tol=0.0005)

    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    with open(OUT_PATH, "w") as f:
        f.write(dump_json(result))
    print(f"wrote {os.path.relpath(OUT_PATH, ROOT)} ({len(result)} cfgs)")

    if problems:
        print("PROBLEMS:", *problems, sep="\n  ", file=sys.stderr)
    assert result["darknet/yolov3-tiny.cfg"]["total_params"] == 8858734
    assert result["darknet/yolov3.cfg"]["total_params"] == 62001757
    return 0 if (checks_ok and not problems) else 1


if __name__ == "__main__":
    sys.exit(main())
