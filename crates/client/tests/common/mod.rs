//! Shared by the client's tests that fake a server.

use rzab_client::protocol::{Binding, Reply};

/// What the fake servers admit a session with.
pub const WELCOME: Reply<'static> = Reply::Welcome {
    session: 1,
    zxid: 0,
    node: 0,
    max_key: 64,
    max_value: 1024,
    max_inflight: 16,
    binding: Binding {
        node: 0,
        lane: 0,
        session: 0,
        generation: 1,
    },
};
