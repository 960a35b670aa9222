//! etcd back-end: a read is a Range of one key (etcd's default linearizable
//! read), a write a Put.

use crate::runner::{KvBackend, connection_lost};
use etcd_client::{Client, ConnectOptions, Error, KvClient};
use std::future::Future;
use std::time::Duration;

/// One gRPC channel to one server; clones share it, and HTTP/2 multiplexes
/// their requests on its connection.
#[derive(Clone)]
pub struct EtcdBackend {
    kv: KvClient,
    server: String,
    // Keeps the channel's endpoint list alive for the client's lifetime.
    _client: Client,
}

impl EtcdBackend {
    pub async fn connect(server: String) -> Result<EtcdBackend, String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10));
        let client = Client::connect([format!("http://{server}")], Some(options))
            .await
            .map_err(|e| format!("etcd {server}: {e}"))?;
        // The channel connects lazily: one request proves the server answers.
        client
            .maintenance_client()
            .status()
            .await
            .map_err(|e| format!("etcd {server}: status: {e}"))?;
        Ok(EtcdBackend {
            kv: client.kv_client(),
            server,
            _client: client,
        })
    }
}

impl EtcdBackend {
    /// The runner names the request and key; this adds the server and cause.
    fn fail(&self, e: Error) -> String {
        let msg = format!("etcd {}: {e}", self.server);
        if lost_connection(&e) {
            connection_lost(msg)
        } else {
            msg
        }
    }
}

/// No connection to the server (refused, or reset under a request, which
/// tonic reports as Unknown with a transport error beneath): the run stops.
fn lost_connection(e: &Error) -> bool {
    match e {
        Error::TransportError(_) => true,
        Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable
                || std::error::Error::source(s).is_some_and(|src| src.is::<tonic::transport::Error>())
        }
        _ => false,
    }
}

impl KvBackend for EtcdBackend {
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<(), String>> + Send {
        let mut kv = self.kv.clone();
        let key = key.to_vec();
        async move { kv.get(key, None).await.map(drop).map_err(|e| self.fail(e)) }
    }

    fn put(&self, key: &[u8], value: &[u8]) -> impl Future<Output = Result<(), String>> + Send {
        let mut kv = self.kv.clone();
        let (key, value) = (key.to_vec(), value.to_vec());
        async move { kv.put(key, value, None).await.map(drop).map_err(|e| self.fail(e)) }
    }
}
