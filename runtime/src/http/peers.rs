//! How many connections one peer address may hold (`max_connections_per_address`), so one
//! client cannot take the whole connection cap: past the cap, actix-web stops accepting and
//! everyone else's new connections wait in the listen backlog until the flood's time out.
//! A connection over its address's share is refused as soon as it is accepted: told why in
//! plain text (which the synapse-http-antispam module reads as "fail open", where a JSON error
//! would be a deny) and closed at once, so it frees its slot and holds nothing. Unix-socket
//! peers are not counted: they are the local homeserver, and the socket's mode and group
//! already decide who may connect. IPv6 peers are counted by their /64, the least a host is
//! given.

use crate::telemetry::Telemetry;
use actix_web::dev::Extensions;
use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

/// The plain-text answer written to a refused connection before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 48\r\nConnection: close\r\n\r\ntoo many connections from this address to glia\r\n";

/// Open TCP connections per peer address, and the limit of each.
pub struct Peers {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    telemetry: Arc<Telemetry>,
    log_throttle: crate::logging::LogThrottle<()>,
}

/// Held in a connection's data while it is open: gives its address's slot back when dropped.
struct Held {
    peers: Arc<Peers>,
    address: IpAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

impl Peers {
    /// At most `limit` connections per address.
    pub fn new(limit: usize, telemetry: Arc<Telemetry>) -> Arc<Peers> {
        Arc::new(Peers {
            limit,
            open: Mutex::default(),
            telemetry,
            log_throttle: Default::default(),
        })
    }

    /// Counts a new connection (the server's `on_connect` hook), or refuses it and closes it
    /// when its address already holds its share.
    pub fn admit(self: &Arc<Self>, stream: &dyn Any, data: &mut Extensions) {
        let Some(tcp) = stream.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        let Ok(peer) = tcp.peer_addr() else {
            return;
        };
        let address = counted_as(peer.ip());
        if self.take(address) {
            data.insert(Held {
                peers: self.clone(),
                address,
            });
        } else {
            self.refused(address);
            refuse(tcp);
        }
    }

    /// Takes one of `address`'s slots, if it has one left.
    fn take(&self, address: IpAddr) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(address).or_default();
        if *count >= self.limit {
            return false;
        }
        *count += 1;
        true
    }

    /// Counts a refused connection, and logs it at most once per throttle period.
    fn refused(&self, address: IpAddr) {
        if let Some(metrics) = self.telemetry.metrics() {
            metrics.http_refused("connection", "503", "per_address_limit");
        }
        if let Some(left_out) = self.log_throttle.admit(()) {
            tracing::warn!(
                peer = %address,
                limit = self.limit,
                left_out,
                "connection refused: its address already holds max_connections_per_address \
                 connections (counted in glia_http_refused_total)"
            );
        }
    }
}

/// The address a peer is counted under: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6
/// by its /64.
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Writes [`REFUSAL`] and shuts the connection down both ways: the dispatcher then reads its
/// end at once and drops it, so it gives its slot back without waiting for any timeout.
fn refuse(tcp: &actix_web::rt::net::TcpStream) {
    let fd = tcp.as_raw_fd();
    // Straight to the socket, not `try_write`: tokio skips the write of a socket it has not
    // yet seen writable, as a connection just accepted is. A new connection's send buffer is
    // empty, so this short write does not block or split; if it fails the connection is
    // closed all the same.
    // SAFETY: send and shutdown on a descriptor the stream owns, which stays open for the
    // calls; the buffer is a static of the length given.
    unsafe {
        libc::send(
            fd,
            REFUSAL.as_ptr().cast(),
            REFUSAL.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_peers_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(counted_as(a), counted_as(b));
        assert_ne!(counted_as(a), counted_as(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(counted_as(mapped), "127.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_refusal_says_its_length_right() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn an_address_gets_its_slots_back_when_its_connections_close() {
        let peers = Peers::new(
            2,
            Arc::new(Telemetry::disabled(crate::telemetry::Role::Coordinator)),
        );
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(peers.take(one) && peers.take(one));
        assert!(!peers.take(one));
        assert!(peers.take(two));
        drop(Held {
            peers: peers.clone(),
            address: one,
        });
        assert!(peers.take(one));
    }
}
