//! Benchmarks live in `benches/`: criterion's timed benchmarks against the rivals (`srtp`,
//! `dtls`, feature `timed`, on by default) and the callgrind instruction counts
//! (`instructions`, no feature needed).
//!
//! This library holds what every criterion benchmark shares: [`criterion()`], the configuration
//! that draws HTML reports with plotters and, under `--profile-time <seconds>`, samples the
//! benchmark with pprof into `<target>/criterion/<group>/<id>/profile/flamegraph.svg`.

#[cfg(feature = "timed")]
pub use timed::{FlameGraph, criterion};

#[cfg(feature = "timed")]
mod timed {
    use std::fs::File;
    use std::path::Path;
    use std::time::Duration;

    use criterion::profiler::Profiler;
    use criterion::{Criterion, PlottingBackend};
    use pprof::{ProfilerGuard, ProfilerGuardBuilder};

    /// The configuration of every callsec criterion benchmark: 60 samples over 2 s after a
    /// 0.8 s warm-up (the command line may override each), HTML reports drawn by plotters
    /// whether or not gnuplot is installed, and the [`FlameGraph`] profiler for
    /// `--profile-time`.
    pub fn criterion() -> Criterion {
        Criterion::default()
            .sample_size(60)
            .warm_up_time(Duration::from_millis(800))
            .measurement_time(Duration::from_secs(2))
            .plotting_backend(PlottingBackend::Plotters)
            .with_profiler(FlameGraph::new(999))
    }

    /// A criterion [`Profiler`] that samples the process with pprof (`SIGPROF` at
    /// `frequency` Hz) while a benchmark runs under `--profile-time`, and writes one SVG
    /// flamegraph per benchmark into the directory criterion names for it.
    ///
    /// pprof's own `criterion` feature targets criterion 0.5; this is the same hook for the
    /// criterion line this workspace uses.
    pub struct FlameGraph {
        frequency: i32,
        guard: Option<ProfilerGuard<'static>>,
    }

    impl FlameGraph {
        /// A profiler sampling at `frequency` Hz (a prime such as 999 avoids beating with
        /// periodic work).
        pub fn new(frequency: i32) -> Self {
            Self {
                frequency,
                guard: None,
            }
        }
    }

    impl Profiler for FlameGraph {
        fn start_profiling(&mut self, benchmark_id: &str, _dir: &Path) {
            match ProfilerGuardBuilder::default()
                .frequency(self.frequency)
                // Unwinding through the C runtime and the unwinder itself is not our time.
                .blocklist(&["libc", "libgcc", "pthread", "vdso"])
                .build()
            {
                Ok(guard) => self.guard = Some(guard),
                Err(e) => eprintln!("pprof: cannot profile {benchmark_id}: {e}"),
            }
        }

        fn stop_profiling(&mut self, benchmark_id: &str, dir: &Path) {
            let Some(guard) = self.guard.take() else {
                return;
            };
            let written = std::fs::create_dir_all(dir)
                .map_err(|e| e.to_string())
                .and_then(|()| guard.report().build().map_err(|e| e.to_string()))
                .and_then(|report| {
                    let path = dir.join("flamegraph.svg");
                    let file = File::create(&path).map_err(|e| e.to_string())?;
                    report.flamegraph(file).map_err(|e| e.to_string())?;
                    Ok(path)
                });
            match written {
                Ok(path) => println!("flamegraph: {benchmark_id}: {}", path.display()),
                Err(e) => eprintln!("pprof: no flamegraph for {benchmark_id}: {e}"),
            }
        }
    }
}
