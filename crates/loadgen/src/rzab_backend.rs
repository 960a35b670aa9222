//! The rzab back-end: one `rzab_client::Client` (one session, one TCP
//! connection) per load-generator client; its in-flight loops pipeline on it.

use crate::KvBackend;
use rzab_client::{Client, ClientConfig};
use std::net::SocketAddr;

#[derive(Clone)]
pub struct RzabBackend {
    client: Client,
}

impl RzabBackend {
    /// Connects to `server` first (the others are fail-over targets), with
    /// room for `inflight` requests in flight.
    pub async fn connect(
        servers: &[String],
        first: usize,
        inflight: usize,
        token: Option<&str>,
    ) -> Result<RzabBackend, String> {
        let mut addrs = Vec::with_capacity(servers.len());
        for s in servers {
            let a: SocketAddr = s
                .parse()
                .map_err(|_| format!("rzab server '{s}' is not an IP:PORT address"))?;
            addrs.push(a);
        }
        if addrs.is_empty() {
            return Err("no rzab server given".into());
        }
        let n = addrs.len();
        addrs.rotate_left(first % n);
        let mut cfg = ClientConfig::new(addrs);
        cfg.max_inflight = inflight.max(1);
        cfg.token = token.map(|t| t.as_bytes().to_vec());
        let client = Client::connect(cfg).await.map_err(|e| e.to_string())?;
        Ok(RzabBackend { client })
    }
}

impl KvBackend for RzabBackend {
    async fn get(&self, key: &[u8]) -> Result<(), String> {
        self.client.get(key).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.client
            .put(key, value)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
