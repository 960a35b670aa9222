//! Quorum arithmetic, kept apart from everything else.

/// Nodes needed for a quorum of `n` voters (a strict majority).
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Like [`committed_point`] for a cluster of `voters` members of which only
/// the followers in `follower_points` may be counted (the others are still
/// catching up): below the result, a majority of all voters hold every lid.
pub fn committed_point_of(
    voters: usize,
    leader_point: u64,
    follower_points: &[u64],
    scratch: &mut Vec<u64>,
) -> u64 {
    let need = majority(voters);
    scratch.clear();
    scratch.push(leader_point);
    scratch.extend_from_slice(follower_points);
    if scratch.len() < need {
        return 0;
    }
    scratch.sort_unstable_by(|a, b| b.cmp(a));
    scratch[need - 1]
}

/// The highest lid point that a quorum has received: every lid below the
/// returned value is held by at least `majority(voters)` nodes.
///
/// `leader_point` is what the leader holds itself; `follower_points` are the
/// followers' cumulative receipt points. `scratch` avoids allocating.
pub fn committed_point(leader_point: u64, follower_points: &[u64], scratch: &mut Vec<u64>) -> u64 {
    debug_assert!(
        follower_points.iter().all(|&p| p <= leader_point),
        "followers ahead of the leader"
    );
    let voters = follower_points.len() + 1;
    let need = majority(voters);
    scratch.clear();
    scratch.push(leader_point);
    scratch.extend_from_slice(follower_points);
    scratch.sort_unstable_by(|a, b| b.cmp(a));
    // The need-th highest point is held by `need` nodes.
    scratch[need - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities() {
        assert_eq!([1, 2, 3, 4, 5].map(majority), [1, 2, 2, 3, 3]);
    }

    #[test]
    fn followers_still_catching_up_do_not_count() {
        let mut s = Vec::new();
        // 5 voters, 2 followers counted: the leader and both are needed.
        assert_eq!(committed_point_of(5, 10, &[9, 7], &mut s), 7);
        // 5 voters, 1 counted: no quorum.
        assert_eq!(committed_point_of(5, 10, &[9], &mut s), 0);
    }

    #[test]
    fn committed_point_is_the_quorum_th_highest() {
        let mut s = Vec::new();
        // 5 nodes: leader at 10, followers 9, 3, 0, 7 -> 3 nodes hold < 9? no:
        // sorted 10, 9, 7, 3, 0; the 3rd highest is 7.
        assert_eq!(committed_point(10, &[9, 3, 0, 7], &mut s), 7);
        // A single node commits alone.
        assert_eq!(committed_point(4, &[], &mut s), 4);
        // 3 nodes, one dead follower: the live one decides.
        assert_eq!(committed_point(8, &[0, 5], &mut s), 5);
    }
}
