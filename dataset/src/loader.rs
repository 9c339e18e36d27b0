//! Training batches on worker threads, deterministic per seed.
//!
//! The loader walks the samples epoch by epoch, each epoch in its own random order
//! (a shuffle seeded by `(seed, epoch)`). Batch `i` of `n` images takes the positions
//! `i·n .. i·n+n` of that endless sequence, and the sample at position `p` is augmented
//! with its own ChaCha RNG seeded by `(seed, p)`. So a batch depends only on the seed,
//! the batch index, the size and `n`: not on the number of threads, nor on which
//! batches were loaded before (a resumed run sees the same data).
//!
//! A sample whose image cannot be decoded or whose label file has a bad line is
//! reported (path and line, in [`LoaderStats::errors`]), counted once, remembered and
//! replaced by the next sample of the same epoch order (so the batch stays full).
//! A missing label file means "no objects", as in Darknet, and is counted.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use ternc_ir::InputError;
use ternc_runtime::image;

use crate::augment::{Augment, Truth};
use crate::dataset::Sample;
use crate::labels::read_labels;

/// How the loader works.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    pub seed: u64,
    /// Worker threads decoding and augmenting (at least 1).
    pub threads: usize,
    /// The number of classes: a label with a larger index is a bad line.
    pub classes: usize,
    pub augment: Augment,
    /// Shuffle each epoch (`true`), or keep the list order (evaluation, tests).
    pub shuffle: bool,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions { seed: 0, threads: 1, classes: 1, augment: Augment::default(), shuffle: true }
    }
}

/// One batch: `images` is `[n, 3, h, w]`, RGB in 0..1, planar per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub index: u64,
    pub n: usize,
    pub w: usize,
    pub h: usize,
    pub images: Vec<f32>,
    /// Per image, its boxes relative to the network input.
    pub truths: Vec<Vec<Truth>>,
    /// Per image, the file it came from.
    pub paths: Vec<PathBuf>,
}

/// What went wrong so far (counts are of distinct samples).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoaderStats {
    /// Samples skipped because the image or its labels could not be read.
    pub skipped: usize,
    /// Samples whose label file does not exist (trained as images without objects).
    pub missing_labels: usize,
    /// One line per skipped sample: `FILE[:LINE]: message`.
    pub errors: Vec<String>,
}

/// Mixes seeds (SplitMix64's finaliser): nearby inputs give unrelated outputs.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG of the sample at `position` (attempt `attempt` when replacing a bad one).
pub fn sample_rng(seed: u64, position: u64, attempt: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(seed ^ 0x5EED)
        ^ mix(position)
        ^ attempt.wrapping_mul(0xA24B_AED4_963E_E407)))
}

struct Inner {
    samples: Vec<Sample>,
    opts: LoaderOptions,
    pool: rayon::ThreadPool,
    /// Epoch orders, computed once each (the last few are kept).
    orders: Mutex<HashMap<u64, Arc<Vec<usize>>>>,
    bad: Mutex<HashSet<usize>>,
    stats: Mutex<LoaderStats>,
    missing: Mutex<HashSet<usize>>,
}

/// Loads batches; cheap to clone (shared state).
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

/// A batch being loaded in the background ([`Loader::prefetch`]).
pub struct Pending {
    rx: mpsc::Receiver<Result<Batch, InputError>>,
}

impl Pending {
    /// Waits for the batch.
    pub fn wait(self) -> Result<Batch, InputError> {
        self.rx.recv().unwrap_or_else(|_| {
            Err(InputError::whole("<loader>", "the loader thread stopped without a batch".to_string()))
        })
    }
}

/// One decoded, augmented sample.
type Loaded = (image::Image, Vec<Truth>, PathBuf);

impl Loader {
    pub fn new(samples: Vec<Sample>, opts: LoaderOptions) -> Result<Loader, String> {
        if samples.is_empty() {
            return Err("no samples: expected at least one image in the list".into());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .thread_name(|i| format!("ternc-loader-{i}"))
            .build()
            .map_err(|e| format!("cannot start loader threads: {e}"))?;
        Ok(Loader {
            inner: Arc::new(Inner {
                samples,
                opts,
                pool,
                orders: Mutex::new(HashMap::new()),
                bad: Mutex::new(HashSet::new()),
                stats: Mutex::new(LoaderStats::default()),
                missing: Mutex::new(HashSet::new()),
            }),
        })
    }

    pub fn len(&self) -> usize {
        self.inner.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.samples.is_empty()
    }

    pub fn options(&self) -> &LoaderOptions {
        &self.inner.opts
    }

    /// The epoch that batch `index` of `n` images starts in.
    pub fn epoch_of(&self, index: u64, n: usize) -> u64 {
        index * n as u64 / self.len() as u64
    }

    /// Loads batch `index`: `n` images of `size = (w, h)`, in parallel on the
    /// loader's threads. Fails only when no sample can be loaded at all.
    pub fn batch(&self, index: u64, size: (usize, usize), n: usize) -> Result<Batch, InputError> {
        self.inner.batch(index, size, n)
    }

    /// Starts loading batch `index` in the background; [`Pending::wait`] returns it.
    /// The typical loop prefetches batch `i+1` (at the size the trainer picked for
    /// it) before training on batch `i`.
    pub fn prefetch(&self, index: u64, size: (usize, usize), n: usize) -> Pending {
        let (tx, rx) = mpsc::sync_channel(1);
        let inner = Arc::clone(&self.inner);
        std::thread::Builder::new()
            .name("ternc-prefetch".into())
            .spawn(move || {
                let _ = tx.send(inner.batch(index, size, n));
            })
            .expect("spawn the prefetch thread");
        Pending { rx }
    }

    pub fn stats(&self) -> LoaderStats {
        self.inner.stats.lock().unwrap().clone()
    }
}

impl Inner {
    fn order(&self, epoch: u64) -> Arc<Vec<usize>> {
        let mut orders = self.orders.lock().unwrap();
        if let Some(o) = orders.get(&epoch) {
            return Arc::clone(o);
        }
        let mut o: Vec<usize> = (0..self.samples.len()).collect();
        if self.opts.shuffle {
            o.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(mix(self.opts.seed ^ 0x0D0E) ^ epoch)));
        }
        let o = Arc::new(o);
        if orders.len() > 4 {
            let oldest = *orders.keys().min().unwrap();
            orders.remove(&oldest);
        }
        orders.insert(epoch, Arc::clone(&o));
        o
    }

    fn batch(&self, index: u64, (w, h): (usize, usize), n: usize) -> Result<Batch, InputError> {
        let len = self.samples.len() as u64;
        let slots: Vec<Result<Loaded, InputError>> = self.pool.install(|| {
            (0..n as u64)
                .into_par_iter()
                .map(|i| {
                    let position = index * n as u64 + i;
                    let order = self.order(position / len);
                    self.load_slot(&order, position, (position % len) as usize, w, h)
                })
                .collect()
        });
        let mut batch = Batch {
            index,
            n,
            w,
            h,
            images: Vec::with_capacity(n * 3 * w * h),
            truths: Vec::with_capacity(n),
            paths: Vec::with_capacity(n),
        };
        for slot in slots {
            let (im, truths, path) = slot?;
            batch.images.extend_from_slice(&im.data);
            batch.truths.push(truths);
            batch.paths.push(path);
        }
        Ok(batch)
    }

    /// The sample at `position` (index `at` of the epoch's order), or the next good
    /// one in that order.
    fn load_slot(
        &self,
        order: &[usize],
        position: u64,
        at: usize,
        w: usize,
        h: usize,
    ) -> Result<Loaded, InputError> {
        let mut last_err = None;
        for attempt in 0..order.len() {
            let k = order[(at + attempt) % order.len()];
            if self.bad.lock().unwrap().contains(&k) {
                continue;
            }
            let mut rng = sample_rng(self.opts.seed, position, attempt as u64);
            match self.load_one(k, w, h, &mut rng) {
                Ok(x) => return Ok(x),
                Err(e) => {
                    if self.bad.lock().unwrap().insert(k) {
                        let mut stats = self.stats.lock().unwrap();
                        stats.skipped += 1;
                        stats.errors.push(e.to_string());
                    }
                    last_err = Some(e);
                }
            }
        }
        let why = last_err.map_or_else(|| "every sample was skipped before".to_string(), |e| e.to_string());
        Err(InputError::whole(
            &self.samples[0].image,
            format!("no sample of the list can be loaded ({} samples); the last error: {why}", order.len()),
        ))
    }

    fn load_one(&self, k: usize, w: usize, h: usize, rng: &mut ChaCha8Rng) -> Result<Loaded, InputError> {
        let s = &self.samples[k];
        let labels = read_labels(&s.label, Some(self.opts.classes))?;
        let im = image::load(&s.image)?;
        let labels = labels.unwrap_or_else(|| {
            if self.missing.lock().unwrap().insert(k) {
                self.stats.lock().unwrap().missing_labels += 1;
            }
            Vec::new()
        });
        let (x, truths) = self.opts.augment.apply(&im, &labels, w, h, rng);
        Ok((x, truths, s.image.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_mix() {
        assert_ne!(mix(0), mix(1));
        use rand::Rng;
        let a: u64 = sample_rng(1, 2, 0).gen();
        let b: u64 = sample_rng(1, 2, 1).gen();
        let c: u64 = sample_rng(1, 3, 0).gen();
        let d: u64 = sample_rng(1, 2, 0).gen();
        assert!(a != b && a != c && a == d);
    }

    #[test]
    fn empty_is_an_error() {
        assert!(Loader::new(Vec::new(), LoaderOptions::default()).is_err());
    }
}
