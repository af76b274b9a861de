//! The address a client is counted under by per-client limits
//! (connections, handshakes, TokenReview misses): an IPv4 address (also
//! when written IPv4-mapped), or the /64 of an IPv6 address, since one
//! host or home is routinely given a whole /64.

use std::net::{IpAddr, Ipv6Addr};

/// `peer` as per-client limits count it.
pub fn counted_as(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}
