//! Node and client configuration files (TOML), as `hotline cluster init`
//! writes them.

use std::path::{Path, PathBuf};

use hotline_federation::topology::Topology;
use serde::{Deserialize, Serialize};

/// Paths of a TLS identity: the cluster CA and this party's certificate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Peer {
    pub id: u64,
    pub address: String,
}

/// Raft and driver tunables, with defaults for a LAN/loopback deployment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Tuning {
    pub tick_ms: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// See `ReplicaConfig::compact_log_entries`.
    pub compact_log_entries: u64,
    /// See `ReplicaConfig::compact_log_bytes`.
    pub compact_log_bytes: u64,
    /// Proposals waiting for the raft loop; beyond it clients get
    /// `ResourceExhausted`.
    pub max_proposal_queue: usize,
    /// Proposals handed to raft and not yet applied.
    pub max_in_flight_proposals: usize,
    pub request_timeout_ms: u64,
    /// Largest gRPC message accepted (raft snapshots travel in one message).
    pub max_message_bytes: usize,
    /// How long an empty replica hosted for a group purged from this node
    /// waits for a leader to bring it the group (a snapshot, or the log)
    /// before it goes again. A leader that added the node back does so
    /// within a heartbeat and a snapshot's transfer (a snapshot slower
    /// than this hosts the group again when it arrives); a member's message
    /// queued before the removal, delivered after the purge, seeds one
    /// that no leader follows up.
    pub purged_seed_wait_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            tick_ms: 100,
            election_ticks: crate::core::replica::ELECTION_TICKS,
            heartbeat_ticks: 1,
            compact_log_entries: 10_000,
            compact_log_bytes: 4 * 1024 * 1024,
            max_proposal_queue: 8_192,
            max_in_flight_proposals: 16_384,
            request_timeout_ms: 5_000,
            max_message_bytes: 256 * 1024 * 1024,
            purged_seed_wait_ms: 30_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeConfig {
    pub id: u64,
    /// host:port this node serves gRPC on (clients and peers).
    pub listen: String,
    pub data_dir: PathBuf,
    /// The federation's topology file: nodes, sites, and every group with
    /// its voters and learners. This node hosts the groups it is a member
    /// of; the same file gives every node the directory.
    pub topology: PathBuf,
    /// Plaintext gRPC. Only with an explicit `insecure = true`.
    #[serde(default)]
    pub insecure: bool,
    pub tls: Option<TlsFiles>,
    #[serde(default)]
    pub tuning: Tuning,
    /// Delivery of requester notifications (log sender by default).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// host:port of the plain-HTTP `/metrics` endpoint (Prometheus text);
    /// none: no endpoint.
    #[serde(default)]
    pub metrics_listen: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClientConfig {
    pub endpoints: Vec<Peer>,
    /// The topology, so the client can route a request to the group that
    /// owns its region (optional: without it, the nodes' first groups).
    #[serde(default)]
    pub topology: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })
}

fn check_tls(path: &Path, insecure: bool, tls: &Option<TlsFiles>) -> Result<(), ConfigError> {
    if !insecure && tls.is_none() {
        return Err(ConfigError::Invalid {
            path: path.into(),
            reason: "no [tls] section: give one, or set insecure = true explicitly".into(),
        });
    }
    Ok(())
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let c: NodeConfig = read(path)?;
        check_tls(path, c.insecure, &c.tls)?;
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.into(),
            reason,
        };
        if c.id == 0 {
            return Err(invalid("id: must be at least 1".into()));
        }
        let t = c
            .load_topology()
            .map_err(|e| invalid(format!("topology: {e}")))?;
        if t.node(c.id).is_none() {
            return Err(invalid(format!(
                "id: node {} is not in the topology {}",
                c.id,
                c.topology.display()
            )));
        }
        if c.tuning.election_ticks <= c.tuning.heartbeat_ticks || c.tuning.tick_ms == 0 {
            return Err(invalid(
                "tuning: election_ticks must exceed heartbeat_ticks and tick_ms be positive".into(),
            ));
        }
        if c.tuning.purged_seed_wait_ms < 1_000 {
            return Err(invalid(format!(
                "tuning: purged_seed_wait_ms must be at least 1000 (a leader that adds the node \
                 back needs a heartbeat and a snapshot's transfer), got {}",
                c.tuning.purged_seed_wait_ms
            )));
        }
        Ok(c)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            toml::to_string_pretty(self).expect("config serializes"),
        )
    }

    pub fn load_topology(&self) -> Result<Topology, hotline_federation::topology::TopologyError> {
        Topology::load(&self.topology)
    }
}

impl ClientConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let c: ClientConfig = read(path)?;
        check_tls(path, c.insecure, &c.tls)?;
        if c.endpoints.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.into(),
                reason: "endpoints: at least one is needed".into(),
            });
        }
        Ok(c)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            toml::to_string_pretty(self).expect("config serializes"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purged_seed_wait_under_a_second_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("topology.toml");
        std::fs::write(
            &topology,
            "name = \"t\"\n[[node]]\nid = 1\naddress = \"127.0.0.1:7000\"\nsite = \"a\"\n\
             level = \"district\"\nregion = \"310114\"\n[[group]]\nregion = \"310114\"\n\
             voters = [1]\n",
        )
        .unwrap();
        let mut c = NodeConfig {
            id: 1,
            listen: "127.0.0.1:7000".into(),
            data_dir: dir.path().join("data"),
            topology,
            insecure: true,
            tls: None,
            tuning: Tuning::default(),
            notify: Default::default(),
            metrics_listen: None,
        };
        let path = dir.path().join("node.toml");
        c.write(&path).unwrap();
        assert_eq!(NodeConfig::load(&path).unwrap(), c);
        c.tuning.purged_seed_wait_ms = 999;
        c.write(&path).unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("purged_seed_wait_ms") && e.contains("at least 1000") && e.contains("999"),
            "{e}"
        );
    }
}
