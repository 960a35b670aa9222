//! The example cluster file in the repository parses and validates.

#[test]
fn the_example_cluster_file_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster.toml");
    let f = rzab_node::cluster::ClusterFile::load(&path).unwrap();
    assert_eq!(f.nodes.len(), 3);
}

#[test]
fn the_example_rdma_cluster_file_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster-rdma.toml");
    let f = rzab_node::cluster::ClusterFile::load(&path).unwrap();
    assert_eq!((f.transport.kind.as_str(), f.nodes.len()), ("rdma", 3));
    assert_eq!(f.rdma(1, 0).layout().unwrap().recv_slots, 128);
}
