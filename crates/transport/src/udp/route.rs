//! Where a `Dest` goes, and whether a source address is one we accept.

use super::config::Layout;
use super::sys;
use crate::{Dest, NodeId, NodeSet};
use std::mem::size_of;

/// Destination addresses of one lane, resolved once.
pub struct Routes {
    me: NodeId,
    members: NodeSet,
    lane_addrs: Vec<Option<libc::sockaddr_in>>,
    group: Option<libc::sockaddr_in>,
}

impl Routes {
    pub fn new(me: NodeId, layout: &Layout) -> Routes {
        Routes {
            me,
            members: layout.members,
            lane_addrs: layout.lane_addrs.iter().map(|a| a.map(sys::sockaddr)).collect(),
            group: layout.group.map(sys::sockaddr),
        }
    }

    /// Calls `each` with every address `dest` reaches (never this node).
    /// Returns how many copies had nowhere to go (a non-member node).
    pub fn resolve(&self, dest: Dest, mut each: impl FnMut(&libc::sockaddr_in)) -> u64 {
        match dest {
            Dest::Node(n) if n == self.me => 0,
            Dest::Node(n) => match self.lane_addrs.get(usize::from(n)).copied().flatten() {
                Some(a) => {
                    each(&a);
                    0
                }
                None => 1,
            },
            Dest::Set(s) => self.each_node(s, each),
            Dest::Group => match &self.group {
                Some(g) => {
                    each(g);
                    0
                }
                None => self.each_node(self.members, each),
            },
        }
    }

    fn each_node(&self, set: NodeSet, mut each: impl FnMut(&libc::sockaddr_in)) -> u64 {
        let mut missing = 0;
        for n in set.without(self.me).iter() {
            match self.lane_addrs.get(usize::from(n)).copied().flatten() {
                Some(a) => each(&a),
                None => missing += 1,
            }
        }
        missing
    }
}

/// Who sent a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Peer,
    /// This endpoint itself (its multicast heard back on loopback).
    Own,
    Unknown,
}

/// The source addresses a lane accepts: its peers' lane addresses.
pub struct Filter {
    own: libc::sockaddr_in,
    peers: Vec<libc::sockaddr_in>,
}

impl Filter {
    pub fn new(layout: &Layout) -> Filter {
        Filter {
            own: sys::sockaddr(layout.own),
            peers: layout.peer_sockaddrs(),
        }
    }

    /// A linear scan: clusters are a handful of nodes.
    pub fn classify(&self, name: &libc::sockaddr_in, name_len: usize) -> Source {
        if name_len != size_of::<libc::sockaddr_in>() || name.sin_family != libc::AF_INET as libc::sa_family_t
        {
            Source::Unknown
        } else if sys::same_addr(name, &self.own) {
            Source::Own
        } else if self.peers.iter().any(|p| sys::same_addr(name, p)) {
            Source::Peer
        } else {
            Source::Unknown
        }
    }
}
