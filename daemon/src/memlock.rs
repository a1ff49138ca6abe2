//! Keeps the daemon's memory (keys, passphrases, history) out of swap with
//! `mlockall(MCL_CURRENT | MCL_FUTURE)`, where the OS allows it.
//!
//! Only attempted when locking has no limit (`RLIMIT_MEMLOCK` unlimited,
//! raised to the hard limit if that is unlimited, or `CAP_IPC_LOCK`): under
//! a finite limit, `MCL_FUTURE` would make later allocations fail once the
//! limit is reached, and the daemon would crash instead of merely swapping.

use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

/// Locks all current and future pages in RAM. Returns whether it did;
/// if not, logs one warning saying why and how to allow it.
pub fn lock_all() -> bool {
    let unlimited = match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((RLIM_INFINITY, _)) => true,
        Ok((_, RLIM_INFINITY)) => {
            setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY).is_ok()
        }
        _ => false,
    };
    let result = if unlimited || has_cap_ipc_lock() {
        mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).map_err(|e| e.to_string())
    } else {
        let limit = getrlimit(Resource::RLIMIT_MEMLOCK).map_or(0, |(soft, _)| soft / 1024);
        Err(format!(
            "RLIMIT_MEMLOCK is {limit} KiB, too little to lock the whole daemon"
        ))
    };
    match result {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(
                "cannot lock memory in RAM ({why}): keys, passphrases and message text may be \
                 written to swap; to allow it, set LimitMEMLOCK=infinity in the systemd unit \
                 (or `ulimit -l unlimited`, or a memlock line in /etc/security/limits.conf)"
            );
            false
        }
    }
}

/// Whether the process holds `CAP_IPC_LOCK` (locking then has no limit).
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn locking_memory_does_not_panic() {
        // Locked or not depends on the machine; either way no panic.
        let _ = super::lock_all();
        let _ = nix::sys::mman::munlockall();
    }
}
