//! The load generator's own CPU time over the measured window: on a machine
//! it shares with the servers, what it takes is what they cannot have.

use serde::Serialize;

/// CPU the whole load-generator process used in a window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CpuUse {
    pub user_secs: f64,
    pub system_secs: f64,
    /// (user + system) / window: cores kept busy on average.
    pub cores: f64,
}

/// User and system CPU seconds this process has used so far (all threads).
pub fn process_cpu() -> Option<(f64, f64)> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given,
    // which points to one we own; we read it only if the call succeeded.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } == 0;
    if !ok {
        return None;
    }
    // SAFETY: initialised by the successful call above (and zeroed before).
    let ru = unsafe { ru.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some((secs(ru.ru_utime), secs(ru.ru_stime)))
}

/// The CPU used between two [`process_cpu`] samples taken `window_secs` apart.
pub fn used(before: (f64, f64), after: (f64, f64), window_secs: f64) -> CpuUse {
    let user_secs = (after.0 - before.0).max(0.0);
    let system_secs = (after.1 - before.1).max(0.0);
    let cores = if window_secs > 0.0 {
        (user_secs + system_secs) / window_secs
    } else {
        0.0
    };
    CpuUse {
        user_secs,
        system_secs,
        cores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_shows_up_as_user_time() {
        let before = process_cpu().expect("getrusage");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = process_cpu().expect("getrusage");
        let window = start.elapsed().as_secs_f64();
        let u = used(before, after, window);
        // Any share of a core at all: the machine may be busy elsewhere.
        assert!(u.user_secs + u.system_secs > 0.0, "{u:?}");
        assert!((u.cores - (u.user_secs + u.system_secs) / window).abs() < 1e-9);
    }

    #[test]
    fn an_empty_window_is_no_cores() {
        assert_eq!(used((1.0, 1.0), (1.0, 1.0), 0.0).cores, 0.0);
    }
}
