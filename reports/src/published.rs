//! Published results of other methods (`reports/data/published-brats.csv`), each with its source
//! and protocol, and the comparison of a run with them.

use serde::{Deserialize, Serialize};

use crate::aggregate::{GroupTable, Stat};

/// The published BraTS numbers, as shipped with the program.
const PUBLISHED_BRATS: &str = include_str!("../data/published-brats.csv");

/// One published average over the 15 subsets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedResult {
    /// The data set (`brats2018`, `brats2020`).
    pub dataset: String,
    /// The method.
    pub method: String,
    /// Where it appeared.
    pub venue: String,
    /// Average ET Dice in %.
    pub et: f64,
    /// Average TC Dice in %.
    pub tc: f64,
    /// Average WT Dice in %.
    pub wt: f64,
    /// The protocol it was scored under (`A`, `B`, or a note when unknown).
    pub protocol: String,
    /// Where the number was read.
    pub source: String,
}

impl PublishedResult {
    /// Whether the number was scored under `protocol` (`A` or `B`).
    pub fn has_protocol(&self, protocol: &str) -> bool {
        self.protocol.split_whitespace().next() == Some(protocol)
    }
}

/// The published BraTS averages.
pub fn published_brats() -> Vec<PublishedResult> {
    csv::Reader::from_reader(PUBLISHED_BRATS.as_bytes())
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("the shipped table of published results parses")
}

/// A run's average Dice in % beside the published ones of its data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The data set.
    pub dataset: String,
    /// The run's protocol.
    pub protocol: String,
    /// The run's variant.
    pub variant: String,
    /// Runs averaged.
    pub runs: usize,
    /// The run's average Dice (%) over the subsets: ET, TC, WT.
    pub ours: [Stat; 3],
    /// Published numbers scored under the same protocol.
    pub same_protocol: Vec<PublishedResult>,
    /// Published numbers of the same data set scored otherwise.
    pub other_protocols: Vec<PublishedResult>,
}

/// Sets `table` beside the published numbers of its data set (matched without regard to case:
/// `BraTS2020` = `brats2020`); `None` when there are none.
pub fn compare(table: &GroupTable, published: &[PublishedResult]) -> Option<Comparison> {
    let dataset = table.group.dataset.to_lowercase();
    let (same, other): (Vec<PublishedResult>, Vec<PublishedResult>) = published
        .iter()
        .filter(|p| p.dataset.to_lowercase() == dataset)
        .cloned()
        .partition(|p| p.has_protocol(&table.group.protocol));
    if same.is_empty() && other.is_empty() {
        return None;
    }
    let percent = |s: Stat| Stat {
        mean: 100.0 * s.mean,
        std: s.std.map(|v| 100.0 * v),
    };
    Some(Comparison {
        dataset: table.group.dataset.clone(),
        protocol: table.group.protocol.clone(),
        variant: table.group.variant.clone(),
        runs: table.runs,
        ours: table.average.dice.map(percent),
        same_protocol: same,
        other_protocols: other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_holds_every_method_named_in_the_spec() {
        let rows = published_brats();
        for method in [
            "HeMIS",
            "U-HVED",
            "RobustSeg",
            "RFNet",
            "mmFormer",
            "ShaSpec",
            "M3AE",
            "GSS",
            "DeMoSeg",
            "SimMLM",
        ] {
            assert!(
                rows.iter().any(|r| r.method == method),
                "{method} is missing"
            );
        }
        let rfnet = rows
            .iter()
            .find(|r| r.dataset == "brats2020" && r.method == "RFNet")
            .unwrap();
        assert_eq!((rfnet.et, rfnet.tc, rfnet.wt), (61.47, 78.23, 86.98));
        assert!(rfnet.has_protocol("B"));
        assert!(rows.iter().all(|r| r.et < r.wt && r.source.len() > 3));
    }

    #[test]
    fn protocols_are_matched_by_their_first_word() {
        let mut row = published_brats().remove(0);
        row.protocol = "A (secondary)".into();
        assert!(row.has_protocol("A"));
        assert!(!row.has_protocol("B"));
        row.protocol = "as quoted by ShaSpec".into();
        assert!(!row.has_protocol("A") && !row.has_protocol("B"));
    }
}
