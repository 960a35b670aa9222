//! rzab-client: talk to an rzab cluster from your own program.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rzab_client::Error> {
//! use rzab_client::{Client, ClientConfig};
//! let cfg = ClientConfig::new(vec!["127.0.0.1:7000".parse().unwrap()]);
//! let client = Client::connect(cfg).await?;
//! let zxid = client.put(b"greeting", b"hello").await?;
//! let got = client.get(b"greeting").await?;
//! assert_eq!(got.map(|v| v.value), Some(b"hello".to_vec()));
//! # let _ = zxid;
//! # Ok(())
//! # }
//! ```
//!
//! A [`Client`] is one session over one TCP connection. Clones share it,
//! and requests from many tasks are pipelined (up to
//! [`ClientConfig::max_inflight`] at once); they go out in the order their
//! futures are first polled (while that many are in flight, the others
//! wait for room), and the server answers them in that order. The session gives ZooKeeper's guarantees: its requests take
//! effect in the order issued, it reads its own writes, and its reads never
//! go back in time, across reconnections to other replicas too. A write
//! that failed with [`Error::ConnectionLost`] either took effect before
//! anything the session does next, or never does: each connection binds the
//! session anew, and the leader fences off the previous binding's writes
//! still on their way.
//! [`blocking::Client`] wraps it for code without an async runtime.

pub mod blocking;
mod client;
mod conn;
pub mod protocol;

pub use client::{Client, ClientConfig, Error, Versioned};
pub use protocol::{ErrorCode, WriteOutcome};
