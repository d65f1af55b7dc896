//! The ablation table: MetaKD beside its own ablations (no KD, no meta-learning) evaluated on
//! the same data set, protocol and checkpoint.

use crate::aggregate::GroupTable;

/// The variant name of the full method.
pub const METAKD: &str = "MetaKD";

/// Variants of one data set, protocol and checkpoint, MetaKD first.
#[derive(Debug, Clone, PartialEq)]
pub struct Ablation<'a> {
    /// The data set.
    pub dataset: &'a str,
    /// The protocol.
    pub protocol: &'a str,
    /// The checkpoint.
    pub checkpoint: &'a str,
    /// One table per variant.
    pub variants: Vec<&'a GroupTable>,
}

/// Every set of two or more variants that share a data set, protocol and checkpoint (label maps
/// as predicted).
pub fn ablations(tables: &[GroupTable]) -> Vec<Ablation<'_>> {
    let mut out: Vec<Ablation<'_>> = Vec::new();
    for table in tables.iter().filter(|t| !t.group.postprocessed) {
        let g = &table.group;
        match out.iter_mut().find(|a| {
            a.dataset == g.dataset && a.protocol == g.protocol && a.checkpoint == g.checkpoint
        }) {
            Some(a) => a.variants.push(table),
            None => out.push(Ablation {
                dataset: &g.dataset,
                protocol: &g.protocol,
                checkpoint: &g.checkpoint,
                variants: vec![table],
            }),
        }
    }
    out.retain(|a| a.variants.len() > 1);
    for a in &mut out {
        a.variants
            .sort_by_key(|t| (t.group.variant != METAKD, t.group.variant.clone()));
    }
    out
}
