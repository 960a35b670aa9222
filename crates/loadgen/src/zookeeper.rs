//! ZooKeeper back-end: key `kNNNNNNNNN` is znode `/rzab-bench/kNNNNNNNNN`;
//! a read is getData, a write setData (any version).

use crate::runner::{KvBackend, connection_lost};
use std::future::Future;
use std::time::Duration;
use zookeeper_client as zk;

const ROOT: &str = "/rzab-bench";

/// One ZooKeeper session; clones share it, and the client library pipelines
/// their requests on its connection.
#[derive(Clone)]
pub struct ZkBackend {
    client: zk::Client,
    server: String,
}

impl ZkBackend {
    /// Opens a session with one server (no fail-over: a lost server should
    /// fail the run, not silently move its load).
    pub async fn connect(server: String) -> Result<ZkBackend, String> {
        let client = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_connection_timeout(Duration::from_secs(5))
            .with_fail_eagerly()
            .connect(&server)
            .await
            .map_err(|e| format!("zookeeper {server}: {e}"))?;
        Ok(ZkBackend { client, server })
    }

    fn fail(&self, what: &str, path: &str, e: zk::Error) -> String {
        let msg = format!("zookeeper {}: {what} {path}: {e}", self.server);
        match e {
            // The session's connection is gone (Custom carries the socket's
            // I/O errors): the run stops at once.
            zk::Error::ConnectionLoss
            | zk::Error::SessionExpired
            | zk::Error::ClientClosed
            | zk::Error::NoHosts
            | zk::Error::Custom(_) => connection_lost(msg),
            _ => msg,
        }
    }
}

fn znode(key: &[u8]) -> String {
    format!("{ROOT}/{}", String::from_utf8_lossy(key))
}

fn create_options() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

impl KvBackend for ZkBackend {
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<(), String>> + Send {
        let path = znode(key);
        // The request is queued here, when the future is made.
        let reply = self.client.get_data(&path);
        async move { reply.await.map(drop).map_err(|e| self.fail("getData", &path, e)) }
    }

    fn put(&self, key: &[u8], value: &[u8]) -> impl Future<Output = Result<(), String>> + Send {
        let path = znode(key);
        let reply = self.client.set_data(&path, value, None);
        async move { reply.await.map(drop).map_err(|e| self.fail("setData", &path, e)) }
    }

    async fn prepare(&self) -> Result<(), String> {
        match self.client.create(ROOT, b"", &create_options()).await {
            Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
            Err(e) => Err(self.fail("create", ROOT, e)),
        }
    }

    /// Creates the znode, or sets it when an earlier run left it behind.
    fn preload(&self, key: &[u8], value: &[u8]) -> impl Future<Output = Result<(), String>> + Send {
        let path = znode(key);
        async move {
            match self.client.create(&path, value, &create_options()).await {
                Ok(_) => Ok(()),
                Err(zk::Error::NodeExists) => self
                    .client
                    .set_data(&path, value, None)
                    .await
                    .map(drop)
                    .map_err(|e| self.fail("setData", &path, e)),
                Err(e) => Err(self.fail("create", &path, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_map_to_znodes_under_the_bench_root() {
        assert_eq!(super::znode(&crate::key_name(1)), "/rzab-bench/k000000001");
    }
}
