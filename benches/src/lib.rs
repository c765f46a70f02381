//! Shared helpers for the wirespeed criterion benchmarks.
//!
//! The machines these benchmarks run on are shared: wall-clock time counts the time the bench
//! thread waited for a core while other jobs ran. [`ThreadCpuTime`] is a criterion
//! [`Measurement`] on the bench thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`), so a bench
//! can be run twice: under its usual id with criterion's wall clock, and under `cpu/<id>` with
//! this clock, whose throughput line is then the rate **per CPU-second** of the bench thread.
//! [`Clock`] names the two so one generic bench function serves both.

use std::time::Duration;

use criterion::Criterion;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// The calling thread's CPU time (user + system) so far, with nanosecond resolution.
///
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` through `rustix` (a safe wrapper, so no `unsafe`
/// here). Unlike `/proc/thread-self/stat` (10 ms ticks) it is precise enough for one criterion
/// sample, and unlike `/proc/thread-self/schedstat` it includes the running slice.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A criterion measurement of the bench thread's CPU time instead of wall-clock time.
///
/// Criterion runs the measured routine on the thread that calls `start`/`end`, so the
/// difference is the CPU time the routine got, whatever else ran on the machine. Values are
/// [`Duration`]s and are printed like wall-clock ones (the throughput line becomes
/// elements or bytes per CPU-second). Benches that time their own windows with `iter_custom`
/// or that run their work on other threads must not use it.
pub struct ThreadCpuTime {
    /// Only lends its duration formatter (criterion's is not public).
    wall: WallTime,
}

impl Default for ThreadCpuTime {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ThreadCpuTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadCpuTime")
    }
}

impl ThreadCpuTime {
    /// The measurement.
    pub fn new() -> Self {
        Self { wall: WallTime }
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }

    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

/// The clocks a bench function is run under: criterion's wall clock (ids unchanged) and the
/// bench thread's CPU time (ids prefixed with `cpu/`).
pub trait Clock: Measurement<Value = Duration> + 'static {
    /// Prefix of the group names measured with this clock: `""` or `"cpu/"`.
    const PREFIX: &'static str;

    /// The criterion group name `name` under this clock (`cpu/pipeline` for `pipeline`).
    fn group(name: &str) -> String {
        format!("{}{name}", Self::PREFIX)
    }
}

impl Clock for WallTime {
    const PREFIX: &'static str = "";
}

impl Clock for ThreadCpuTime {
    const PREFIX: &'static str = "cpu/";
}

/// Criterion measuring the bench thread's CPU time: the `config` of a `cpu/` group.
pub fn cpu_criterion() -> Criterion<ThreadCpuTime> {
    Criterion::default().with_measurement(ThreadCpuTime::new())
}

#[doc(hidden)]
pub use criterion as __criterion;

/// An Ethernet frame (02:00:00:00:00:01 → 02:00:00:00:00:02) carrying an IPv4/UDP packet of
/// `inner_len` bytes (at least 28) from `src` port 12345 to `dst` port 4711: DF set, TTL 64,
/// identification 0, checksums left zero, payload bytes 0, 1, 2, … (wrapping). The ESP benches'
/// plaintext.
pub fn udp4_frame(inner_len: usize, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let udp_len = inner_len - 20;
    f.extend_from_slice(&[0x45, 0, (inner_len >> 8) as u8, inner_len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x30, 0x39, 0x12, 0x67, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
    f.extend((0..inner_len - 28).map(|i| i as u8));
    f
}

/// `fn main` of a bench file whose functions are generic over [`Clock`]: runs each function
/// under the wall clock (its usual ids), then right after it under [`ThreadCpuTime`] (`cpu/`
/// ids), so both figures of one bench come from the same minute of a shared machine.
///
/// ```ignore
/// fn l3fwd<M: Clock>(c: &mut Criterion<M>) { let mut g = c.benchmark_group(M::group("pipeline")); ... }
/// wirespeed_benches::wall_and_cpu_main!(null_io, l3fwd);
/// ```
#[macro_export]
macro_rules! wall_and_cpu_main {
    ($($target:ident),+ $(,)?) => {
        fn main() {
            let mut wall = $crate::__criterion::Criterion::default().configure_from_args();
            let mut cpu = $crate::cpu_criterion().configure_from_args();
            $(
                $target::<$crate::__criterion::measurement::WallTime>(&mut wall);
                $target::<$crate::ThreadCpuTime>(&mut cpu);
            )+
            $crate::__criterion::Criterion::default().configure_from_args().final_summary();
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    fn cpu_time_advances_with_work_and_not_with_sleep() {
        let m = ThreadCpuTime::new();
        // Spin until 20 ms of CPU time have passed (however loaded the machine is): the clock
        // advances with work, and never faster than the wall clock.
        let (s, wall) = (m.start(), std::time::Instant::now());
        let mut x = 0u64;
        while m.end(s) < Duration::from_millis(20) {
            assert!(wall.elapsed() < Duration::from_secs(30), "thread CPU time does not advance");
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let busy = m.end(s);
        assert!(busy <= wall.elapsed() + Duration::from_millis(1), "{busy:?} of CPU in {:?}", wall.elapsed());

        let s = m.start();
        std::thread::sleep(Duration::from_millis(50));
        let slept = m.end(s);
        assert!(slept < Duration::from_millis(10), "a 50 ms sleep took {slept:?} of CPU time");
        assert_eq!(m.to_f64(&Duration::from_micros(3)), 3000.0);
        assert_eq!(m.add(&m.zero(), &Duration::from_nanos(7)), Duration::from_nanos(7));
    }

    #[test]
    fn cpu_groups_are_prefixed_and_wall_groups_unchanged() {
        assert_eq!(WallTime::group("pipeline"), "pipeline");
        assert_eq!(ThreadCpuTime::group("pipeline"), "cpu/pipeline");
    }
}
