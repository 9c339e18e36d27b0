//! Property test: random mutations of real Darknet cfgs never panic the frontend.
//! Every call returns `Ok` or an `InputError` whose message starts with the file name
//! and, when it names a line, names a line the text has. Deterministic (seeded).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ternc_frontend::parse_cfg_text;
use ternc_ir::{InputError, Loc};

const MODELS: &[&str] = &[
    "yolov3-tiny.cfg", "yolov4-tiny.cfg", "yolov2-voc.cfg", "enet-coco.cfg", "yolov2-tiny-voc.cfg",
    "yolov3-tiny-prn.cfg",
];

/// Mutated cfgs per model; the whole test stays well under 20 s in the test profile.
const ITERATIONS_PER_MODEL: usize = 4000;
/// Stop early (still passing) if a slow machine would take much longer than that.
const TIME_BUDGET: Duration = Duration::from_secs(15);

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/darknet")
}

const SPECIAL_INTS: &[&str] = &[
    "0", "1", "-1", "2", "3", "-2", "-3", "-5", "7", "13", "64", "255", "1024", "65536", "65537", "100000",
    "2147483647", "-2147483648", "2147483648", "-2147483649", "4294967296", "99999999999999999999",
];

const GARBAGE: &[&str] = &[
    "abc", "1.5", "-0.5", "1e40", "-1e40", "1e-45", "nan", "NaN", "inf", "-inf", "0x10", "+3", "--1", "-",
    ",", ",,", "1,", "1,,2", ",1", "-1,-2,-3,-4,-5,-6,-7,-8", "0,0,0", "1,2,3,4,5,6,7,8,9,10,11,12", "#",
    "#5", ";", "1#2", "=", "==", "[", "]", "[x]", "é", "ü9", "\u{0}", "\u{7f}", "\u{feff}", "\u{2028}",
    "\u{fffd}", "leaky", "linear", "mish", "none", "per_channel", "steps", "0.0",
];

const SECTIONS: &[&str] = &[
    "net", "network", "convolutional", "conv", "connected", "maxpool", "avgpool", "route", "shortcut",
    "upsample", "reorg", "reorg3d", "yolo", "region", "scale_channels", "sam", "dropout", "softmax", "cost",
    "lstm", "local", "foo", "", "[", "]]", "conv olutional",
];

const KEYS: &[&str] = &[
    "filters", "size", "stride", "stride_x", "stride_y", "pad", "padding", "dilation", "groups", "group_id",
    "activation", "batch_normalize", "layers", "from", "mask", "anchors", "num", "classes", "coords",
    "width", "height", "channels", "inputs", "output", "probability", "policy", "steps", "scales",
    "weights_type", "scale_wh", "reverse", "ternary", "xnor", "max", "iou_loss", "scale_x_y", "bogus",
];

/// Whole lines to insert: new sections, layer references, odd syntax.
const LINES: &[&str] = &[
    "[route]", "layers=-1", "layers=-1,-2", "layers=0", "layers=-1000", "layers=1000", "[shortcut]",
    "from=-2", "from=-3", "[upsample]", "stride=-2", "[maxpool]", "size=2147483647", "[reorg]", "[reorg3d]",
    "reverse=1", "[yolo]", "[region]", "[connected]", "output=2147483647", "[softmax]", "groups=7",
    "[scale_channels]", "[sam]", "[avgpool]", "[dropout]", "[cost]", "[net]", "[convolutional]",
    "filters=2147483647", "width=2147483647", "inputs=100", "num=2147483647", "[", "]", "=", "key", "   ",
    "\t\r", "# comment", "; comment", "[conv]#c", "[conv]x", "a=b=c", "\u{feff}[net]",
];

/// Lines of `text` (as the parser counts them: `str::lines`) and the newline-joined form.
fn split(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fn join(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn pick<'a>(rng: &mut StdRng, v: &[&'a str]) -> &'a str {
    v.choose(rng).copied().unwrap_or("")
}

fn random_int(rng: &mut StdRng) -> String {
    match rng.gen_range(0..4) {
        0 => pick(rng, SPECIAL_INTS).to_string(),
        1 => rng.gen_range(-8i64..=8).to_string(),
        2 => rng.gen_range(-100_000i64..=100_000).to_string(),
        _ => rng.gen::<i32>().to_string(),
    }
}

/// A random char: mostly ASCII (including cfg syntax), sometimes anything.
fn random_char(rng: &mut StdRng) -> char {
    match rng.gen_range(0..6) {
        0 => *b"[]=#;,-.\n\r\t ".choose(rng).unwrap() as char,
        1..=3 => rng.gen_range(0x20u8..0x7f) as char,
        4 => rng.gen_range(0u8..0x20) as char,
        _ => rng.gen::<char>(),
    }
}

/// A char boundary of `s` at or before `i`.
fn boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Index of a random `key=value` line, if any.
fn kv_line(rng: &mut StdRng, lines: &[String]) -> Option<usize> {
    let kv: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains('=') && !lines[i].trim_start().starts_with('#'))
        .collect();
    kv.choose(rng).copied()
}

/// Index of a random section header line, if any.
fn header_line(rng: &mut StdRng, lines: &[String]) -> Option<usize> {
    let h: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trim_start().starts_with('[')).collect();
    h.choose(rng).copied()
}

fn set_value(lines: &mut [String], i: usize, value: &str) {
    let key = lines[i].split('=').next().unwrap_or("").to_string();
    lines[i] = format!("{key}={value}");
}

/// Applies one random mutation to `text`.
fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut lines = split(text);
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match rng.gen_range(0..15) {
        // delete a line
        0 => {
            lines.remove(rng.gen_range(0..n));
        }
        // duplicate a line
        1 => {
            let i = rng.gen_range(0..n);
            let l = lines[i].clone();
            lines.insert(rng.gen_range(0..=n), l);
        }
        // swap two lines
        2 => {
            let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
            lines.swap(a, b);
        }
        // replace a value with a random integer
        3 | 4 => {
            if let Some(i) = kv_line(rng, &lines) {
                let v = random_int(rng);
                set_value(&mut lines, i, &v);
            }
        }
        // replace a value with garbage
        5 => {
            if let Some(i) = kv_line(rng, &lines) {
                let v = pick(rng, GARBAGE);
                set_value(&mut lines, i, v);
            }
        }
        // change one item of a list value (layers=, mask=, anchors=, steps=)
        6 => {
            if let Some(i) = kv_line(rng, &lines) {
                let (key, value) = lines[i].split_once('=').unwrap();
                let mut items: Vec<String> = value.split(',').map(str::to_string).collect();
                let j = rng.gen_range(0..items.len());
                match rng.gen_range(0..3) {
                    0 => items[j] = random_int(rng),
                    1 => {
                        items.remove(j);
                    }
                    _ => items.insert(j, random_int(rng)),
                }
                lines[i] = format!("{key}={}", items.join(","));
            }
        }
        // insert random characters somewhere in the text
        7 => {
            let mut s = join(&lines);
            for _ in 0..rng.gen_range(1..=4) {
                let at = boundary(&s, rng.gen_range(0..=s.len()));
                s.insert(at, random_char(rng));
            }
            return s;
        }
        // delete a few characters
        8 => {
            let mut s = join(&lines);
            let a = boundary(&s, rng.gen_range(0..=s.len()));
            let b = boundary(&s, a + rng.gen_range(1..=8));
            s.replace_range(a..b, "");
            return s;
        }
        // truncate the text
        9 => {
            let s = join(&lines);
            let at = boundary(&s, rng.gen_range(0..=s.len()));
            return s[..at].to_string();
        }
        // change a section name
        10 => {
            if let Some(i) = header_line(rng, &lines) {
                lines[i] = format!("[{}]", pick(rng, SECTIONS));
            }
        }
        // change a key name
        11 => {
            if let Some(i) = kv_line(rng, &lines) {
                let value = lines[i].split_once('=').unwrap().1.to_string();
                lines[i] = format!("{}={value}", pick(rng, KEYS));
            }
        }
        // insert a line (a section, a key, odd syntax)
        12 => {
            let l = if rng.gen_bool(0.5) {
                pick(rng, LINES).to_string()
            } else {
                format!("{}={}", pick(rng, KEYS), random_int(rng))
            };
            lines.insert(rng.gen_range(0..=n), l);
        }
        // delete a whole section (header up to the next header)
        13 => {
            if let Some(i) = header_line(rng, &lines) {
                let end = (i + 1..lines.len())
                    .find(|&j| lines[j].trim_start().starts_with('['))
                    .unwrap_or(lines.len());
                lines.drain(i..end);
            }
        }
        // move a section header to a random place (sections swallow each other's keys)
        _ => {
            if let Some(i) = header_line(rng, &lines) {
                let h = lines.remove(i);
                let to = rng.gen_range(0..=lines.len());
                lines.insert(to, h);
            }
        }
    }
    // Sometimes use CRLF line ends or drop the final newline.
    let s = join(&lines);
    match rng.gen_range(0..20) {
        0 => s.replace('\n', "\r\n"),
        1 => s.trim_end_matches('\n').to_string(),
        _ => s,
    }
}

/// Lowers `text` and checks the properties: `Ok(lowered?)`, or `Err` describing a
/// violation.
fn check(text: &str) -> Result<bool, String> {
    let path = Path::new("fuzz.cfg");
    let result = catch_unwind(AssertUnwindSafe(|| {
        let r = parse_cfg_text(path, text);
        if let Ok(l) = &r {
            // Everything inspect does with a model must not panic either.
            let g = &l.graph;
            let _ = g.dump();
            let _ = g.total_params();
            let _ = g.total_bflops();
            for i in 0..g.num_layers() {
                let _ = g.param_layout(i);
                let _ = g.input_shapes(g.layers[i]);
            }
            let _ = g.heads();
            for w in &l.warnings {
                let _ = w.to_string();
            }
        }
        r.map(|l| l.warnings)
    }));
    let lines = text.lines().count();
    match result {
        Err(_) => Err("panicked".into()),
        Ok(Ok(warnings)) => {
            for w in warnings {
                if !(1..=lines).contains(&w.line) {
                    return Err(format!("warning names line {} of {lines}: {w}", w.line));
                }
            }
            Ok(true)
        }
        Ok(Err(e)) => check_error(&e, lines).map(|()| false),
    }
}

fn check_error(e: &InputError, lines: usize) -> Result<(), String> {
    let msg = e.to_string();
    if !msg.starts_with("fuzz.cfg") {
        return Err(format!("message does not start with the file name: {msg}"));
    }
    if msg.contains('\n') {
        return Err(format!("message is not one line: {msg:?}"));
    }
    match e.loc {
        Loc::Line(l) if !(1..=lines).contains(&l) => {
            Err(format!("names line {l} of a {lines}-line text: {msg}"))
        }
        Loc::Line(l) if !msg.starts_with(&format!("fuzz.cfg:{l}: ")) => {
            Err(format!("line {l} is not in the message: {msg}"))
        }
        Loc::Offset(_) => Err(format!("a cfg error with a byte offset: {msg}")),
        _ => Ok(()),
    }
}

#[test]
fn mutated_real_cfgs_never_panic() {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(0x7e3c_f022);
    let (mut ok, mut err, mut total) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    'models: for name in MODELS {
        let original =
            std::fs::read_to_string(model_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The unmutated model must load.
        if let Err(e) = parse_cfg_text(Path::new("fuzz.cfg"), &original) {
            panic!("{name} does not load: {e}");
        }
        for iter in 0..ITERATIONS_PER_MODEL {
            if start.elapsed() > TIME_BUDGET {
                eprintln!("time budget reached after {total} cases");
                break 'models;
            }
            // 1-3 stacked mutations.
            let mut text = original.clone();
            for _ in 0..rng.gen_range(1..=3) {
                text = mutate(&mut rng, &text);
            }
            total += 1;
            match check(&text) {
                Ok(true) => ok += 1,
                Ok(false) => err += 1,
                Err(why) => {
                    failures.push(format!("{name} iteration {iter}: {why}\n--- text ---\n{text}"));
                    if failures.len() >= 5 {
                        break 'models;
                    }
                }
            }
        }
    }
    eprintln!(
        "{total} mutated cfgs: {ok} lowered, {err} rejected, {} failures, {:.1?}",
        failures.len(),
        start.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The mutations must exercise both outcomes to mean anything.
    assert!(total >= 1000, "only {total} cases ran");
    assert!(ok * 20 >= total, "too few mutated cfgs lowered: {ok} of {total}");
    assert!(err * 4 >= total, "too few mutated cfgs rejected: {err} of {total}");
}

/// Minimal cfgs for bugs the fuzzer (and reading) found; each must not panic.
#[test]
fn regressions() {
    let net = "[net]\nwidth=32\nheight=32\nchannels=3\n";
    let cases: &[(&str, String, Option<usize>)] = &[
        // Maxpool BFLOPs multiplied size·size·c·plane in usize (overflow panic):
        // padding defaults to size-1, so any size fits.
        (
            "huge maxpool",
            format!("{net}[maxpool]\nsize=2147483647\nstride=1\n"),
            None,
        ),
        (
            "huge maxpool after conv",
            format!("{net}[convolutional]\nfilters=1024\n[maxpool]\nsize=2147483647\n"),
            None,
        ),
        // The [net] input was never size-checked; Connected/Softmax took its numel
        // (overflow panic).
        (
            "huge input, connected",
            "[net]\nwidth=2147483647\nheight=2147483647\nchannels=2147483647\n[connected]\noutput=2\n".into(),
            Some(1),
        ),
        (
            "huge input, softmax",
            "[net]\nwidth=2147483647\nheight=2147483647\nchannels=2147483647\n[softmax]\n".into(),
            Some(1),
        ),
        (
            "huge flat input",
            "[net]\ninputs=2147483647\n[connected]\noutput=2\n".into(),
            Some(1),
        ),
        // num sized the default anchors/mask allocations (16 GiB, abort).
        (
            "yolo huge num with anchors",
            format!("{net}[convolutional]\nfilters=18\nsize=1\n[yolo]\nmask=0,1,2\nanchors=10,14,23,27,37,58\nclasses=1\nnum=2147483647\n"),
            Some(12),
        ),
        (
            "yolo huge num without mask or anchors",
            format!("{net}[convolutional]\nfilters=18\nsize=1\n[yolo]\nclasses=1\nnum=2147483647\n"),
            Some(10),
        ),
        (
            "region huge num",
            format!("{net}[convolutional]\nfilters=18\nsize=1\n[region]\nclasses=1\nnum=2147483647\n"),
            Some(10),
        ),
        (
            "yolo mask far beyond the anchors",
            format!("{net}[convolutional]\nfilters=18\nsize=1\n[yolo]\nmask=2147483647\nanchors=10,14\nnum=1\nclasses=1\n"),
            Some(9),
        ),
        // Huge geometry everywhere must be an error, never an overflow.
        (
            "huge conv",
            format!("{net}[convolutional]\nfilters=2147483647\nsize=2147483647\npadding=2147483647\ndilation=2147483647\n"),
            Some(5),
        ),
        (
            "huge upsample",
            format!("{net}[upsample]\nstride=2147483647\n"),
            Some(5),
        ),
        (
            "huge downsample",
            format!("{net}[upsample]\nstride=-2147483648\n"),
            Some(5),
        ),
        (
            "huge reorg",
            format!("{net}[reorg3d]\nstride=2147483647\nreverse=1\n"),
            Some(5),
        ),
        (
            "huge connected",
            format!("{net}[connected]\noutput=2147483647\n"),
            Some(5),
        ),
        (
            "huge softmax groups",
            format!("{net}[softmax]\ngroups=2147483647\n"),
            Some(5),
        ),
        ("empty", String::new(), None),
        ("only a BOM", "\u{feff}".into(), None),
    ];
    for (name, text, line) in cases {
        if let Err(why) = check(text) {
            panic!("{name}: {why}\n{text}");
        }
        let r = parse_cfg_text(Path::new("fuzz.cfg"), text);
        match (line, &r) {
            (Some(l), Err(e)) => assert_eq!(e.loc, Loc::Line(*l), "{name}: {e}"),
            (Some(l), Ok(_)) => panic!("{name}: expected an error at line {l}"),
            (None, _) => {}
        }
    }
}
