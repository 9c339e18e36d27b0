//! `ternc compile`: a model as an object file with a C API (LLVM backend), or as
//! portable source with the same C API (C99).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ternc_codegen::llvm::{self, Arch, TargetSpec};
use ternc_codegen::{c, hls, lower, opencl, prepare, CodegenError, LowerOptions, TernaryKernel};
use ternc_frontend::atomic::write_atomic;
use ternc_ir::InputError;
use ternc_passes::spec::{describe, Spec};
use ternc_passes::ternarize::{self, Scope};
use ternc_passes::{plan, ternary::DEFAULT_THRESHOLD};

/// Where the object runs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// This machine (its CPU and features).
    Host,
    /// x86_64 Linux (x86-64-v3 unless --cpu).
    #[value(name = "x86_64")]
    X86_64,
    /// aarch64 Linux (NEON baseline unless --cpu, e.g. cortex-a72).
    Aarch64,
    /// Portable C99 source (PREFIX.c + PREFIX.h), ternary weights as 2-bit codes.
    C,
    /// OpenCL C kernels (PREFIX.cl) and C host code embedding them (PREFIX.c + PREFIX.h).
    #[value(name = "opencl")]
    OpenCl,
    /// Vitis HLS C++ (PREFIX.cpp/.h, PREFIX_tb.cpp, PREFIX.tcl, an ap_int stand-in) and a
    /// per-layer report.
    Hls,
}

impl Target {
    /// Whether LLVM compiles it to an object file.
    fn is_object(self) -> bool {
        matches!(self, Target::Host | Target::X86_64 | Target::Aarch64)
    }
}

/// The HLS top function's shape (`--hls-arch`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsArch {
    Sequential,
    Stream,
}

/// The storage of ternary weights in the generated code.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsForm {
    Table,
    Packed,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Darknet model .cfg
    pub cfg: PathBuf,
    #[command(flatten)]
    pub weights: super::WeightsArgs,
    /// Layers to ternarize first (TWN, per layer): N, A-B, -N, all, none, all-but-last, ...
    /// Layers flagged ternary=1 in the cfg are ternary anyway.
    #[arg(long, value_name = "SPEC", conflicts_with = "plan")]
    pub layers: Option<String>,
    /// A stage plan (plan.toml); use with --stage.
    #[arg(long, value_name = "FILE", requires = "stage")]
    pub plan: Option<PathBuf>,
    /// The plan's stage whose layers to ternarize.
    #[arg(long, value_name = "NAME", requires = "plan")]
    pub stage: Option<String>,
    /// Target machine.
    #[arg(long, value_enum, default_value = "host")]
    pub target: Target,
    /// Target CPU (LLVM's name, e.g. cortex-a72, skylake; `native` for this machine's).
    #[arg(long, value_name = "NAME")]
    pub cpu: Option<String>,
    /// How ternary weights are stored: `table` (per output channel, the input offsets of
    /// the +1 and −1 taps: the fastest on CPUs, 4 bytes a nonzero weight) or `packed`
    /// (2-bit codes decoded while summing: 16x smaller than float32). Default: table for
    /// the object targets, packed for c, opencl and hls.
    #[arg(long, value_enum, value_name = "FORM")]
    pub weights_form: Option<WeightsForm>,
    #[command(flatten)]
    pub act: super::act::ActArgs,
    /// Object targets: NAME_run and NAME_detect split each kernel with parallel loops
    /// across N threads (pthread_create per kernel, the caller runs one part; link with
    /// -lpthread). Default 1: no threads, the object needs only libc and libm.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// --target hls: the top function's shape: `sequential` (the kernels in order over one
    /// DDR arena through AXI) or `stream` (every layer output in an on-chip buffer, the
    /// layers as DATAFLOW processes, convolutions through line buffers; the report adds
    /// the on-chip bits per layer).
    #[arg(long, value_enum, value_name = "ARCH", default_value = "sequential")]
    pub hls_arch: HlsArch,
    /// Output prefix: writes PREFIX.o and PREFIX.h (PREFIX.c and PREFIX.h for --target c;
    /// also PREFIX.cl for opencl).
    #[arg(short, long, value_name = "PREFIX")]
    pub output: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    if a.cpu.is_some() && !a.target.is_object() {
        return Err(
            InputError::whole("--cpu", "applies to the object targets (host, x86_64, aarch64) only").into()
        );
    }
    let threads = a.threads.unwrap_or(1);
    if a.threads.is_some() && !a.target.is_object() {
        return Err(InputError::whole(
            "--threads",
            "applies to the object targets (host, x86_64, aarch64) only",
        )
        .into());
    }
    if !(1..=llvm::MAX_THREADS).contains(&threads) {
        return Err(InputError::whole(
            "--threads",
            format!("expected 1 to {}, got {threads}", llvm::MAX_THREADS),
        )
        .into());
    }
    let mut graph = super::load_model_or_random(&a.cfg, &a.weights)?;
    let selection = match (&a.layers, &a.plan, &a.stage) {
        (Some(s), _, _) => Some((Spec::parse(s).map_err(|m| InputError::whole("--layers", m))?, None, None)),
        (None, Some(p), Some(name)) => {
            let plan = plan::read(p)?;
            let stage = plan.stage(name)?;
            Some((stage.layers.clone(), Some(plan.scope), Some(plan.threshold)))
        }
        _ => None,
    };
    if let Some((spec, scope, threshold)) = selection {
        let where_ = a.plan.clone().unwrap_or_else(|| "--layers".into());
        let selected = spec.select(&graph).map_err(|m| InputError::whole(&where_, m))?;
        let weights = a.weights.weights.clone().unwrap_or_else(|| a.cfg.clone());
        let report = ternarize::run(
            &mut graph,
            &selected,
            scope.unwrap_or(Scope::Layer),
            threshold.unwrap_or(DEFAULT_THRESHOLD),
        )
        .map_err(|m| InputError::whole(&weights, m))?;
        let ternary = report.layers.iter().map(|l| l.layer).collect();
        eprintln!("ternary layers: {}", describe(&graph, &ternary));
    }
    let bad_model = |e: CodegenError| -> anyhow::Error {
        match e {
            CodegenError::Unsupported { .. } | CodegenError::MissingParams { .. } => {
                InputError::whole(&a.cfg, e.to_string()).into()
            }
            e => anyhow::anyhow!("cannot compile {}: {e}", a.cfg.display()),
        }
    };
    let prepared = prepare(&graph).map_err(bad_model)?;
    // the portable targets keep ternary weights as 2-bit codes, read without multiplies
    let form =
        a.weights_form.unwrap_or(if a.target.is_object() { WeightsForm::Table } else { WeightsForm::Packed });
    let scales = a.act.scales(&graph, graph.net.letter_box, super::threads(None))?;
    let opts = LowerOptions {
        ternary: match form {
            WeightsForm::Table => TernaryKernel::Auto,
            WeightsForm::Packed => TernaryKernel::Packed,
        },
        act_steps: scales.map(|s| s.steps).unwrap_or_default(),
        ..LowerOptions::default()
    };
    let program = lower(&prepared, &opts).map_err(bad_model)?;
    let heads = llvm::detect_heads(&graph).map_err(bad_model)?;
    let name = llvm::c_name(&a.output);
    let with_ext = |ext: &str| {
        let mut p = a.output.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    let weights_bytes: usize =
        (0..graph.num_layers()).filter_map(|i| graph.params.layer(i)).map(|p| 4 * p.weights.len()).sum();
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let arch = match a.target {
        Target::Host => Arch::Host,
        Target::X86_64 => Arch::X86_64,
        Target::Aarch64 => Arch::Aarch64,
        Target::C => {
            let src = c::compile(&program, &heads, &name).map_err(bad_model)?;
            let (c_path, h_path) = (with_ext(".c"), with_ext(".h"));
            write_atomic(&c_path, src.source.as_bytes())
                .with_context(|| format!("cannot write {}", c_path.display()))?;
            write_atomic(&h_path, src.header.as_bytes())
                .with_context(|| format!("cannot write {}", h_path.display()))?;
            println!(
                "{}: {} kernels, {} constant tables ({:.2} MiB; fp32 weights {:.2} MiB), workspace {:.2} MiB; \
                 C source {:.2} MiB; generated in {:.2} s",
                name,
                program.kernels.len(),
                program.consts.len(),
                mib(program.const_bytes()),
                mib(weights_bytes),
                mib(src.workspace_bytes as usize),
                mib(src.source.len()),
                start.elapsed().as_secs_f64(),
            );
            eprintln!("wrote {} and {}", c_path.display(), h_path.display());
            return Ok(());
        }
        Target::OpenCl => {
            let src = opencl::compile(&program, &heads, &name).map_err(bad_model)?;
            let paths = [with_ext(".cl"), with_ext(".c"), with_ext(".h")];
            for (p, text) in paths.iter().zip([&src.kernels, &src.host, &src.header]) {
                write_atomic(p, text.as_bytes()).with_context(|| format!("cannot write {}", p.display()))?;
            }
            println!(
                "{}: {} kernels, constants {:.2} MiB (fp32 weights {:.2} MiB), workspace {:.2} MiB; \
                 OpenCL source {:.2} MiB, host C {:.2} MiB; generated in {:.2} s",
                name,
                program.kernels.len(),
                mib(src.const_bytes),
                mib(weights_bytes),
                mib(src.workspace_bytes as usize),
                mib(src.kernels.len()),
                mib(src.host.len()),
                start.elapsed().as_secs_f64(),
            );
            eprintln!("wrote {}, {} and {}", paths[0].display(), paths[1].display(), paths[2].display());
            return Ok(());
        }
        Target::Hls => {
            let stem = a.output.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            if stem.is_empty() || stem.contains(['"', '\\', '\n']) {
                return Err(
                    InputError::whole(&a.output, "the output name cannot be used in a C++ #include").into()
                );
            }
            let arch = match a.hls_arch {
                HlsArch::Sequential => hls::Arch::Sequential,
                HlsArch::Stream => hls::Arch::Stream,
            };
            let project = hls::compile_arch(&program, &name, &stem, arch).map_err(bad_model)?;
            let dir = a.output.parent().map(PathBuf::from).unwrap_or_default();
            let mut written = Vec::new();
            for (file, text) in &project.files {
                let p = dir.join(file);
                write_atomic(&p, text.as_bytes()).with_context(|| format!("cannot write {}", p.display()))?;
                written.push(p.display().to_string());
            }
            println!("{}", project.report);
            println!(
                "{}: {} kernels, constants {:.2} MiB (fp32 weights {:.2} MiB); C++ {:.2} MiB; generated in {:.2} s",
                name,
                program.kernels.len(),
                mib(program.const_bytes()),
                mib(weights_bytes),
                mib(project.files.iter().map(|f| f.1.len()).sum()),
                start.elapsed().as_secs_f64(),
            );
            eprintln!("wrote {}", written.join(", "));
            return Ok(());
        }
    };
    let target = TargetSpec { arch, cpu: a.cpu.clone() };
    let object = llvm::compile_threaded(&program, &heads, &name, &target, threads).map_err(|e| match e {
        CodegenError::Backend { msg, .. } if msg.starts_with("unknown CPU") => {
            InputError::whole("--cpu", msg).into()
        }
        e => bad_model(e),
    })?;
    let (obj_path, h_path) = (with_ext(".o"), with_ext(".h"));
    write_atomic(&obj_path, &object.bytes).with_context(|| format!("cannot write {}", obj_path.display()))?;
    write_atomic(&h_path, object.header.as_bytes())
        .with_context(|| format!("cannot write {}", h_path.display()))?;
    println!(
        "{}: {} kernels, {} constant tables ({:.2} MiB; fp32 weights {:.2} MiB), workspace {:.2} MiB; \
         object {:.2} MiB; compiled in {:.2} s (LLVM: IR {:.2} s, O3 {:.2} s, codegen {:.2} s)",
        name,
        program.kernels.len(),
        program.consts.len(),
        program.const_bytes() as f64 / (1 << 20) as f64,
        weights_bytes as f64 / (1 << 20) as f64,
        object.workspace_bytes as f64 / (1 << 20) as f64,
        object.bytes.len() as f64 / (1 << 20) as f64,
        start.elapsed().as_secs_f64(),
        object.timings[0].as_secs_f64(),
        object.timings[1].as_secs_f64(),
        object.timings[2].as_secs_f64(),
    );
    if threads > 1 {
        eprintln!("{name}_run runs parallel kernels on {threads} threads: link with -lpthread");
    }
    eprintln!("wrote {} and {}", obj_path.display(), h_path.display());
    Ok(())
}
