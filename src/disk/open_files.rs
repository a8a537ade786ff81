//! The process's open-file limit: raised to the most it may be at start, so
//! that client connections (bounded by `--max-connections`) leave the Raft
//! log and the event files the descriptors they need.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept for the node's own files, peers and the runtime,
/// beyond its HTTP connections.
pub const RESERVED: u64 = 512;

/// Raises the soft limit on open files to the hard limit; returns the
/// limit now in force.
pub fn raise_limit() -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok(hard.max(soft))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = super::raise_limit().expect("raise");
        let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("read");
        assert_eq!((soft, limit), (hard, hard));
    }
}
