//! How the leader groups critical writes into Raft entries (`proposer/batcher.rs`).

use clap::Args;

use super::ConfigError;

/// Defaults of the flags below, read by both clap and [`Default`].
mod defaults {
    pub const WRITE_BATCH_MAX_EVENTS: usize = 256;
    pub const WRITE_BATCH_MAX_BYTES: usize = 128 * 1024;
    pub const WRITE_BATCHES_IN_FLIGHT: usize = 2;
}

/// Bounds of one batch and of the pipeline of batches.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Write batching")]
pub struct BatchSettings {
    /// Most critical events the leader puts in one Raft entry. Writes that
    /// arrive while earlier batches are being committed wait and leave
    /// together, in one entry and one fsync; a lone write leaves at once.
    #[arg(long, env = "GAMERAFT_WRITE_BATCH_MAX_EVENTS", default_value_t = defaults::WRITE_BATCH_MAX_EVENTS)]
    pub write_batch_max_events: usize,

    /// Most bytes (the events' JSON) in one Raft entry; a single larger
    /// event still goes alone. Checked at start, with `--max-body-bytes`,
    /// against the record limit (64 MiB) and, times `--max-payload-entries`,
    /// against the gRPC message limit (64 MiB).
    #[arg(long, env = "GAMERAFT_WRITE_BATCH_MAX_BYTES", default_value_t = defaults::WRITE_BATCH_MAX_BYTES)]
    pub write_batch_max_bytes: usize,

    /// How many batches the leader may have proposed and not yet seen
    /// applied. The next batch gathers while these are in flight.
    #[arg(long, env = "GAMERAFT_WRITE_BATCHES_IN_FLIGHT", default_value_t = defaults::WRITE_BATCHES_IN_FLIGHT)]
    pub write_batches_in_flight: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            write_batch_max_events: defaults::WRITE_BATCH_MAX_EVENTS,
            write_batch_max_bytes: defaults::WRITE_BATCH_MAX_BYTES,
            write_batches_in_flight: defaults::WRITE_BATCHES_IN_FLIGHT,
        }
    }
}

impl BatchSettings {
    /// None of the bounds may be 0. How large a batch may be against the
    /// record and message limits is [`NodeConfig::validate`](super::NodeConfig::validate)'s
    /// check, with the body limit and `--max-payload-entries`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("--write-batch-max-events", self.write_batch_max_events),
            ("--write-batch-max-bytes", self.write_batch_max_bytes),
            ("--write-batches-in-flight", self.write_batches_in_flight),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}
