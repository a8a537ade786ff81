//! Where the nodes run, and the network faults between them.
//!
//! With root and iproute2, each node gets its own network namespace with its
//! own address on a bridge and uses the design's ports (5000 for Raft, 8080
//! for HTTP), as separate ECS tasks would. The harness stays in the host
//! namespace and reaches every node through the bridge, so partitions and
//! packet loss (iptables rules inside a node's namespace, matching peer
//! addresses only) cut peers off from each other while clients still reach
//! every node, as in Jepsen.
//!
//! Without namespaces, nodes listen on 127.0.0.x; partitions and loss are then
//! unavailable and the nemesis skips them (it says so).
//!
//! Host names resolve inside the namespaces as [`Hosts::name`] sets them:
//! `ip netns exec <namespace>` bind-mounts each file of
//! `/etc/netns/<namespace>/` over its namesake in `/etc/`, so a `hosts` file
//! there is the namespace's `/etc/hosts`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::process::Command;

/// The design's ports, the same on every host.
pub const RAFT_PORT: u16 = 5000;
pub const HTTP_PORT: u16 = 8080;

/// One node's host.
#[derive(Debug, Clone)]
pub struct Host {
    pub id: u64,
    pub ip: Ipv4Addr,
    netns: Option<String>,
}

impl Host {
    pub fn http_addr(&self) -> String {
        format!("{}:{HTTP_PORT}", self.ip)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
}

/// The hosts of one run.
#[derive(Debug)]
pub struct Hosts {
    pub hosts: Vec<Host>,
    bridge: Option<String>,
    /// Why the run is on loopback, if it is.
    pub loopback_reason: Option<String>,
}

impl Hosts {
    /// Namespaces on a fresh bridge if possible, else loopback addresses.
    pub async fn create(nodes: usize, force_loopback: bool) -> Hosts {
        if force_loopback {
            return Self::loopback(nodes, "--loopback was given".into());
        }
        match Self::namespaces(nodes).await {
            Ok(hosts) => hosts,
            Err((partial, err)) => {
                partial.destroy().await;
                Self::loopback(nodes, format!("cannot create network namespaces ({err}); needs root and iproute2"))
            }
        }
    }

    fn loopback(nodes: usize, reason: String) -> Hosts {
        let hosts = (1..=nodes as u64).map(|id| Host { id, ip: Ipv4Addr::new(127, 0, 0, 10 + id as u8), netns: None });
        Hosts { hosts: hosts.collect(), bridge: None, loopback_reason: Some(reason) }
    }

    async fn namespaces(nodes: usize) -> Result<Hosts, (Hosts, HostError)> {
        // Names and the subnet come from the pid and a count of the sets made
        // in this process, so concurrent runs, and tests sharing a process,
        // do not clash.
        static MADE: AtomicU32 = AtomicU32::new(0);
        let seq = std::process::id().wrapping_add(MADE.fetch_add(1, Ordering::Relaxed).wrapping_mul(37));
        let tag = format!("{:04x}", seq & 0xffff);
        let subnet = 100 + (seq % 100) as u8;
        let bridge = format!("grbr{tag}");
        let mut hosts = Hosts { hosts: Vec::new(), bridge: None, loopback_reason: None };
        let host_ip = format!("10.77.{subnet}.254/24");
        let steps: Vec<Vec<String>> = vec![
            args(&["ip", "link", "add", &bridge, "type", "bridge"]),
            args(&["ip", "link", "set", &bridge, "up"]),
            args(&["ip", "addr", "add", &host_ip, "dev", &bridge]),
        ];
        for step in steps {
            if let Err(err) = run(&step).await {
                return Err((hosts, err));
            }
            hosts.bridge = Some(bridge.clone());
        }
        for id in 1..=nodes as u64 {
            let netns = format!("gr{tag}n{id}");
            let (outside, inside) = (format!("gr{tag}h{id}"), format!("gr{tag}p{id}"));
            let ip = Ipv4Addr::new(10, 77, subnet, id as u8);
            let cidr = format!("{ip}/24");
            if let Err(err) = run(&args(&["ip", "netns", "add", &netns])).await {
                return Err((hosts, err));
            }
            hosts.hosts.push(Host { id, ip, netns: Some(netns.clone()) });
            let steps = [
                args(&["ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside]),
                args(&["ip", "link", "set", &inside, "netns", &netns]),
                args(&["ip", "link", "set", &outside, "master", &bridge, "up"]),
                args(&["ip", "-n", &netns, "addr", "add", &cidr, "dev", &inside]),
                args(&["ip", "-n", &netns, "link", "set", &inside, "up"]),
                args(&["ip", "-n", &netns, "link", "set", "lo", "up"]),
                args(&["ip", "netns", "exec", &netns, "iptables", "-F"]),
            ];
            for step in steps {
                if let Err(err) = run(&step).await {
                    return Err((hosts, err));
                }
            }
        }
        Ok(hosts)
    }

    pub fn get(&self, id: u64) -> Option<&Host> {
        self.hosts.iter().find(|h| h.id == id)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.hosts.iter().map(|h| h.id).collect()
    }

    /// Whether partitions and packet loss can be injected.
    pub fn has_network_faults(&self) -> bool {
        self.loopback_reason.is_none()
    }

    /// The program and arguments that run a program on node `id`'s host
    /// (`ip netns exec <namespace>`); empty on loopback, where it runs as is.
    pub fn runner(&self, id: u64) -> Vec<String> {
        match self.get(id).and_then(|h| h.netns.as_deref()) {
            Some(netns) => ["ip", "netns", "exec", netns].map(String::from).to_vec(),
            None => Vec::new(),
        }
    }

    /// Cuts every pair of nodes that share no group: `[[1,2],[2,3]]` lets 2
    /// talk to both while 1 and 3 are cut off from each other.
    pub async fn partition(&self, groups: &[Vec<u64>]) -> Result<(), HostError> {
        for (a, b) in cut_pairs(&self.ids(), groups) {
            let (Some(a), Some(b)) = (self.get(a), self.get(b)) else { continue };
            self.iptables(a, &["-A", "INPUT", "-s", &b.ip.to_string(), "-j", "DROP"]).await?;
            self.iptables(a, &["-A", "OUTPUT", "-d", &b.ip.to_string(), "-j", "DROP"]).await?;
        }
        Ok(())
    }

    /// Drops `percent`% of the packets node `id` sends to its peers.
    pub async fn lose(&self, id: u64, percent: u32) -> Result<(), HostError> {
        let Some(a) = self.get(id) else { return Ok(()) };
        let probability = format!("{:.2}", f64::from(percent) / 100.0);
        for b in self.hosts.iter().filter(|b| b.id != id) {
            let ip = b.ip.to_string();
            let rule =
                ["-A", "OUTPUT", "-d", &ip, "-m", "statistic", "--mode", "random", "--probability", &probability];
            let mut rule = rule.to_vec();
            rule.extend(["-j", "DROP"]);
            self.iptables(a, &rule).await?;
        }
        Ok(())
    }

    /// Node `id` answers every new TCP connection to `ports` with a reset;
    /// connections it already has, and those it opens, keep flowing.
    pub async fn refuse_new_connections(&self, id: u64, ports: &[u16]) -> Result<(), HostError> {
        let Some(host) = self.get(id) else { return Ok(()) };
        for port in ports {
            let rule = refuse_rule(*port);
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            self.iptables(host, &rule).await?;
        }
        Ok(())
    }

    /// Removes every partition, loss and refusal rule.
    pub async fn heal(&self) -> Result<(), HostError> {
        for host in &self.hosts {
            self.iptables(host, &["-F"]).await?;
        }
        Ok(())
    }

    async fn iptables(&self, host: &Host, rule: &[&str]) -> Result<(), HostError> {
        let Some(netns) = &host.netns else { return Ok(()) };
        let mut command = args(&["ip", "netns", "exec", netns, "iptables"]);
        command.extend(rule.iter().map(|s| s.to_string()));
        run(&command).await
    }

    /// Makes `names` resolve in every namespace: each name to every address
    /// it is given with (a name given several addresses resolves to all of
    /// them, as a DNS name with several A records), plus `localhost`. Does
    /// nothing on loopback.
    pub fn name(&self, names: &[(String, Ipv4Addr)]) -> Result<(), HostError> {
        let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, ip) in names {
            hosts.push_str(&format!("{ip} {name}\n"));
        }
        for netns in self.hosts.iter().filter_map(|h| h.netns.as_deref()) {
            let dir = netns_etc(netns);
            let write = |file: &str, text: &str| {
                let path = dir.join(file);
                std::fs::write(&path, text).map_err(|e| HostError::Command {
                    command: format!("write {}", path.display()),
                    detail: e.to_string(),
                })
            };
            std::fs::create_dir_all(&dir).map_err(|e| HostError::Command {
                command: format!("mkdir {}", dir.display()),
                detail: e.to_string(),
            })?;
            write("hosts", &hosts)?;
            // glibc returns only the first address of a name in the hosts
            // file unless told otherwise.
            write("host.conf", "multi on\n")?;
        }
        Ok(())
    }

    /// Deletes the namespaces, their names, and the bridge (their veths go
    /// with them).
    pub async fn destroy(&self) {
        for host in &self.hosts {
            if let Some(netns) = &host.netns {
                let _ = run(&args(&["ip", "netns", "del", netns])).await;
                let _ = std::fs::remove_dir_all(netns_etc(netns));
            }
        }
        if let Some(bridge) = &self.bridge {
            let _ = run(&args(&["ip", "link", "del", bridge])).await;
        }
    }
}

/// Ordered pairs `(a, b)` where `a` must drop traffic with `b`: those that
/// share no group.
fn cut_pairs(ids: &[u64], groups: &[Vec<u64>]) -> Vec<(u64, u64)> {
    let together = |a: u64, b: u64| groups.iter().any(|g| g.contains(&a) && g.contains(&b));
    let mut pairs = Vec::new();
    for &a in ids {
        for &b in ids {
            if a != b && !together(a, b) {
                pairs.push((a, b));
            }
        }
    }
    pairs
}

/// The iptables rule that refuses new connections to `port`: only a bare
/// SYN matches (`--syn`), so packets of established connections, and the
/// SYN-ACKs of connections the node opens, pass.
fn refuse_rule(port: u16) -> Vec<String> {
    let port = port.to_string();
    args(&["-A", "INPUT", "-p", "tcp", "--syn", "--dport", &port, "-j", "REJECT", "--reject-with", "tcp-reset"])
}

/// The files `ip netns exec` puts over `/etc/` in namespace `netns`.
fn netns_etc(netns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(netns)
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

async fn run(command: &[String]) -> Result<(), HostError> {
    let rendered = command.join(" ");
    let Some((program, rest)) = command.split_first() else { return Ok(()) };
    let output = Command::new(program)
        .args(rest)
        .output()
        .await
        .map_err(|e| HostError::Command { command: rendered.clone(), detail: e.to_string() })?;
    if output.status.success() {
        Ok(())
    } else {
        let detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(HostError::Command { command: rendered, detail: format!("{}: {detail}", output.status) })
    }
}

#[cfg(test)]
mod tests {
    use super::{cut_pairs, refuse_rule};

    #[test]
    fn the_refusal_resets_new_connections_to_the_port_and_nothing_else() {
        assert_eq!(refuse_rule(5000).join(" "), "-A INPUT -p tcp --syn --dport 5000 -j REJECT --reject-with tcp-reset");
    }

    #[test]
    fn a_bridge_node_keeps_both_halves_and_the_halves_lose_each_other() {
        let pairs = cut_pairs(&[1, 2, 3], &[vec![1, 2], vec![2, 3]]);
        assert_eq!(pairs, vec![(1, 3), (3, 1)]);
    }

    #[test]
    fn an_isolated_node_is_cut_from_everyone_both_ways() {
        let pairs = cut_pairs(&[1, 2, 3, 4, 5], &[vec![5], vec![1, 2, 3, 4]]);
        let mut expected: Vec<(u64, u64)> = (1..=4).flat_map(|n| [(n, 5), (5, n)]).collect();
        expected.sort_unstable();
        let mut pairs = pairs;
        pairs.sort_unstable();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn one_group_with_everyone_cuts_nothing() {
        assert!(cut_pairs(&[1, 2, 3], &[vec![1, 2, 3]]).is_empty());
    }
}
