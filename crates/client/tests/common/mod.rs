//! Shared by the client's tests that fake a server.

use rzab_client::protocol::Reply;

/// What the fake servers admit a session with.
pub const WELCOME: Reply<'static> = Reply::Welcome {
    session: 1,
    zxid: 0,
    node: 0,
    max_key: 64,
    max_value: 1024,
    max_inflight: 16,
};
