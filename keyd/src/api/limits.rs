//! Connections per client address: one address (one client, or one attacker) cannot
//! hold more than `max_connections_per_ip` of keyd's connections. A connection over the
//! limit is answered `429 too_many_connections` on its first request and closed; the
//! count drops as soon as a connection closes.
//!
//! The count is taken once the TLS handshake is done (actix's `on_connect`); handshakes
//! themselves are bounded by `tls_handshake_seconds` and `max_connections`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per client address, against a limit.
#[derive(Debug)]
pub struct PerIp {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerIp`], held in the connection's data: released when
/// the connection closes.
#[derive(Debug)]
pub struct Slot {
    registry: Arc<PerIp>,
    ip: IpAddr,
    /// Whether this connection is over the limit (its requests are refused).
    pub over: bool,
}

impl PerIp {
    /// A registry allowing `limit` connections per address.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(PerIp {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `ip`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Slot {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        *n += 1;
        Slot {
            registry: self.clone(),
            ip,
            over: *n > self.limit,
        }
    }

    /// Open connections from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_open_connections_per_address() {
        let reg = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "10.0.0.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let s1 = reg.admit(a);
        let s2 = reg.admit(a);
        let s3 = reg.admit(a);
        let other = reg.admit(b);
        assert!(!s1.over && !s2.over && s3.over && !other.over);
        drop(s3);
        drop(s1);
        assert_eq!(reg.open(a), 1);
        assert!(!reg.admit(a).over, "a closed connection frees its place");
        drop((s2, other));
        assert_eq!(reg.open(a), 0);
        assert!(reg.open.lock().map(|m| m.is_empty()).unwrap_or(false));
    }
}
