//! Failures grouped for the terminal: one line per violation kind × fsync
//! policy × fault profile, with its count and the replay line of its
//! smallest case, so a run with thousands of violations prints a screenful
//! (every case still goes to `failures.csv`). `summary.json` keeps the
//! groups, so `powercut merge` joins the shards' groups and prints the same.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Groups kept at most; failures of further groups are counted in
/// [`FailureGroups::ungrouped`] (kinds × policies × faults of one scenario
/// stay far below it).
pub const GROUPS_MAX: usize = 256;

/// Group lines printed at most, largest groups first.
pub const GROUP_LINES_MAX: usize = 32;

/// What a group is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    pub kind: String,
    pub policy: String,
    pub fault: String,
}

/// One group's count and its smallest case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub count: u64,
    /// The case with the fewest operations (ties: the smaller case id, so
    /// the choice does not depend on the order workers finish in).
    pub smallest_case: String,
    pub smallest_operations: u64,
}

/// Failures of a run by kind × policy × fault.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "GroupsOnDisk", from = "GroupsOnDisk")]
pub struct FailureGroups {
    groups: BTreeMap<GroupKey, Group>,
    /// Failures that found no room in [`GROUPS_MAX`] groups.
    pub ungrouped: u64,
}

/// One group as `summary.json` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct GroupRow {
    kind: String,
    policy: String,
    fault: String,
    count: u64,
    smallest_case: String,
    smallest_operations: u64,
}

/// [`FailureGroups`] in `summary.json`: a list (JSON keys are strings).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct GroupsOnDisk {
    groups: Vec<GroupRow>,
    ungrouped: u64,
}

impl From<FailureGroups> for GroupsOnDisk {
    fn from(groups: FailureGroups) -> GroupsOnDisk {
        GroupsOnDisk {
            groups: groups
                .groups
                .into_iter()
                .map(|(key, group)| GroupRow {
                    kind: key.kind,
                    policy: key.policy,
                    fault: key.fault,
                    count: group.count,
                    smallest_case: group.smallest_case,
                    smallest_operations: group.smallest_operations,
                })
                .collect(),
            ungrouped: groups.ungrouped,
        }
    }
}

impl From<GroupsOnDisk> for FailureGroups {
    fn from(disk: GroupsOnDisk) -> FailureGroups {
        let mut groups = FailureGroups {
            ungrouped: disk.ungrouped,
            ..FailureGroups::default()
        };
        for row in disk.groups {
            let key = GroupKey {
                kind: row.kind,
                policy: row.policy,
                fault: row.fault,
            };
            groups.add_many(key, row.count, &row.smallest_case, row.smallest_operations);
        }
        groups
    }
}

impl FailureGroups {
    /// Counts one failure; `operations` measures its case (fewer is
    /// smaller: the crash points of its cycles added up).
    pub fn add(&mut self, key: GroupKey, case_id: &str, operations: u64) {
        self.add_many(key, 1, case_id, operations);
    }

    /// Joins another run's groups (a shard's, for `powercut merge`): counts
    /// added, the smaller of the two smallest cases kept.
    pub fn join(&mut self, other: &FailureGroups) {
        for (key, group) in &other.groups {
            self.add_many(
                key.clone(),
                group.count,
                &group.smallest_case,
                group.smallest_operations,
            );
        }
        self.ungrouped += other.ungrouped;
    }

    /// Counts `count` failures of a group whose smallest is `case_id`.
    fn add_many(&mut self, key: GroupKey, count: u64, case_id: &str, operations: u64) {
        if !self.groups.contains_key(&key) && self.groups.len() >= GROUPS_MAX {
            self.ungrouped += count;
            return;
        }
        let group = self.groups.entry(key).or_insert_with(|| Group {
            count: 0,
            smallest_case: case_id.to_string(),
            smallest_operations: operations,
        });
        group.count += count;
        if (operations, case_id) < (group.smallest_operations, group.smallest_case.as_str()) {
            group.smallest_case = case_id.to_string();
            group.smallest_operations = operations;
        }
        assert!(self.groups.len() <= GROUPS_MAX);
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// The smallest case of group `key`, if it has one.
    pub fn smallest_case(&self, key: &GroupKey) -> Option<&str> {
        self.groups
            .get(key)
            .map(|group| group.smallest_case.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Every group: kinds with the most violations first, and within a
    /// kind the largest groups first (ties in key order).
    pub fn by_size(&self) -> Vec<(&GroupKey, &Group)> {
        let mut kind_totals: BTreeMap<&str, u64> = BTreeMap::new();
        for (key, group) in &self.groups {
            *kind_totals.entry(key.kind.as_str()).or_insert(0) += group.count;
        }
        let mut groups: Vec<_> = self.groups.iter().collect();
        groups.sort_by(|a, b| {
            let kind_total = |key: &GroupKey| kind_totals[key.kind.as_str()];
            kind_total(b.0)
                .cmp(&kind_total(a.0))
                .then_with(|| a.0.kind.cmp(&b.0.kind))
                .then(b.1.count.cmp(&a.1.count))
                .then_with(|| a.0.cmp(b.0))
        });
        groups
    }

    /// The lines a run prints: a heading, one aligned line per group (at
    /// most [`GROUP_LINES_MAX`], then one line for the rest), each ending
    /// with the replay command of the group's smallest case, whose argument
    /// `replay_argument` makes from the case id (a process target replays
    /// from its bundle, not its case id).
    pub fn lines(&self, replay_argument: &dyn Fn(&str) -> String) -> Vec<String> {
        let total: u64 = self.groups.values().map(|g| g.count).sum::<u64>() + self.ungrouped;
        if total == 0 {
            return Vec::new();
        }
        let groups = self.by_size();
        let shown = &groups[..groups.len().min(GROUP_LINES_MAX)];
        let width =
            |f: fn(&GroupKey) -> &str| shown.iter().map(|(key, _)| f(key).len()).max().unwrap_or(0);
        let (kind_w, policy_w, fault_w) = (
            width(|k| &k.kind),
            width(|k| &k.policy),
            width(|k| &k.fault),
        );
        let count_w = shown
            .iter()
            .map(|(_, g)| g.count.to_string().len())
            .max()
            .unwrap_or(1);
        let mut lines = vec![format!(
            "FAIL {total} violation(s) in {} group(s) of kind × policy × fault; each line replays its group's smallest case (fewest operations):",
            groups.len()
        )];
        for (key, group) in shown {
            lines.push(format!(
                "  {:>count_w$} × {:kind_w$}  {:policy_w$}  {:fault_w$}  powercut replay {}",
                group.count,
                key.kind,
                key.policy,
                key.fault,
                replay_argument(&group.smallest_case)
            ));
        }
        let hidden = &groups[shown.len()..];
        if !hidden.is_empty() || self.ungrouped > 0 {
            let count: u64 = hidden.iter().map(|(_, g)| g.count).sum::<u64>() + self.ungrouped;
            lines.push(format!(
                "  … and {count} more violation(s) in smaller groups (see failures.csv)"
            ));
        }
        lines
    }
}

/// The line that ends a failing run (or merge): violations by kind, where
/// every case is (`failures.csv` in the report folder `out`), and what to
/// do next.
pub fn closing_line(by_kind: &BTreeMap<String, u64>, out: Option<&Path>) -> String {
    let mut text = String::from("violations by kind: ");
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    text.push_str(&kinds.join(", "));
    let _ = match out {
        Some(out) => write!(
            text,
            "; every case is in {}",
            out.join(super::merge::FAILURES_FILE).display()
        ),
        None => write!(text, "; --out DIR keeps every case in DIR/failures.csv"),
    };
    text.push_str("; `powercut shrink CASE` reduces one to a minimal case");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, policy: &str) -> GroupKey {
        GroupKey {
            kind: kind.into(),
            policy: policy.into(),
            fault: "power-loss".into(),
        }
    }

    #[test]
    fn groups_count_and_keep_the_smallest_case_whatever_the_order() {
        let cases = [("pc1:b", 30), ("pc1:a", 12), ("pc1:c", 12), ("pc1:d", 50)];
        let mut forward = FailureGroups::default();
        let mut backward = FailureGroups::default();
        for (case, operations) in cases {
            forward.add(key("phantom", "always"), case, operations);
        }
        for (case, operations) in cases.iter().rev() {
            backward.add(key("phantom", "always"), case, *operations);
        }
        assert_eq!(forward, backward);
        let (_, group) = forward.by_size()[0];
        assert_eq!(group.count, 4);
        assert_eq!(
            (group.smallest_case.as_str(), group.smallest_operations),
            ("pc1:a", 12)
        );
    }

    #[test]
    fn lines_are_bounded_and_each_group_line_has_its_replay_command() {
        let mut groups = FailureGroups::default();
        for i in 0..(GROUPS_MAX + 10) {
            for _ in 0..=i % 3 {
                groups.add(
                    key(&format!("kind-{i}"), "group"),
                    &format!("pc1:{i}"),
                    i as u64,
                );
            }
        }
        assert_eq!(groups.len(), GROUPS_MAX);
        assert!(groups.ungrouped > 0);
        let lines = groups.lines(&|case| case.to_string());
        assert_eq!(lines.len(), 1 + GROUP_LINES_MAX + 1, "{lines:#?}");
        assert!(lines[0].starts_with("FAIL "), "{}", lines[0]);
        for line in &lines[1..=GROUP_LINES_MAX] {
            assert_eq!(line.matches("powercut replay pc1:").count(), 1, "{line}");
        }
        assert!(lines.last().unwrap().contains("more violation(s)"));
        let total: u64 = (0..(GROUPS_MAX + 10)).map(|i| (i % 3 + 1) as u64).sum();
        assert!(
            lines[0].contains(&format!("FAIL {total} violation(s)")),
            "{}",
            lines[0]
        );
        assert!(
            FailureGroups::default()
                .lines(&|case| case.to_string())
                .is_empty()
        );
    }

    /// Shards' groups joined equal the groups of all their failures, and
    /// survive `summary.json`.
    #[test]
    fn groups_join_and_round_trip_through_json() {
        let failures = [
            ("phantom", "always", "pc1:a", 30),
            ("phantom", "always", "pc1:b", 12),
            ("lost-ack", "group", "pc1:c", 40),
            ("phantom", "always", "pc1:d", 50),
        ];
        let (mut whole, mut first, mut second) = Default::default();
        for (i, (kind, policy, case, operations)) in failures.into_iter().enumerate() {
            let shard: &mut FailureGroups = if i % 2 == 0 { &mut first } else { &mut second };
            shard.add(key(kind, policy), case, operations);
            FailureGroups::add(&mut whole, key(kind, policy), case, operations);
        }
        let mut joined = first.clone();
        joined.join(&second);
        assert_eq!(joined, whole);
        let text = serde_json::to_string(&whole).unwrap();
        assert!(text.contains("\"smallest_case\":\"pc1:b\""), "{text}");
        assert_eq!(serde_json::from_str::<FailureGroups>(&text).unwrap(), whole);
    }

    #[test]
    fn the_closing_line_counts_kinds_and_points_to_shrink() {
        let by_kind = BTreeMap::from([("lost-ack".to_string(), 3), ("phantom".to_string(), 9)]);
        let line = closing_line(&by_kind, Some(Path::new("out")));
        assert!(
            line.starts_with("violations by kind: lost-ack 3, phantom 9;"),
            "{line}"
        );
        assert!(line.contains("out/failures.csv") && line.contains("powercut shrink"));
        assert!(closing_line(&by_kind, None).contains("--out DIR"));
    }
}
