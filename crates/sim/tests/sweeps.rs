//! The simulator in the default test run: seeds replay exactly, sweeps of
//! several fault mixes find no violation, and each planted bug is caught by
//! the checker meant to catch it.

use rzab_proto::PlantedBug;
use rzab_sim::sweep::{SweepReport, sweep};
use rzab_sim::{SimConfig, run};

fn cfg(faults: &str) -> SimConfig {
    SimConfig {
        faults: faults.parse().expect("a valid fault list"),
        ..SimConfig::default()
    }
}

fn jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn clean_sweep(faults: &str, seeds: std::ops::Range<u64>) -> SweepReport {
    let c = cfg(faults);
    let r = sweep(&c, seeds, jobs(), &|_| {});
    let failures: Vec<String> = r
        .failed
        .iter()
        .map(|o| {
            format!(
                "seed {}: {}",
                o.seed,
                o.violations
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
        .collect();
    assert!(failures.is_empty(), "faults {faults}:\n{}", failures.join("\n"));
    r
}

#[test]
fn a_seed_replays_exactly() {
    let c = cfg("drop=0.05,dup=0.01,reorder=0.1,partition");
    let (a, b) = (run(&c, 42), run(&c, 42));
    assert_eq!(
        (a.digest, a.events, a.end, a.writes),
        (b.digest, b.events, b.end, b.writes)
    );
    let other = run(&c, 43);
    assert_ne!(a.digest, other.digest, "another seed is another run");
}

#[test]
fn the_standard_fault_mix_over_many_seeds() {
    let r = clean_sweep("drop=0.05,dup=0.01,reorder=0.1,partition", 0..1500);
    assert!(
        r.dropped > 0 && r.duplicated > 0 && r.reordered > 0 && r.partitions > 0,
        "{r:?}"
    );
    assert!(r.writes > 100_000, "the sweep did real work: {r:?}");
}

#[test]
fn heavy_loss_duplication_and_reordering() {
    clean_sweep("drop=0.3,dup=0.2,reorder=0.3", 10_000..10_500);
}

#[test]
fn partitions_alone() {
    clean_sweep("partition", 20_000..20_500);
}

#[test]
fn crashes_alone() {
    let r = clean_sweep("crash", 30_000..30_600);
    assert!(
        r.crashes > 600 && r.failovers > 100,
        "crashes happened, leaders changed: {r:?}"
    );
}

#[test]
fn crashes_with_the_standard_network_faults() {
    let r = clean_sweep("drop=0.05,dup=0.01,reorder=0.1,partition,crash", 40_000..41_500);
    assert!(r.crashes > 1500 && r.failovers > 300, "{r:?}");
}

#[test]
fn sessions_moving_between_nodes_with_every_fault() {
    let r = clean_sweep(
        "drop=0.05,dup=0.01,reorder=0.1,partition,crash,move",
        50_000..50_800,
    );
    assert!(
        r.binds > 10_000 && r.fences > 3_000 && r.refused_by_fence > 500 && r.crashes > 1000,
        "sessions moved, fences were sequenced and refused writes: {r:?}"
    );
}

#[test]
fn no_faults() {
    clean_sweep("none", 3000..3100);
}

/// Sweeps with a planted bug; returns the checks that fired.
fn caught(bug: PlantedBug, lanes: Option<u8>) -> Vec<&'static str> {
    caught_in(bug, lanes, "drop=0.05,dup=0.01,reorder=0.1,partition", 0..60)
}

/// A sweep with `bug` planted.
fn planted_sweep(
    bug: PlantedBug,
    lanes: Option<u8>,
    faults: &str,
    seeds: std::ops::Range<u64>,
) -> SweepReport {
    let c = SimConfig {
        bug,
        lanes,
        ..cfg(faults)
    };
    sweep(&c, seeds, jobs(), &|_| {})
}

/// The checks a sweep with `bug` planted found violated.
fn caught_in(
    bug: PlantedBug,
    lanes: Option<u8>,
    faults: &str,
    seeds: std::ops::Range<u64>,
) -> Vec<&'static str> {
    let r = planted_sweep(bug, lanes, faults, seeds);
    let mut checks: Vec<_> = r
        .failed
        .iter()
        .flat_map(|o| o.violations.iter().map(|v| v.check))
        .collect();
    checks.sort_unstable();
    checks.dedup();
    checks
}

#[test]
fn a_second_id_for_a_retransmitted_write_breaks_validity() {
    assert!(caught(PlantedBug::SequenceDuplicates, None).contains(&"validity"));
}

#[test]
fn no_retransmission_breaks_liveness() {
    assert!(caught(PlantedBug::NoRetransmitTimeout, None).contains(&"liveness"));
}

#[test]
fn applying_without_the_gate_breaks_agreement() {
    assert!(caught(PlantedBug::ApplyOutOfOrder, Some(3)).contains(&"agreement"));
}

#[test]
fn completing_before_the_local_apply_breaks_read_your_writes() {
    assert!(caught(PlantedBug::CompleteBeforeApply, None).contains(&"session"));
}

#[test]
fn a_leader_ignoring_its_voters_entries_loses_writes() {
    let found = caught_in(PlantedBug::IgnoreHeldEntries, None, "drop=0.1,partition", 0..400);
    assert!(found.contains(&"agreement"), "{found:?}");
}

#[test]
fn an_amnesiac_voter_breaks_agreement() {
    let found = caught_in(
        PlantedBug::AmnesiacVotes,
        None,
        "drop=0.05,dup=0.01,reorder=0.1,partition,crash",
        0..100,
    );
    assert!(
        found.contains(&"agreement") || found.contains(&"validity"),
        "{found:?}"
    );
}

#[test]
fn voting_twice_elects_two_leaders_in_an_epoch() {
    let found = caught_in(
        PlantedBug::VoteTwice,
        None,
        "drop=0.05,dup=0.01,reorder=0.1,partition,crash",
        0..400,
    );
    assert!(found.contains(&"leaders"), "{found:?}");
}

#[test]
fn a_leader_ignoring_fences_is_caught() {
    let found = caught_in(PlantedBug::IgnoreFences, None, "drop=0.05,partition,move", 0..60);
    assert!(found.contains(&"fence"), "{found:?}");
}

#[test]
fn a_leader_honouring_another_clients_fence_is_caught() {
    let r = planted_sweep(
        PlantedBug::FenceAnyOwner,
        None,
        "drop=0.05,partition,move",
        0..100,
    );
    let across = r
        .failed
        .iter()
        .flat_map(|o| &o.violations)
        .filter(|v| v.detail.contains("another client"))
        .count();
    assert!(
        across > 0,
        "the owner check fired in none of {} failing seeds",
        r.failed.len()
    );
}
