//! Bad input never panics and never corrupts output: every malformed cfg or weights
//! file gives exit code 2 and one line on stderr, `error: FILE:LINE: message` for text
//! files and `error: FILE: byte offset N: message` for binary ones; `ternc init`
//! writes its output atomically (whole or not at all).

use std::fs;
use std::path::Path;

use assert_cmd::Command;

/// `[net]` on lines 1-4, so the first layer section starts on line 5.
const NET: &str = "[net]\nwidth=32\nheight=32\nchannels=3\n";

/// A run of `ternc` in `dir`, with its exit code and stderr.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn ternc(dir: &Path, args: &[&str]) -> Run {
    let out = Command::cargo_bin("ternc")
        .expect("ternc binary")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run ternc");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exit code 2, exactly one `error: ...` line on stderr containing every `needle`, no panic.
fn assert_bad_input(case: &str, run: &Run, needles: &[&str]) {
    let ctx = format!("case {case}: exit {:?}, stderr:\n{}", run.code, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{ctx}");
    assert_eq!(run.code, Some(2), "{ctx}");
    assert_eq!(run.stderr.lines().count(), 1, "not a single line: {ctx}");
    assert!(run.stderr.ends_with('\n'), "{ctx}");
    assert!(run.stderr.starts_with("error: "), "{ctx}");
    for needle in needles {
        assert!(run.stderr.contains(needle), "expected {needle:?}: {ctx}");
    }
}

struct CfgCase {
    name: &'static str,
    text: String,
    /// 1-based line the error must name; `None` for errors about the whole file.
    line: Option<usize>,
    expect: &'static str,
}

fn case(name: &'static str, text: impl Into<String>, line: usize, expect: &'static str) -> CfgCase {
    CfgCase { name, text: text.into(), line: Some(line), expect }
}

/// `NET` followed by `rest`.
fn net(rest: &str) -> String {
    format!("{NET}{rest}")
}

/// Lines are counted in the comments: value errors name the key's line, shape and
/// structure errors the section header's line.
fn cfg_cases() -> Vec<CfgCase> {
    vec![
        // --- syntax (cfg::parse): the offending line itself ---
        case(
            "key before any section",
            "width=32\n[net]\nheight=32\n",
            1,
            "comes before the first section",
        ),
        case(
            "line without '='",
            "[net]\nwidth\nheight=32\n",
            2,
            "is not a section header or key=value line",
        ),
        case(
            "unclosed section header",
            net("[convolutional\nfilters=8\n"), // header on 5
            5,
            "has no closing ']'",
        ),
        case(
            "junk after section header",
            net("[convolutional]x\nfilters=8\n"),
            5,
            "after the section header",
        ),
        case(
            "key with empty value",
            net("[convolutional]\nsize=3\nfilters=\n"), // filters= on 7
            7,
            "key 'filters' has no value",
        ),
        case(
            "no key before '='",
            net("[convolutional]\n=8\n"),
            6,
            "has no key before '='",
        ),
        // --- structure: the section header ---
        case(
            "first section not [net]",
            "# a comment\n[convolutional]\nfilters=8\n",
            2,
            "first section is [convolutional]: expected [net]",
        ),
        case(
            "unknown section",
            net("[convolutional]\nfilters=8\n\n[foo]\n"), // [foo] on 8
            8,
            "[foo]: unknown section",
        ),
        case(
            "known but unsupported Darknet section",
            net("[lstm]\noutput=8\n"),
            5,
            "[lstm]: this Darknet layer type is not supported",
        ),
        case(
            "a second [net]",
            net("[convolutional]\nfilters=8\n[net]\nwidth=32\n"),
            7,
            "only the first section may be [net]",
        ),
        case(
            "only [net]",
            NET,
            1,
            "no layers after [net]",
        ),
        case(
            "only [net] and comments",
            net("\n# [convolutional]\n; filters=8\n"),
            1,
            "no layers after [net]",
        ),
        // --- [net] values ---
        case(
            "[net] without width",
            "[net]\nheight=32\nchannels=3\n[convolutional]\nfilters=8\n",
            1,
            "[net]: width, height and channels must all be set",
        ),
        case(
            "[net] width=0",
            "[net]\nwidth=0\nheight=32\nchannels=3\n[convolutional]\nfilters=8\n",
            1,
            "width, height and channels must all be set",
        ),
        case(
            "[net] negative height",
            "[net]\nwidth=32\nheight=-32\nchannels=3\n[convolutional]\nfilters=8\n",
            3,
            "height=-32: expected an integer >= 0",
        ),
        case(
            "input tensor over 4 GiB",
            "[net]\nwidth=100000\nheight=100000\nchannels=3\n[convolutional]\nfilters=8\n",
            1,
            "over the 4 GiB limit",
        ),
        case(
            // Regression: Connected/Softmax multiplied the unchecked input shape (overflow panic).
            "input tensor overflowing usize",
            "[net]\nwidth=2147483647\nheight=2147483647\nchannels=2147483647\n[connected]\noutput=2\n",
            1,
            "over the 4 GiB limit",
        ),
        case(
            "policy=steps with mismatched steps/scales",
            // scales= on line 7
            "[net]\nwidth=32\nheight=32\nchannels=3\npolicy=steps\nsteps=100,200\nscales=.1\n[convolutional]\nfilters=8\n",
            7,
            "1 scales for 2 steps",
        ),
        case(
            "policy=steps without scales",
            "[net]\nwidth=32\nheight=32\nchannels=3\npolicy=steps\nsteps=100,200\n[convolutional]\nfilters=8\n",
            1,
            "policy=steps needs both steps= and scales=",
        ),
        case(
            "unknown policy",
            "[net]\nwidth=32\nheight=32\nchannels=3\npolicy=sometimes\n[convolutional]\nfilters=8\n",
            5,
            "policy=sometimes: expected one of constant, step, steps",
        ),
        case(
            "non-number learning rate",
            "[net]\nlearning_rate=fast\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=8\n",
            2,
            "learning_rate=fast: expected a number",
        ),
        // --- [convolutional] values: the key's line ---
        case(
            "non-integer filters",
            net("[convolutional]\nsize=3\nfilters=abc\n"), // filters on 7
            7,
            "filters=abc: expected an integer",
        ),
        case(
            "float filters",
            net("[convolutional]\nfilters=1.5\n"),
            6,
            "filters=1.5: expected an integer",
        ),
        case(
            "filters beyond i32",
            net("[convolutional]\nfilters=2147483648\n"),
            6,
            "filters=2147483648: expected an integer",
        ),
        case(
            "negative filters",
            net("[convolutional]\nfilters=-4\nsize=3\n"),
            6,
            "filters=-4: expected an integer >= 1",
        ),
        case(
            "zero filters",
            net("[convolutional]\nsize=1\nstride=1\nfilters=0\n"), // filters on 8
            8,
            "filters=0: expected an integer >= 1",
        ),
        case(
            "size=0",
            net("[convolutional]\nfilters=8\nsize=0\n"),
            7,
            "size=0: expected an integer >= 1",
        ),
        case(
            "stride=0",
            net("[convolutional]\nfilters=8\nsize=3\nstride=0\n"),
            8,
            "stride=0: expected an integer >= 1",
        ),
        case(
            "unknown activation",
            net("[convolutional]\nfilters=8\nactivation=sparkly\n"),
            7,
            "activation=sparkly: unknown activation",
        ),
        case(
            "unsupported conv feature switched on",
            net("[convolutional]\nfilters=8\nxnor=1\n"),
            7,
            "xnor=1: this Darknet feature of [convolutional] is not supported",
        ),
        // --- shapes: the section header ---
        case(
            "groups not dividing channels",
            net("[convolutional]\nfilters=4\ngroups=2\n"), // 3 input channels
            5,
            "groups=2 does not divide the 3 input channels",
        ),
        case(
            "kernel larger than the padded input",
            net("[convolutional]\nfilters=8\nsize=40\npad=0\n"),
            5,
            "does not fit the 32x32 input",
        ),
        case(
            "layer output over 4 GiB",
            net("[convolutional]\nfilters=2000000\nsize=1\n"), // 2e6 x 32 x 32 floats
            5,
            "over the 4 GiB limit",
        ),
        // --- [route] / [shortcut] ---
        case(
            "route to a layer that does not exist",
            // conv 5-6, route header 7, layers= on 8: layer 1 - 5 = -4
            net("[convolutional]\nfilters=8\n[route]\nlayers=-5\n"),
            8,
            "layers=-5 refers to layer -4, which is not an earlier layer",
        ),
        case(
            "route forward reference",
            net("[convolutional]\nfilters=8\n[route]\nlayers=3\n"),
            8,
            "layers=3 refers to layer 3, which is not an earlier layer (expected 0..=0)",
        ),
        case(
            "route to itself",
            net("[convolutional]\nfilters=8\n[route]\nlayers=1\n"),
            8,
            "layers=1 refers to layer 1",
        ),
        case(
            "route without layers",
            net("[convolutional]\nfilters=8\n[route]\ngroups=1\n"),
            7,
            "needs layers=",
        ),
        case(
            "route with mismatched spatial sizes",
            // conv 32x32 (5-6), maxpool 16x16 (7-9), route header 10
            net("[convolutional]\nfilters=8\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n"),
            10,
            "input 1 is 32x32 but input 0 is 16x16",
        ),
        case(
            "shortcut with a non-integer size ratio",
            // conv 32x32 (5-6), conv 3x3/3 -> 10x10 (7-11), shortcut header 12
            net("[convolutional]\nfilters=8\n[convolutional]\nfilters=8\nsize=3\nstride=3\npad=0\n[shortcut]\nfrom=-2\n"),
            12,
            "shortcut needs equal sizes or an integer ratio",
        ),
        // --- [yolo] ---
        case(
            "yolo with wrong filters in the previous conv",
            // conv 5-7, yolo header 8: 3 x (1 + 5) = 18 channels needed
            net("[convolutional]\nfilters=20\nsize=1\n[yolo]\nmask=0,1,2\nanchors=10,14,23,27,37,58\nclasses=1\nnum=3\n"),
            8,
            "expects 18 input channels",
        ),
        case(
            "yolo mask index >= num",
            net("[convolutional]\nfilters=18\nsize=1\n[yolo]\nmask=0,1,3\nanchors=10,14,23,27,37,58\nclasses=1\nnum=3\n"),
            9,
            "mask value 3 needs anchor pair 3, but num=3 and anchors= has 3 pairs",
        ),
        case(
            "yolo negative mask index",
            net("[convolutional]\nfilters=18\nsize=1\n[yolo]\nmask=0,-1,2\nanchors=10,14,23,27,37,58\nclasses=1\nnum=3\n"),
            9,
            "mask value -1: expected an anchor index >= 0",
        ),
        case(
            // Too few anchors for the mask: num=1 but mask uses pair 2, and anchors=
            // (line 9) has 2 pairs. Too few for num alone is only a warning (below).
            "yolo too few anchors for the mask",
            net("[convolutional]\nfilters=18\nsize=1\n[yolo]\nanchors=10,14,23,27\nmask=0,1,2\nclasses=1\nnum=1\n"),
            10,
            "mask value 2 needs anchor pair 2, but num=1 and anchors= has 2 pairs",
        ),
        case(
            "yolo non-number anchor",
            net("[convolutional]\nfilters=18\nsize=1\n[yolo]\nmask=0,1,2\nanchors=10,14,x,27,37,58\nclasses=1\nnum=3\n"),
            10,
            "expected a number",
        ),
        case(
            // Regression: default anchors and mask were allocated from num (16 GiB, abort).
            "yolo absurd num without anchors",
            net("[convolutional]\nfilters=18\nsize=1\n[yolo]\nmask=0\nclasses=1\nnum=2147483647\n"),
            11,
            "num=2147483647: expected at most",
        ),
        case(
            "region absurd num without anchors",
            net("[convolutional]\nfilters=18\nsize=1\n[region]\nclasses=1\nnum=2147483647\n"),
            10,
            "num=2147483647: expected at most",
        ),
        // --- other layers ---
        case(
            "upsample stride=0",
            net("[convolutional]\nfilters=8\n[upsample]\nstride=0\n"),
            8,
            "stride=0: expected a non-zero integer",
        ),
        case(
            "reorg stride not dividing the size",
            net("[convolutional]\nfilters=8\n[reorg]\nstride=3\n"), // reorg header 7
            7,
            "reorg stride=3 does not divide the 32x32 input",
        ),
        case(
            "dropout probability out of range",
            net("[convolutional]\nfilters=8\n[dropout]\nprobability=1.5\n"),
            8,
            "probability=1.5: expected a value in [0, 1)",
        ),
        case(
            "maxpool window larger than the padded input",
            net("[maxpool]\nsize=40\nstride=1\npadding=0\n"),
            5,
            "does not fit the 32x32 input",
        ),
        // --- whole file ---
        CfgCase {
            name: "empty file",
            text: String::new(),
            line: None,
            expect: "no sections: expected a Darknet cfg starting with [net]",
        },
        CfgCase {
            name: "only comments and blank lines",
            text: "# nothing here\n\n; still nothing\n".into(),
            line: None,
            expect: "no sections",
        },
    ]
}

#[test]
fn malformed_cfgs_are_one_line_errors_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cfg_cases();
    assert!(cases.len() >= 30);
    for c in &cases {
        // Lines the cfg has, so the expected line is at least plausible.
        if let Some(line) = c.line {
            assert!(
                (1..=c.text.lines().count()).contains(&line),
                "case {}: line {line} is outside the cfg",
                c.name
            );
        }
        fs::write(dir.path().join("bad.cfg"), &c.text).unwrap();
        let run = ternc(dir.path(), &["inspect", "bad.cfg"]);
        match c.line {
            Some(line) => {
                let at = format!("error: bad.cfg:{line}: ");
                assert_bad_input(c.name, &run, &[&at, c.expect]);
            }
            None => {
                assert_bad_input(c.name, &run, &["error: bad.cfg: ", c.expect]);
                // No line number: the file name is followed by ": ", not ":N:".
                assert!(run.stderr.starts_with("error: bad.cfg: "), "case {}: {}", c.name, run.stderr);
            }
        }
        assert!(run.stdout.is_empty(), "case {}: stdout {:?}", c.name, run.stdout);
    }
}

#[test]
fn missing_and_non_utf8_cfgs() {
    let dir = tempfile::tempdir().unwrap();
    let run = ternc(dir.path(), &["inspect", "nope.cfg"]);
    assert_bad_input("missing cfg", &run, &["error: nope.cfg: cannot read cfg"]);

    // Invalid UTF-8 in a value is read lossily and rejected as a value, not a panic.
    let mut bytes = NET.as_bytes().to_vec();
    bytes.extend_from_slice(b"[convolutional]\nfilters=\xff\xfe\n");
    fs::write(dir.path().join("bad.cfg"), bytes).unwrap();
    let run = ternc(dir.path(), &["inspect", "bad.cfg"]);
    assert_bad_input("non-utf8 value", &run, &["bad.cfg:6: ", "expected an integer"]);
}

/// What Darknet tolerates is a warning naming the line, not an error.
#[test]
fn tolerated_input_warns_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, expect) in [
        (
            "yolo with too few anchors for num",
            // anchors= on line 10: 2 pairs for num=3, filled with 0.5 as in Darknet
            net("[convolutional]\nfilters=18\nsize=1\n[yolo]\nmask=0,1,2\nanchors=10,14,23,27\nclasses=1\nnum=3\n"),
            "bad.cfg:10: warning: 4 anchor values for 3 anchors: expected 6",
        ),
        (
            "unknown key",
            net("[convolutional]\nfilters=8\nbogus=1\n"),
            "bad.cfg:7: warning: unknown key 'bogus'",
        ),
        (
            "repeated key",
            net("[convolutional]\nfilters=8\nfilters=16\n"),
            "bad.cfg:7: warning: 'filters' repeats line 6",
        ),
    ] {
        fs::write(dir.path().join("bad.cfg"), &text).unwrap();
        let run = ternc(dir.path(), &["inspect", "bad.cfg"]);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{name}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(expect), "{name}: expected {expect:?}: {}", run.stderr);
    }
}

// ---------------------------------------------------------------------------
// Weights files
// ---------------------------------------------------------------------------

/// Two conv layers, the first with batchnorm.
const TINY: &str = "\
[net]
width=16
height=16
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=4
size=1
stride=1
activation=linear
";

const HEADER: usize = 20;
/// Layer 0: biases 8, scales 8, rolling mean 8, rolling variance 8, weights 3·8·3·3.
const L0_BIASES: usize = HEADER;
const L0_SCALES: usize = L0_BIASES + 4 * 8;
const L0_MEAN: usize = L0_SCALES + 4 * 8;
const L0_VARIANCE: usize = L0_MEAN + 4 * 8;
const L0_WEIGHTS: usize = L0_VARIANCE + 4 * 8;
/// Layer 1: biases 4, weights 8·4·1·1.
const L1_BIASES: usize = L0_WEIGHTS + 4 * (3 * 8 * 3 * 3);
const L1_WEIGHTS: usize = L1_BIASES + 4 * 4;
const END: usize = L1_WEIGHTS + 4 * (8 * 4);
const TOTAL_PARAMS: usize = (END - HEADER) / 4;

fn total_params(dir: &Path, cfg: &str) -> u64 {
    let run = ternc(dir, &["inspect", cfg, "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["total_params"].as_u64().unwrap()
}

/// A directory holding `tiny.cfg` and a valid `good.weights`.
fn tiny_model() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("tiny.cfg"), TINY).unwrap();
    let run = ternc(dir.path(), &["init", "tiny.cfg", "-o", "good.weights"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let good = fs::read(dir.path().join("good.weights")).unwrap();
    assert_eq!(good.len(), END, "layout constants disagree with ternc");
    assert_eq!(total_params(dir.path(), "tiny.cfg"), TOTAL_PARAMS as u64);
    // The good file loads.
    let run = ternc(dir.path(), &["inspect", "tiny.cfg", "--weights", "good.weights"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    (dir, good)
}

fn with_f32(good: &[u8], at: usize, v: f32) -> Vec<u8> {
    let mut b = good.to_vec();
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b
}

#[test]
fn malformed_weights_name_the_byte_offset() {
    let (dir, good) = tiny_model();
    let mut extra = good.clone();
    extra.extend_from_slice(&[0u8; 8]);
    // (name, file contents, expected offset, expected substring)
    let cases: Vec<(&str, Vec<u8>, usize, &str)> = vec![
        ("empty file", vec![], 0, "file ends inside the Darknet header"),
        (
            "truncated to 10 bytes (inside the header)",
            good[..10].to_vec(),
            10,
            "file ends inside the Darknet header: expected 12 bytes, found 10",
        ),
        (
            "truncated inside the 64-bit seen counter",
            good[..19].to_vec(),
            19,
            "expected 20 bytes, found 19",
        ),
        (
            "header only",
            good[..HEADER].to_vec(),
            L0_BIASES,
            "file ends inside layer 0 (convolutional, cfg line 6) biases",
        ),
        (
            "truncated inside layer 0 scales",
            good[..L0_SCALES + 10].to_vec(),
            L0_SCALES,
            "file ends inside layer 0 (convolutional, cfg line 6) scales: expected 8 floats",
        ),
        (
            "truncated inside layer 1 biases",
            good[..L1_BIASES + 8].to_vec(),
            L1_BIASES,
            "file ends inside layer 1 (convolutional, cfg line 14) biases",
        ),
        (
            "truncated in the middle of layer 1 weights",
            good[..L1_WEIGHTS + 40].to_vec(),
            L1_WEIGHTS,
            "file ends inside layer 1 (convolutional, cfg line 14) weights: expected 32 floats, 40 bytes left",
        ),
        (
            "one byte short",
            good[..END - 1].to_vec(),
            L1_WEIGHTS,
            "--weights-prefix",
        ),
        (
            "8 extra trailing bytes",
            extra,
            END,
            "8 trailing bytes after the last layer",
        ),
        (
            "NaN in layer 0 weights",
            with_f32(&good, L0_WEIGHTS + 4 * 5, f32::NAN),
            L0_WEIGHTS + 4 * 5,
            "layer 0 (convolutional) weights holds NaN: expected finite floats",
        ),
        (
            "NaN in layer 0 rolling variance",
            with_f32(&good, L0_VARIANCE, f32::NAN),
            L0_VARIANCE,
            "rolling_variance holds NaN",
        ),
        (
            "infinity in layer 1 biases",
            with_f32(&good, L1_BIASES + 4 * 2, f32::INFINITY),
            L1_BIASES + 4 * 2,
            "layer 1 (convolutional) biases holds inf",
        ),
        (
            "NaN in the last float",
            with_f32(&good, END - 4, f32::NAN),
            END - 4,
            "weights holds NaN",
        ),
    ];
    for (name, bytes, offset, expect) in &cases {
        fs::write(dir.path().join("bad.weights"), bytes).unwrap();
        let run = ternc(dir.path(), &["inspect", "tiny.cfg", "--weights", "bad.weights"]);
        let at = format!("error: bad.weights: byte offset {offset}: ");
        assert_bad_input(name, &run, &[&at, expect]);
    }
}

#[test]
fn weights_prefix_and_missing_files() {
    let (dir, good) = tiny_model();

    // A backbone prefix: the file ends right after layer 0.
    fs::write(dir.path().join("prefix.weights"), &good[..L1_BIASES]).unwrap();
    let run =
        ternc(dir.path(), &["inspect", "tiny.cfg", "--weights", "prefix.weights", "--weights-prefix", "1"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));

    // The same file without the prefix is truncated at layer 1.
    let run = ternc(dir.path(), &["inspect", "tiny.cfg", "--weights", "prefix.weights"]);
    let at = format!("error: prefix.weights: byte offset {L1_BIASES}: ");
    assert_bad_input("prefix without --weights-prefix", &run, &[&at, "file ends inside layer 1"]);

    // With a prefix, extra bytes after it are ignored, but layer 0 must still be whole.
    let run =
        ternc(dir.path(), &["inspect", "tiny.cfg", "--weights", "good.weights", "--weights-prefix", "1"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    fs::write(dir.path().join("short.weights"), &good[..L0_WEIGHTS + 4]).unwrap();
    let run =
        ternc(dir.path(), &["inspect", "tiny.cfg", "--weights", "short.weights", "--weights-prefix", "1"]);
    let at = format!("error: short.weights: byte offset {L0_WEIGHTS}: ");
    assert_bad_input("prefix file short of layer 0", &run, &[&at, "file ends inside layer 0"]);

    // A prefix longer than the model.
    let run =
        ternc(dir.path(), &["inspect", "tiny.cfg", "--weights", "good.weights", "--weights-prefix", "3"]);
    assert_bad_input(
        "prefix too long",
        &run,
        &["error: good.weights: ", "--weights-prefix 3 is more than the 2 layers"],
    );

    // A weights path that does not exist.
    let run = ternc(dir.path(), &["inspect", "tiny.cfg", "--weights", "missing.weights"]);
    assert_bad_input("missing weights", &run, &["error: missing.weights: cannot read weights"]);
}

// ---------------------------------------------------------------------------
// Atomic output
// ---------------------------------------------------------------------------

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn init_on_bad_cfg_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = net("[convolutional]\nfilters=abc\n");
    fs::write(dir.path().join("bad.cfg"), &bad).unwrap();
    let run = ternc(dir.path(), &["init", "bad.cfg", "-o", "out.weights"]);
    assert_bad_input("init bad cfg", &run, &["error: bad.cfg:6: ", "filters=abc"]);
    assert_eq!(dir_entries(dir.path()), ["bad.cfg"], "no output, no temporary files");

    // An existing output survives a failed run untouched.
    fs::write(dir.path().join("out.weights"), b"previous contents").unwrap();
    let run = ternc(dir.path(), &["init", "bad.cfg", "-o", "out.weights"]);
    assert_bad_input("init bad cfg over an existing file", &run, &["bad.cfg:6: "]);
    assert_eq!(fs::read(dir.path().join("out.weights")).unwrap(), b"previous contents");
    assert_eq!(dir_entries(dir.path()), ["bad.cfg", "out.weights"]);

    // An output directory that does not exist: an error (not bad input), no panic.
    fs::write(dir.path().join("good.cfg"), TINY).unwrap();
    let run = ternc(dir.path(), &["init", "good.cfg", "-o", "no/such/dir/out.weights"]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!matches!(run.code, Some(0) | Some(101) | None), "{:?} {}", run.code, run.stderr);
    assert_eq!(dir_entries(dir.path()), ["bad.cfg", "good.cfg", "out.weights"]);
}

#[test]
fn init_writes_whole_deterministic_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::write(p.join("good.cfg"), TINY).unwrap();
    let total = total_params(p, "good.cfg");

    for (out, seed) in [("a.weights", "7"), ("b.weights", "7"), ("c.weights", "8")] {
        let run = ternc(p, &["init", "good.cfg", "-o", out, "--seed", seed]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"));
    }
    let a = fs::read(p.join("a.weights")).unwrap();
    let b = fs::read(p.join("b.weights")).unwrap();
    let c = fs::read(p.join("c.weights")).unwrap();
    assert_eq!(a.len() as u64, 20 + 4 * total);
    assert_eq!(c.len(), a.len());
    assert!(a == b, "the same seed must give byte-identical files");
    assert!(a != c, "a different seed must give a different file");
    assert_eq!(
        dir_entries(p),
        ["a.weights", "b.weights", "c.weights", "good.cfg"],
        "no stray temporary files"
    );

    // Overwriting an existing file replaces it whole.
    let run = ternc(p, &["init", "good.cfg", "-o", "c.weights", "--seed", "7"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(fs::read(p.join("c.weights")).unwrap() == a);
    assert_eq!(dir_entries(p).len(), 4);

    // What init writes, inspect reads back.
    let run = ternc(p, &["inspect", "good.cfg", "--weights", "a.weights"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}
