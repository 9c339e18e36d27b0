//! Running JIT-compiled kernels: a graph is prepared (TWN codes for `ternary=1`
//! layers, batchnorm folded), lowered to a kernel program (`ternc_codegen::lower`) and
//! compiled for the host with Cranelift; [`JitModel::run`] then calls the kernels in
//! order on one activation arena per image. Kernels with parallel loops are split
//! into one part per thread ([`JitModel::with_threads`]); the parts of one kernel
//! run at the same time and the next kernel starts when all are done.
//!
//! ```no_run
//! # use ternc_runtime::{jit::JitModel, Tensor};
//! # fn demo(graph: &ternc_ir::Graph, input: &Tensor) {
//! let model = JitModel::compile(graph).unwrap();
//! let heads = model.run(input).unwrap(); // as Reference::run: (layer, output) per head
//! # }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ternc_codegen::cranelift::{self, Compiled};
use ternc_codegen::{lower, prepare, CodegenError, LowerOptions, Program};
use ternc_ir::{Graph, Shape};

use crate::{LayerDone, RunError, Tensor};

/// A graph compiled to host code.
pub struct JitModel {
    program: Program,
    code: Compiled,
    input: Shape,
    /// Kernels of each layer, as a range of kernel indices (empty for views).
    layer_kernels: Vec<std::ops::Range<usize>>,
    /// One arena per image of the last batch, reused across runs.
    arenas: Mutex<Vec<Vec<f32>>>,
    compile_time: Duration,
    /// Worker threads for parallel kernels (`None`: run on the calling thread).
    pool: Option<rayon::ThreadPool>,
}

/// Parts each thread's share of a parallel kernel is cut into.
const PARTS_PER_THREAD: usize = 4;

/// Detection heads (or the last layer): `(layer, output)` in layer order.
pub type Heads = Vec<(usize, Tensor)>;

/// The arena shared by the parts of one kernel.
#[derive(Clone, Copy)]
struct Shared(*mut f32);

impl Shared {
    /// (A method, so closures capture the `Send` wrapper, not the raw pointer.)
    fn ptr(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: the parts of a parallel kernel write disjoint elements (`Loop::parallel`)
// and nothing else touches the arena while they run.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl std::fmt::Debug for JitModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitModel")
            .field("name", &self.program.name)
            .field("kernels", &self.program.kernels.len())
            .field("arena_floats", &self.program.arena_len)
            .field("compile_time", &self.compile_time)
            .finish()
    }
}

impl JitModel {
    /// Compiles `graph` (parameters loaded) with the default lowering options.
    pub fn compile(graph: &Graph) -> Result<JitModel, CodegenError> {
        Self::compile_with(graph, &LowerOptions::default())
    }

    pub fn compile_with(graph: &Graph, opts: &LowerOptions) -> Result<JitModel, CodegenError> {
        let start = Instant::now();
        let prepared = prepare(graph)?;
        let program = lower(&prepared, opts)?;
        let code = cranelift::compile(&program)?;
        let mut layer_kernels = Vec::with_capacity(program.layers.len());
        let mut k = 0;
        for i in 0..program.layers.len() {
            let first = k;
            while k < program.kernels.len() && program.kernels[k].layer == Some(i) {
                k += 1;
            }
            layer_kernels.push(first..k);
        }
        if k != program.kernels.len() {
            return Err(CodegenError::Invalid("kernels are not in layer order".to_string()));
        }
        Ok(JitModel {
            input: graph.input_shape(),
            program,
            code,
            layer_kernels,
            arenas: Mutex::new(Vec::new()),
            compile_time: start.elapsed(),
            pool: None,
        })
    }

    /// Splits parallel kernels across `threads` worker threads (1: run every kernel
    /// on the calling thread).
    pub fn with_threads(mut self, threads: usize) -> Result<JitModel, CodegenError> {
        self.pool = match threads {
            0 | 1 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| CodegenError::Invalid(format!("thread pool: {e}")))?,
            ),
        };
        Ok(self)
    }

    /// Threads the kernels run on.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// The kernel program the model runs.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Wall time of [`compile`](Self::compile): preparation, lowering, Cranelift.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Runs a batch; returns the detection heads (or the last layer when the model has
    /// none), in layer order, exactly as [`Reference::run`](crate::Reference::run).
    pub fn run(&self, input: &Tensor) -> Result<Vec<(usize, Tensor)>, RunError> {
        self.execute(input, None, None)
    }

    /// [`run`](Self::run), calling `on_layer` with every layer's output (the whole
    /// batch) as it is produced, as the reference interpreter does.
    pub fn run_with(
        &self,
        input: &Tensor,
        mut on_layer: impl FnMut(LayerDone),
    ) -> Result<Vec<(usize, Tensor)>, RunError> {
        self.execute(input, Some(&mut on_layer), None)
    }

    /// [`run`](Self::run), also returning each layer's wall time (without the copies
    /// of every layer's output that [`run_with`](Self::run_with) makes).
    pub fn run_timed(&self, input: &Tensor) -> Result<(Heads, Vec<Duration>), RunError> {
        let mut times = vec![Duration::ZERO; self.layer_kernels.len()];
        let heads = self.execute(input, None, Some(&mut times))?;
        Ok((heads, times))
    }

    fn execute(
        &self,
        input: &Tensor,
        mut on_layer: Option<&mut dyn FnMut(LayerDone)>,
        mut times: Option<&mut [Duration]>,
    ) -> Result<Vec<(usize, Tensor)>, RunError> {
        if input.shape != self.input {
            return Err(RunError::InputShape { got: input.dims(), want: self.input });
        }
        let mut arenas = self.arenas.lock().unwrap_or_else(|e| e.into_inner());
        arenas.resize_with(input.n, Vec::new);
        for a in arenas.iter_mut() {
            a.resize(self.code.buffer_lens().1, 0.0);
        }
        for (i, kernels) in self.layer_kernels.iter().enumerate() {
            let start = Instant::now();
            for (b, arena) in arenas.iter_mut().enumerate() {
                for k in kernels.clone() {
                    self.run_kernel(k, input.image(b), arena);
                }
            }
            if let Some(t) = times.as_mut() {
                t[i] = start.elapsed();
            }
            if let Some(f) = on_layer.as_mut() {
                let elapsed = start.elapsed();
                let output = self.layer_output(i, &arenas);
                f(LayerDone { layer: i, output: &output, elapsed });
            }
        }
        Ok(self.program.outputs.iter().map(|&l| (l, self.layer_output(l, &arenas))).collect())
    }

    fn run_kernel(&self, k: usize, input: &[f32], arena: &mut [f32]) {
        let pool = match &self.pool {
            Some(pool) if self.program.kernels[k].is_parallel() => pool,
            _ => return self.code.run_kernel(k, input, arena),
        };
        let (input_len, arena_len) = self.code.buffer_lens();
        assert!(input.len() >= input_len && arena.len() >= arena_len, "buffers too short for the program");
        // more parts than threads, taken as threads come free: a thread that the OS
        // delays (other processes) or that drew a costlier share holds up less
        let parts = pool.current_num_threads() * PARTS_PER_THREAD;
        let (x, a) = (input.as_ptr() as usize, Shared(arena.as_mut_ptr()));
        pool.install(|| {
            use rayon::prelude::*;
            (0..parts).into_par_iter().with_max_len(1).for_each(|part| {
                // SAFETY: the buffers are long enough (checked above) and borrowed for
                // this call; the parts of one parallel kernel write disjoint elements.
                unsafe { self.code.run_kernel_part(k, x as *const f32, a.ptr(), part, parts) }
            })
        });
    }

    /// Layer `i`'s output for every image, from the arenas.
    fn layer_output(&self, i: usize, arenas: &[Vec<f32>]) -> Tensor {
        let l = &self.program.layers[i];
        let [c, h, w] = l.shape;
        let mut data = Vec::with_capacity(arenas.len() * l.len());
        for a in arenas {
            data.extend_from_slice(&a[l.offset..l.offset + l.len()]);
        }
        Tensor::from_vec(arenas.len(), Shape::new(c, h, w), data)
    }
}
