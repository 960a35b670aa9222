//! A blocking wrapper over the async [`Client`](crate::Client): each call
//! runs on a small runtime this wrapper owns.

use crate::{ClientConfig, Error, Versioned};
use tokio::runtime::Runtime;

/// A session with an rzab cluster, for code without an async runtime.
pub struct Client {
    rt: Runtime,
    inner: crate::Client,
}

impl Client {
    pub fn connect(cfg: ClientConfig) -> Result<Client, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start a runtime: {e}")))?;
        let inner = rt.block_on(crate::Client::connect(cfg))?;
        Ok(Client { rt, inner })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        self.rt.block_on(self.inner.get(key))
    }

    pub fn sync_get(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        self.rt.block_on(self.inner.sync_get(key))
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<u64, Error> {
        self.rt.block_on(self.inner.put(key, value))
    }

    pub fn delete(&self, key: &[u8]) -> Result<Option<bool>, Error> {
        self.rt.block_on(self.inner.delete(key))
    }

    /// The async client underneath (for pipelining from a runtime of yours).
    pub fn inner(&self) -> &crate::Client {
        &self.inner
    }

    pub fn last_zxid(&self) -> u64 {
        self.inner.last_zxid()
    }

    pub fn session_id(&self) -> u64 {
        self.inner.session_id()
    }
}
