//! Where a sampling step's time goes: issuing the forward pass, the device finishing it,
//! reading back what sampling needs, and sampling on the host; with libtorch, also the
//! operations dispatched. Off unless a benchmark turns it on. When on, each step waits for
//! its device once the pass is issued, so that the parts can be told apart: a profiled run
//! gives up the overlap of host and device, and is timed apart from the measured one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::tensor::Device;

static ON: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<StepProfile> = Mutex::new(StepProfile::ZERO);
/// libtorch counts operations while profiling is on.
#[cfg(feature = "tch")]
static COUNTING: Mutex<Option<crate::engine::libtorch::OpCounting>> = Mutex::new(None);

/// Totals over the steps of a profiled run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepProfile {
    /// Forward passes: the prompt's and each decoding step's.
    pub steps: u64,
    /// Host time to issue the forward passes. On a GPU the kernels run while it is issued;
    /// if the device then has nothing left to do, the step is bound by the host.
    pub issue: Duration,
    /// Time the device still needed once a pass was issued (zero on the CPU, which computes
    /// while it issues).
    pub device: Duration,
    /// Selecting shortlists on the device and copying them (or whole rows) to the host.
    pub readback: Duration,
    /// Drawing every row's token on the host.
    pub sample: Duration,
    /// Rows read back, and of them those that came back whole rather than as a shortlist
    /// (a setting without top-k, or a tie running past the list).
    pub rows: u64,
    pub rows_in_full: u64,
    /// libtorch operations dispatched by the forward passes and read-backs; `None` without
    /// libtorch.
    pub dispatched: Option<Dispatched>,
}

/// Operations a thread dispatched to libtorch, counting only the outermost (an operation that
/// calls others is one); see `engine::libtorch`, which counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Dispatched {
    pub ops: u64,
    /// Of `ops`, those that only view their input (reshape, slice, transpose and the like):
    /// they launch nothing on a GPU, where most others launch one kernel or a few, but they
    /// cost as much host time to issue.
    pub views: u64,
}

impl std::ops::Sub for Dispatched {
    type Output = Dispatched;

    fn sub(self, earlier: Dispatched) -> Dispatched {
        Dispatched {
            ops: self.ops - earlier.ops,
            views: self.views - earlier.views,
        }
    }
}

impl std::ops::AddAssign for Dispatched {
    fn add_assign(&mut self, more: Dispatched) {
        self.ops += more.ops;
        self.views += more.views;
    }
}

/// The parts of a step, in the order a step runs them.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    Issue,
    Device,
    Readback,
    Sample,
}

impl StepProfile {
    const ZERO: StepProfile = StepProfile {
        steps: 0,
        issue: Duration::ZERO,
        device: Duration::ZERO,
        readback: Duration::ZERO,
        sample: Duration::ZERO,
        rows: 0,
        rows_in_full: 0,
        dispatched: None,
    };

    /// Mean milliseconds a step of each part, in [`Part`]'s order, and libtorch operations
    /// and views a step.
    pub fn per_step(&self) -> ([f64; 4], Option<(f64, f64)>) {
        let n = self.steps.max(1) as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / n;
        (
            [
                ms(self.issue),
                ms(self.device),
                ms(self.readback),
                ms(self.sample),
            ],
            self.dispatched
                .map(|d| (d.ops as f64 / n, d.views as f64 / n)),
        )
    }
}

/// Start profiling from zero.
pub fn start() {
    *TOTALS.lock().unwrap_or_else(|e| e.into_inner()) = StepProfile::ZERO;
    #[cfg(feature = "tch")]
    COUNTING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(crate::engine::libtorch::OpCounting::start);
    ON.store(true, Ordering::SeqCst);
}

/// Stop profiling and return the totals since [`start`].
pub fn finish() -> StepProfile {
    ON.store(false, Ordering::SeqCst);
    #[cfg(feature = "tch")]
    COUNTING.lock().unwrap_or_else(|e| e.into_inner()).take();
    *TOTALS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Times one step's parts when profiling is on, and nothing otherwise.
pub(crate) struct StepTimer {
    last: Instant,
    /// libtorch's count when a forward pass began.
    #[cfg(feature = "tch")]
    dispatched: Option<Dispatched>,
}

impl StepTimer {
    /// The start of a forward pass (`None` when profiling is off).
    pub(crate) fn forward() -> Option<Self> {
        ON.load(Ordering::Relaxed).then(|| {
            TOTALS.lock().unwrap_or_else(|e| e.into_inner()).steps += 1;
            Self {
                last: Instant::now(),
                #[cfg(feature = "tch")]
                dispatched: Some(crate::engine::libtorch::dispatched()),
            }
        })
    }

    /// The start of the host's sampling.
    pub(crate) fn sample() -> Option<Self> {
        ON.load(Ordering::Relaxed).then(|| Self {
            last: Instant::now(),
            #[cfg(feature = "tch")]
            dispatched: None,
        })
    }

    /// Count the time since the last lap as `part`.
    pub(crate) fn lap(&mut self, part: Part) {
        let now = Instant::now();
        let spent = now - self.last;
        self.last = now;
        let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
        match part {
            Part::Issue => totals.issue += spent,
            Part::Device => totals.device += spent,
            Part::Readback => totals.readback += spent,
            Part::Sample => totals.sample += spent,
        }
    }

    /// Count a read-back of `rows` rows, `in_full` of them whole.
    pub(crate) fn rows_read(&mut self, rows: usize, in_full: usize) {
        let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
        totals.rows += rows as u64;
        totals.rows_in_full += in_full as u64;
    }

    /// Wait for `device` to finish what it was given, as [`Part::Device`].
    pub(crate) fn wait_for(&mut self, device: &Device) {
        // A failed sync shows again, with its cause, at the read-back that follows.
        let _ = device.sync();
        self.lap(Part::Device);
    }
}

#[cfg(feature = "tch")]
impl Drop for StepTimer {
    fn drop(&mut self) {
        if let Some(before) = self.dispatched {
            let step = crate::engine::libtorch::dispatched() - before;
            let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
            *totals.dispatched.get_or_insert_default() += step;
        }
    }
}
