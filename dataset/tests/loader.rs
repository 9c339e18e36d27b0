//! The loader on a small synthetic data set: plain resizes without augmentation,
//! determinism across thread counts, and bad samples skipped and counted.

use std::path::{Path, PathBuf};

use ternc_dataset::synth::{self, SynthOptions};
use ternc_dataset::{Augment, Dataset, Loader, LoaderOptions, Sample, Truth};
use ternc_runtime::image;

fn synth_set(dir: &Path, images: usize) -> Dataset {
    let opts = SynthOptions { images, size: 48, seed: 11, valid_every: 4, ..SynthOptions::default() };
    let s = synth::write(dir, &opts).unwrap();
    Dataset::open(&s.data_file).unwrap()
}

fn opts(seed: u64, threads: usize, augment: Augment) -> LoaderOptions {
    LoaderOptions { seed, threads, classes: 5, augment, shuffle: true }
}

#[test]
fn without_augmentation_a_batch_is_the_resized_images_and_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth_set(dir.path(), 8);
    assert_eq!((ds.train.len(), ds.valid.len()), (6, 2));
    let loader =
        Loader::new(ds.train.clone(), LoaderOptions { shuffle: false, ..opts(0, 2, Augment::none()) })
            .unwrap();
    let b = loader.batch(1, (40, 32), 4).unwrap();
    assert_eq!((b.n, b.w, b.h, b.images.len()), (4, 40, 32, 4 * 3 * 40 * 32));
    // Batch 1 of 4 without shuffling: samples 4, 5, then (epoch 1) 0, 1.
    let want = [4, 5, 0, 1];
    for (slot, &k) in want.iter().enumerate() {
        let s = &ds.train[k];
        assert_eq!(b.paths[slot], s.image);
        let im = image::load(&s.image).unwrap();
        let x = image::resize(&im, 40, 32);
        assert_eq!(&b.images[slot * 3 * 40 * 32..][..3 * 40 * 32], &x.data[..], "slot {slot}");
        let labels = ternc_dataset::labels::read_labels(&s.label, Some(5)).unwrap().unwrap();
        let truths: Vec<Truth> =
            labels.iter().map(|l| Truth { class: l.class, cx: l.cx, cy: l.cy, w: l.w, h: l.h }).collect();
        assert_eq!(b.truths[slot], truths, "slot {slot}");
        assert!(!truths.is_empty());
    }
    assert_eq!(loader.stats().skipped, 0);
}

#[test]
fn same_seed_same_batch_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth_set(dir.path(), 12);
    let aug = Augment { jitter: 0.3, hue: 0.1, saturation: 1.5, exposure: 1.5, ..Augment::default() };
    let one = Loader::new(ds.train.clone(), opts(42, 1, aug.clone())).unwrap();
    let four = Loader::new(ds.train.clone(), opts(42, 4, aug.clone())).unwrap();
    let other = Loader::new(ds.train.clone(), opts(43, 4, aug.clone())).unwrap();
    for it in [0u64, 3, 7] {
        let a = one.batch(it, (32, 32), 5).unwrap();
        // Loaded out of order, in the background, after other batches: the same.
        let pending = four.prefetch(it, (32, 32), 5);
        let _ = four.batch(it + 1, (32, 32), 5).unwrap();
        assert_eq!(pending.wait().unwrap(), a);
        assert_ne!(other.batch(it, (32, 32), 5).unwrap().images, a.images);
        // Augmented: not the plain resize; boxes valid.
        for t in a.truths.iter().flatten() {
            assert!(t.cx > 0.0 && t.cx <= 1.0 && t.cy > 0.0 && t.cy <= 1.0, "{t:?}");
            assert!(t.w >= 1.0 / 32.0 && t.w <= 1.0 && t.h >= 1.0 / 32.0 && t.h <= 1.0, "{t:?}");
            assert!(t.class < 5);
        }
        assert!(a.images.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    // Each epoch visits every sample once.
    let b0 = one.batch(0, (16, 16), 9).unwrap();
    let mut seen: Vec<&PathBuf> = b0.paths.iter().collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 9);
}

#[test]
fn bad_samples_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth_set(dir.path(), 4);
    let d = dir.path();
    // A missing image, corrupt image bytes, a bad label line, a missing label file.
    std::fs::write(d.join("images/corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(d.join("labels/corrupt.txt"), "0 .5 .5 .2 .2\n").unwrap();
    std::fs::copy(&ds.train[0].image, d.join("images/badlabel.png")).unwrap();
    std::fs::write(d.join("labels/badlabel.txt"), "0 .5 .5 .2 .2\n1 .5 .5 .2\n").unwrap();
    std::fs::copy(&ds.train[0].image, d.join("images/nolabel.png")).unwrap();
    let mut samples = ds.train.clone();
    for name in ["missing", "corrupt", "badlabel", "nolabel"] {
        samples.push(Sample::new(d.join(format!("images/{name}.png"))));
    }
    let n = samples.len(); // 3 good + 4
    let loader = Loader::new(samples, opts(1, 3, Augment::none())).unwrap();
    for it in 0..4 {
        let b = loader.batch(it, (24, 24), n).unwrap();
        assert_eq!(b.paths.len(), n, "the batch stays full");
        assert!(b.paths.iter().all(|p| !p.ends_with("missing.png") && !p.ends_with("corrupt.png")));
    }
    let stats = loader.stats();
    assert_eq!(stats.skipped, 3, "{stats:?}");
    assert_eq!(stats.missing_labels, 1, "{stats:?}");
    let errors = stats.errors.join("\n");
    assert!(errors.contains("missing.png: cannot read the image"), "{errors}");
    assert!(errors.contains("corrupt.png: expected a JPEG or PNG image"), "{errors}");
    let bad_line = format!("{}:2: expected 5 numbers", d.join("labels/badlabel.txt").display());
    assert!(errors.contains(&bad_line), "{errors}");

    // Nothing loadable: an error, not a hang or a panic.
    let hopeless =
        Loader::new(vec![Sample::new(d.join("images/missing.png"))], opts(1, 1, Augment::none())).unwrap();
    let e = hopeless.batch(0, (8, 8), 2).unwrap_err().to_string();
    assert!(e.contains("no sample of the list can be loaded"), "{e}");
}

#[test]
fn synth_is_byte_identical_for_a_seed() {
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let o = SynthOptions { images: 20, size: 64, seed: 5, ..SynthOptions::default() };
    synth::write(a.path(), &o).unwrap();
    // A different thread count must not matter.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| synth::write(b.path(), &o).unwrap());
    synth::write(c.path(), &SynthOptions { seed: 6, ..o.clone() }).unwrap();
    let files =
        ["train.txt", "valid.txt", "synth.names", "synth.data", "images/000007.png", "labels/000019.txt"];
    for f in files {
        let (x, y) = (std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap());
        assert_eq!(x, y, "{f}");
    }
    assert_ne!(
        std::fs::read(a.path().join("images/000007.png")).unwrap(),
        std::fs::read(c.path().join("images/000007.png")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(a.path().join("synth.data")).unwrap(),
        "classes = 5\ntrain = train.txt\nvalid = valid.txt\nnames = synth.names\nbackup = backup\n"
    );
    let train = std::fs::read_to_string(a.path().join("train.txt")).unwrap();
    assert_eq!(train.lines().count(), 18);
    assert!(train.starts_with("images/000000.png\n"));
    let ds = Dataset::open(&a.path().join("synth.data")).unwrap();
    assert_eq!(ds.names, ["circle", "square", "triangle", "cross", "ring"]);
    assert_eq!(ds.valid.len(), 2);
    // The decoded image equals the rendering; labels are inside the image.
    let im = image::load(&ds.valid[0].image).unwrap();
    let r = synth::render(5, 9, 64, &synth::Shape::DEFAULT);
    assert_eq!(im.data[0], r.rgb.get_pixel(0, 0).0[0] as f32 / 255.0);
    let labels = ternc_dataset::labels::read_labels(&ds.valid[0].label, Some(5)).unwrap().unwrap();
    assert_eq!(labels.len(), r.objects.len());
}
