//! Writes, reads and deletes a key, then pipelines 1000 reads.
//!
//! Start a cluster (`rzab serve --config cluster.toml --id N` for each
//! node), then: `cargo run --release -p rzab-client --example hello --
//! 127.0.0.1:7102 127.0.0.1:7112 127.0.0.1:7122`

use rzab_client::{Client, ClientConfig};
use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::args()
        .skip(1)
        .map(|a| a.parse::<SocketAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("give the nodes' client addresses (IP:PORT ...)".into());
    }
    let client = Client::connect(ClientConfig::new(servers)).await?;
    println!("session {:#x} at node {}", client.session_id(), client.node());
    let zxid = client.put(b"greeting", b"hello").await?;
    println!("put at zxid {zxid:#x}");
    let got = client.get(b"greeting").await?;
    println!(
        "get: {:?}",
        got.map(|v| String::from_utf8_lossy(&v.value).into_owned())
    );
    // Requests from many tasks share the connection, pipelined.
    let reads: Vec<_> = (0..1000)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get(b"greeting").await })
        })
        .collect();
    for r in reads {
        r.await??;
    }
    println!(
        "1000 pipelined reads done; deleted: {:?}",
        client.delete(b"greeting").await?
    );
    Ok(())
}
