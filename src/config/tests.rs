//! The flags as a user gives them, through clap, to validation and to
//! OpenRaft's `Config`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    node: NodeConfig,
}

fn parse_as_given(args: &[&str]) -> NodeConfig {
    Cli::parse_from(std::iter::once("serve").chain(args.iter().copied())).node
}

/// `args` for a node told to run open (`--insecure`), so that its other
/// rules are what a test sees.
fn parse(args: &[&str]) -> NodeConfig {
    parse_as_given(&[&["--insecure"], args].concat())
}

#[test]
fn defaults_are_the_designs() {
    let config = parse_as_given(&[]);
    assert_eq!(config.identity.http_addr, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(config.identity.raft_addr, "0.0.0.0:5000".parse().unwrap());
    // Listening beyond loopback, the defaults need tokens or --insecure.
    assert!(matches!(config.validate(), Err(ConfigError::OpenBeyondLoopback { .. })));
    parse_as_given(&["--insecure"]).validate().unwrap();
    let raft = config.raft.to_openraft();
    assert_eq!(raft.heartbeat_interval, 500);
    assert_eq!((config.raft.election_timeout_min_ms, config.raft.election_timeout_max_ms), (1500, 3000));
    // OpenRaft's lease plus its timeout: a campaign 2-3 s after the last heartbeat.
    assert_eq!((raft.election_timeout_min, raft.election_timeout_max), (501, 1500));
    assert_eq!(raft.install_snapshot_timeout, 10_000);
    assert_eq!(raft.max_payload_entries, 300);
    assert_eq!(raft.max_in_snapshot_log_to_keep, 1000);
    assert_eq!(config.storage.data_dir, PathBuf::from("gameraft-data"));
    assert!(!config.storage.in_memory, "durable by default");
}

#[test]
fn openraft_lease_plus_timeout_spans_the_election_timeout() {
    let config =
        parse(&["--heartbeat-ms", "200", "--election-timeout-min-ms", "2100", "--election-timeout-max-ms", "2200"]);
    config.validate().unwrap();
    let raft = config.raft.to_openraft();
    assert_eq!((raft.election_timeout_min, raft.election_timeout_max), (1000, 1100));
    let too_close =
        parse(&["--heartbeat-ms", "500", "--election-timeout-min-ms", "900", "--election-timeout-max-ms", "1000"]);
    let err = too_close.validate().expect_err("max must exceed twice the heartbeat");
    assert!(matches!(err, ConfigError::ElectionTimeoutMaxTooShort { max_ms: 1000, heartbeat_ms: 500 }), "{err:?}");
    for flag in ["--election-timeout-max-ms", "--heartbeat-ms"] {
        assert!(err.to_string().contains(flag), "{err}");
    }
    assert!(err.to_string().contains("at least 1004"), "{err}");
    let just_enough =
        parse(&["--heartbeat-ms", "500", "--election-timeout-min-ms", "900", "--election-timeout-max-ms", "1004"]);
    assert!(just_enough.validate().is_ok(), "a 502 ms lease leaves OpenRaft 501 ms timeouts");
}

#[test]
fn election_timeout_must_exceed_heartbeat() {
    let config = parse(&["--heartbeat-ms", "500", "--election-timeout-min-ms", "400"]);
    let err = config.validate().expect_err("400 ms <= 500 ms");
    assert!(matches!(err, ConfigError::ElectionTimeoutNotAboveHeartbeat { min_ms: 400, heartbeat_ms: 500 }), "{err:?}");
    for flag in ["--election-timeout-min-ms", "--heartbeat-ms"] {
        assert!(err.to_string().contains(flag), "{err}");
    }
}

#[test]
fn write_batches_default_to_256_events_128_kib_and_2_in_flight_and_none_may_be_0() {
    let config = parse(&[]);
    let batching = &config.batching;
    assert_eq!(
        (batching.write_batch_max_events, batching.write_batch_max_bytes, batching.write_batches_in_flight),
        (256, 131_072, 2)
    );
    for flag in ["--write-batch-max-events", "--write-batch-max-bytes", "--write-batches-in-flight"] {
        let config = parse(&[flag, "0"]);
        assert!(matches!(config.validate(), Err(ConfigError::Zero(name)) if name == flag), "{flag}");
    }
}

#[test]
fn bootstrap_and_join_exclude_each_other() {
    let parsed = Cli::try_parse_from(["serve", "--bootstrap", "--join", "http://10.0.0.1:8080"]);
    assert!(parsed.is_err(), "both flags at once are refused");
    let mut config = parse(&["--bootstrap"]);
    assert!(config.identity.bootstrap);
    config.identity.join = Some("http://10.0.0.1:8080".into());
    assert!(matches!(config.validate(), Err(ConfigError::BootstrapAndJoin)));
    assert!(!parse(&[]).identity.bootstrap, "never the default");
}

#[test]
fn the_request_id_window_defaults_to_120_s_and_must_cover_a_retry_after_a_504() {
    let config = parse(&[]);
    assert_eq!(config.exactly_once.request_id_window(), Duration::from_secs(120));
    assert_eq!(config.api.request_id_window_needed(), Duration::from_secs(100), "36 s answer + 64 s proposal");
    assert_eq!(config.retry_horizon(), Duration::from_secs(56));
    assert!(config.validate().is_ok());

    let short = parse(&["--request-id-window-secs", "99"]);
    let err = short.validate().expect_err("99 s < 100 s");
    assert!(matches!(err, ConfigError::RequestIdWindowTooShort { window_secs: 99, needed_secs: 100 }), "{err:?}");
    assert!(err.to_string().contains("--request-id-window-secs"), "{err}");
    // Shorter timers allow a shorter window.
    let fast = parse(&["--request-id-window-secs", "20", "--leader-wait-ms", "500", "--write-timeout-ms", "1000"]);
    assert!(fast.validate().is_ok(), "needs {:?}", fast.api.request_id_window_needed());
}

#[test]
fn body_and_batch_limits_must_fit_a_record_and_an_append_entries_message() {
    let config = parse(&[]);
    assert!(config.max_entry_bytes() <= config.entry_limit_bytes());

    // 1 MiB batches, 300 per AppendEntries: 300 MiB messages.
    let big_batches = parse(&["--write-batch-max-bytes", "1048576"]);
    let err = big_batches.validate().expect_err("over the gRPC limit");
    assert!(matches!(err, ConfigError::AppendEntriesOverMessageLimit { entries: 300, .. }), "{err:?}");
    for flag in ["--write-batch-max-bytes", "--max-body-bytes", "--max-payload-entries"] {
        assert!(err.to_string().contains(flag), "{err}");
    }
    // The same batches, fewer per message: fine.
    assert!(parse(&["--write-batch-max-bytes", "1048576", "--max-payload-entries", "50"]).validate().is_ok());
    // A body limit as large as the record limit: one event could not be stored.
    let big_bodies = parse(&["--max-body-bytes", "67108864", "--max-payload-entries", "1"]);
    let err = big_bodies.validate().expect_err("over the record limit");
    assert!(matches!(err, ConfigError::EntryOverRecordLimit { .. }), "{err:?}");
    assert!(err.to_string().contains("--max-body-bytes"), "{err}");
}

/// Every `serve` flag, its environment variable, its default and
/// whether it is hidden: a public interface (the README's table), pinned
/// here so that regrouping the settings cannot change it.
#[test]
fn the_flags_env_vars_and_defaults_are_the_documented_ones() {
    use clap::CommandFactory;
    let expected = [
        ("advertise-host", "ADVERTISE_HOST", "", false),
        ("auth-tokens-file", "GAMERAFT_AUTH_TOKENS_FILE", "", false),
        ("bootstrap", "GAMERAFT_BOOTSTRAP", "", false),
        ("bootstrap-expect", "GAMERAFT_BOOTSTRAP_EXPECT", "", false),
        ("data-dir", "DATA_DIR", "gameraft-data", false),
        ("discovery-dns", "GAMERAFT_DISCOVERY_DNS", "", false),
        ("election-timeout-max-ms", "GAMERAFT_ELECTION_TIMEOUT_MAX_MS", "3000", false),
        ("election-timeout-min-ms", "GAMERAFT_ELECTION_TIMEOUT_MIN_MS", "1500", false),
        ("fault-crash-in-install-file", "GAMERAFT_FAULT_CRASH_IN_INSTALL_FILE", "", true),
        ("fault-peer-delay-file", "GAMERAFT_FAULT_PEER_DELAY_FILE", "", true),
        ("heartbeat-ms", "GAMERAFT_HEARTBEAT_MS", "500", false),
        ("http-addr", "HTTP_ADDR", "0.0.0.0:8080", false),
        ("http-tls-cert", "GAMERAFT_HTTP_TLS_CERT", "", false),
        ("http-tls-key", "GAMERAFT_HTTP_TLS_KEY", "", false),
        ("id", "WORKER_ID", "", false),
        ("in-memory", "GAMERAFT_IN_MEMORY", "", false),
        ("insecure", "GAMERAFT_INSECURE", "", false),
        ("install-snapshot-timeout-ms", "GAMERAFT_INSTALL_SNAPSHOT_TIMEOUT_MS", "10000", false),
        ("join", "MASTER_URL", "", false),
        ("join-timeout-ms", "GAMERAFT_JOIN_TIMEOUT_MS", "60000", false),
        ("join-token", "GAMERAFT_JOIN_TOKEN", "", false),
        ("leader-probe-ms", "GAMERAFT_LEADER_PROBE_MS", "250", false),
        ("leader-wait-ms", "GAMERAFT_LEADER_WAIT_MS", "5000", false),
        ("logs-kept-after-snapshot", "GAMERAFT_LOGS_KEPT_AFTER_SNAPSHOT", "1000", false),
        ("max-body-bytes", "GAMERAFT_MAX_BODY_BYTES", "65536", false),
        ("max-connections", "GAMERAFT_MAX_CONNECTIONS", "1024", false),
        ("max-members", "GAMERAFT_MAX_MEMBERS", "64", false),
        ("max-payload-entries", "GAMERAFT_MAX_PAYLOAD_ENTRIES", "300", false),
        ("max-peer-connections", "GAMERAFT_MAX_PEER_CONNECTIONS", "256", false),
        ("max-players", "GAMERAFT_MAX_PLAYERS", "100000", false),
        ("peer-handshake-timeout-ms", "GAMERAFT_PEER_HANDSHAKE_TIMEOUT_MS", "5000", false),
        ("peer-tls-dir", "GAMERAFT_PEER_TLS_DIR", "", false),
        ("peers", "GAMERAFT_PEERS", "", false),
        ("raft-addr", "RAFT_ADDR", "0.0.0.0:5000", false),
        ("read-timeout-ms", "GAMERAFT_READ_TIMEOUT_MS", "10000", false),
        ("reap-after-ms", "GAMERAFT_REAP_AFTER_MS", "0", false),
        ("reap-min-voters", "GAMERAFT_REAP_MIN_VOTERS", "3", false),
        ("recent-actions", "GAMERAFT_RECENT_ACTIONS", "1024", false),
        ("request-id-window-secs", "GAMERAFT_REQUEST_ID_WINDOW_SECS", "120", false),
        ("snapshot-after-logs", "GAMERAFT_SNAPSHOT_AFTER_LOGS", "5000", false),
        ("stalled-reader-timeout-ms", "GAMERAFT_STALLED_READER_TIMEOUT_MS", "30000", false),
        ("write-batch-max-bytes", "GAMERAFT_WRITE_BATCH_MAX_BYTES", "131072", false),
        ("write-batch-max-events", "GAMERAFT_WRITE_BATCH_MAX_EVENTS", "256", false),
        ("write-batches-in-flight", "GAMERAFT_WRITE_BATCHES_IN_FLIGHT", "2", false),
        ("write-timeout-ms", "GAMERAFT_WRITE_TIMEOUT_MS", "10000", false),
    ];
    let command = Cli::command();
    let mut actual: Vec<_> = command
        .get_arguments()
        .map(|arg| {
            let defaults: Vec<_> = arg.get_default_values().iter().map(|v| v.to_string_lossy()).collect();
            (
                arg.get_long().unwrap_or_default().to_string(),
                arg.get_env().map(|env| env.to_string_lossy().into_owned()).unwrap_or_default(),
                defaults.join(","),
                arg.is_hide_set(),
            )
        })
        .collect();
    actual.sort();
    let expected: Vec<_> = expected
        .iter()
        .map(|&(long, env, default, hidden)| (long.to_string(), env.to_string(), default.to_string(), hidden))
        .collect();
    assert_eq!(actual, expected);
}

#[test]
fn join_url_must_be_http() {
    let config = parse(&["--join", "10.0.0.1:8080"]);
    assert!(matches!(config.validate(), Err(ConfigError::JoinUrl { .. })));
}

#[test]
fn each_groups_default_is_its_flags_default() {
    let parsed = parse_as_given(&[]);
    assert_eq!(parsed.identity, IdentitySettings::default());
    assert_eq!(parsed.storage, StorageSettings::default());
    assert_eq!(parsed.raft, RaftTimings::default());
    assert_eq!(parsed.api, ApiSettings::default());
    assert_eq!(parsed.batching, BatchSettings::default());
    assert_eq!(parsed.exactly_once, ExactlyOnceSettings::default());
    assert_eq!(parsed.faults, FaultInjection::default());
    assert_eq!(parsed.auth, AuthSettings::default());
    assert_eq!(parsed.reaping, ReapSettings::default());
    assert_eq!(parsed, NodeConfig::default());
    // The defaults listen on every interface: valid once told to run open.
    let mut open = NodeConfig::default();
    open.auth.insecure = true;
    assert!(open.validate().is_ok(), "the defaults (with --insecure) are a valid configuration");
}

/// `RaftTimings::validate` states its rules itself, so that each error can
/// name the flags; it must accept exactly what OpenRaft's own checks accept,
/// on the timings as given and on the `Config` they are mapped to.
#[test]
fn raft_timings_are_valid_exactly_when_openraft_accepts_them_as_given_and_as_mapped() {
    // OpenRaft's `Config::default()` parses an empty command line: build it once.
    let openraft_default = openraft::Config::default();
    let mut valid = 0;
    for heartbeat_ms in 0..=6 {
        for election_timeout_min_ms in 0..=24 {
            for election_timeout_max_ms in 0..=24 {
                for max_payload_entries in [0, 1] {
                    let timings = RaftTimings {
                        heartbeat_ms,
                        election_timeout_min_ms,
                        election_timeout_max_ms,
                        max_payload_entries,
                        ..RaftTimings::default()
                    };
                    let as_given = openraft::Config {
                        heartbeat_interval: heartbeat_ms,
                        election_timeout_min: election_timeout_min_ms,
                        election_timeout_max: election_timeout_max_ms,
                        ..openraft_default.clone()
                    };
                    let openraft_accepts = as_given.validate().is_ok() && timings.to_openraft().validate().is_ok();
                    let verdict = timings.validate();
                    assert_eq!(verdict.is_ok(), openraft_accepts, "{timings:?}: {verdict:?}");
                    valid += usize::from(openraft_accepts);
                }
            }
        }
    }
    assert!(valid > 100, "the grid holds valid timings too: {valid}");
}

#[test]
fn the_election_timeout_range_must_hold_openraft_timeouts_under_the_lease() {
    let fine = parse(&["--election-timeout-min-ms", "2999", "--election-timeout-max-ms", "3000"]);
    assert!(fine.validate().is_ok());
    let raft = fine.raft.to_openraft();
    assert_eq!((raft.election_timeout_min, raft.election_timeout_max), (1499, 1500));
    // An odd maximum: the lease is 1500 ms, so a 3000 ms minimum leaves
    // OpenRaft no timeout below it.
    let odd = parse(&["--election-timeout-min-ms", "3000", "--election-timeout-max-ms", "3001"]);
    let err = odd.validate().expect_err("empty OpenRaft range");
    assert!(matches!(err, ConfigError::ElectionTimeoutRange { min_ms: 3000, max_ms: 3001 }), "{err:?}");
    let inverted = parse(&["--election-timeout-min-ms", "3000", "--election-timeout-max-ms", "2000"]);
    let err = inverted.validate().expect_err("min above max");
    assert!(matches!(err, ConfigError::ElectionTimeoutRange { min_ms: 3000, max_ms: 2000 }), "{err:?}");
    for flag in ["--election-timeout-min-ms", "--election-timeout-max-ms"] {
        assert!(err.to_string().contains(flag), "{err}");
    }
}

#[test]
fn every_count_limit_and_wait_that_must_not_be_0_is_named_when_it_is() {
    for flag in [
        "--max-payload-entries",
        "--snapshot-after-logs",
        "--leader-wait-ms",
        "--write-timeout-ms",
        "--join-timeout-ms",
        "--max-body-bytes",
        "--max-members",
        "--write-batch-max-events",
        "--write-batch-max-bytes",
        "--write-batches-in-flight",
        "--request-id-window-secs",
        "--reap-min-voters",
    ] {
        let err = parse(&[flag, "0"]).validate().expect_err(flag);
        assert!(matches!(err, ConfigError::Zero(name) if name == flag), "{flag}: {err:?}");
        assert!(err.to_string().starts_with(flag), "{err}");
    }
}

#[test]
fn a_node_reachable_beyond_loopback_needs_tokens_and_peer_tls_or_insecure() {
    let open = parse_as_given(&["--http-addr", "10.0.0.5:8080", "--raft-addr", "127.0.0.1:5000"]);
    let err = open.validate().expect_err("open on 10.0.0.5");
    assert!(
        matches!(err, ConfigError::OpenBeyondLoopback { addr, .. } if addr.to_string() == "10.0.0.5:8080"),
        "{err}"
    );
    for flag in ["--auth-tokens-file", "--peer-tls-dir", "--insecure", "127.0.0.1"] {
        assert!(err.to_string().contains(flag), "{err}");
    }
    let raft_open = parse_as_given(&["--http-addr", "127.0.0.1:8080", "--raft-addr", "0.0.0.0:5000"]);
    assert!(matches!(raft_open.validate(), Err(ConfigError::OpenBeyondLoopback { .. })), "the Raft port counts too");
    let loopback = ["--http-addr", "127.0.0.1:8080", "--raft-addr", "[::1]:5000"];
    parse_as_given(&loopback).validate().expect("loopback only: open is fine");
    parse_as_given(&["--http-addr", "10.0.0.5:8080", "--insecure"]).validate().expect("told to run open");
}

/// Tokens guard the HTTP API and peer TLS the Raft port: beyond loopback a
/// node needs both, and the refusal names the one missing.
#[test]
fn a_node_reachable_beyond_loopback_needs_both_tokens_and_peer_tls() {
    let beyond = ["--http-addr", "10.0.0.5:8080"];
    let tokens_only = parse_as_given(&[&beyond[..], &["--auth-tokens-file", "/etc/gameraft/tokens"]].concat());
    let err = tokens_only.validate().expect_err("the Raft port is open to anyone");
    assert!(matches!(err, ConfigError::OpenBeyondLoopback { .. }), "{err}");
    assert!(err.to_string().contains("--peer-tls-dir") && !err.to_string().contains("--auth-tokens-file"), "{err}");
    let tls_only = parse_as_given(&[&beyond[..], &["--peer-tls-dir", "/etc/gameraft/tls"]].concat());
    let err = tls_only.validate().expect_err("the HTTP API is open to anyone");
    assert!(err.to_string().contains("--auth-tokens-file") && !err.to_string().contains("--peer-tls-dir"), "{err}");
    let both = ["--auth-tokens-file", "/etc/gameraft/tokens", "--peer-tls-dir", "/etc/gameraft/tls"];
    parse_as_given(&[&beyond[..], &both[..]].concat()).validate().expect("tokens and peer TLS");
}

#[test]
fn formation_needs_peers_and_an_expected_size_and_excludes_bootstrap_and_join() {
    let peers = ["--peers", "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080"];
    let config = parse(&[&peers[..], &["--bootstrap-expect", "3"]].concat());
    config.validate().expect("peers and an expected size");
    assert_eq!(config.formation.peers.len(), 3, "a comma-separated list");
    parse(&["--discovery-dns", "gameraft.local", "--bootstrap-expect", "3"]).validate().expect("a DNS name");
    assert!(matches!(parse(&peers).validate(), Err(ConfigError::PeersWithoutExpect)));
    assert!(matches!(parse(&["--bootstrap-expect", "3"]).validate(), Err(ConfigError::FormationWithoutPeers)));
    let zero = parse(&[&peers[..], &["--bootstrap-expect", "0"]].concat());
    assert!(matches!(zero.validate(), Err(ConfigError::Zero("--bootstrap-expect"))));
    for other in [&["--bootstrap"][..], &["--join", "http://10.0.0.1:8080"]] {
        let args = [&peers[..], &["--bootstrap-expect", "3"], other].concat();
        let err = parse(&args).validate().expect_err("--bootstrap-expect with --bootstrap or --join");
        assert!(matches!(err, ConfigError::FormationAndBootstrapOrJoin), "{other:?}: {err}");
    }
}

#[test]
fn reaping_is_off_by_default_and_at_least_two_probes_long_when_on() {
    let config = parse(&[]);
    assert_eq!(config.reaping.reap_after(), None, "off unless asked for");
    assert_eq!(config.reaping.reap_min_voters, 3);
    let on = parse(&["--reap-after-ms", "30000", "--reap-min-voters", "2"]);
    on.validate().expect("30 s, at least 2 voters");
    assert_eq!(on.reaping.reap_after(), Some(Duration::from_secs(30)));
    assert_eq!(on.reaping.reap_min_voters, 2);
    parse(&["--reap-after-ms", "2000"]).validate().expect("the shortest allowed");
    let err = parse(&["--reap-after-ms", "1999"]).validate().expect_err("one probe long");
    assert!(matches!(err, ConfigError::ReapAfterTooShort { ms: 1999, min_ms: 2000 }), "{err:?}");
    assert!(err.to_string().contains("--reap-after-ms"), "{err}");
    // A replacement joins before the dead voter goes: one member more.
    parse(&["--reap-after-ms", "2000", "--max-members", "4"]).validate().expect("room for a replacement");
    let err = parse(&["--reap-after-ms", "2000", "--max-members", "3"]).validate().expect_err("no room");
    assert!(matches!(err, ConfigError::NoRoomToReplace { max_members: 3, min_voters: 3 }), "{err:?}");
    parse(&["--max-members", "3"]).validate().expect("reaping off: no rule");
}
