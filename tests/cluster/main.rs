//! Multi-process cluster tests: one test binary, real `gameraft` processes.
//! Files are named by priority, as in OpenRaft's own test suite.

mod harness;
mod recorder;
mod t10_formation;
mod t11_bootstrap_expect;
mod t12_cluster_command;
mod t14_deploy_files;
mod t15_node_identity;
mod t17_client_tokens;
mod t18_peer_tls;
mod t20_replication;
mod t30_bad_input;
mod t50_failover;
mod t55_elections;
mod t56_leader_kill_loop;
mod t57_leader_handoff;
mod t58_stranded_writes;
mod t60_crash_restart;
mod t62_snapshot_install_crash;
mod t63_moved_node;
mod t64_reap;
mod t65_data_dir_refusals;
mod t66_backup_restore;
mod t70_disk_faults;
mod t80_exactly_once;
mod t85_batching;
