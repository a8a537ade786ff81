//! Leader kills in a row on one 3-node cluster: every kill must be followed
//! by a new leader acknowledging a write. On demand (not in CI): run with
//! `cargo nextest run --test cluster --run-ignored only --no-capture leader_kill_loop`;
//! `GAMERAFT_KILL_LOOP_ROUNDS` (default 200) sets the number of kills.

use tokio::time::Instant;

use crate::harness::{event, TestCluster};
use crate::t50_failover::time_to_first_write;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "on demand: about 3 s per kill"]
async fn leader_kill_loop_always_elects_a_new_leader() {
    let rounds: usize = std::env::var("GAMERAFT_KILL_LOOP_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut cluster = TestCluster::start("leader-kill-loop", 3).await;
    assert_eq!(cluster.client(1).post_event(&event(0)).await.unwrap().status, 200);
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let leader = cluster.leader().await;
        let survivors: Vec<_> =
            cluster.ids().into_iter().filter(|id| *id != leader).map(|id| cluster.client(id).clone()).collect();
        let killed = cluster.kill(leader).await;
        let downtime = time_to_first_write(survivors, round as u64 + 1, Instant::now()).await;
        eprintln!("kill {round}: leader {leader} killed, a new leader acknowledged a write after {downtime:?}");
        times.push(downtime);
        cluster.restart(&killed).await;
        cluster.wait_for_voters(3).await;
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!("{rounds} leader kills on 3 nodes (design timers): SIGKILL -> first acknowledged write");
    println!(
        "  min {:>8.3?}  median {:>8.3?}  p90 {:>8.3?}  max {:>8.3?}",
        times[0],
        at(0.5),
        at(0.9),
        times[times.len() - 1]
    );
}
