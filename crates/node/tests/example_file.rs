//! The example cluster file in the repository parses and validates.

#[test]
fn the_example_cluster_file_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster.toml");
    let f = rzab_node::cluster::ClusterFile::load(&path).unwrap();
    assert_eq!(f.nodes.len(), 3);
}
