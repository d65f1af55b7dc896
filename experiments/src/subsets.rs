//! Modality subsets: the 2^M − 1 non-empty sets of available modalities, their names, and the
//! random draw of training (method spec, section 7).

use metakd_data::Modality;
use rand::seq::SliceRandom;
use rand::Rng;

/// A non-empty set of available modalities as a bitmask (bit m = modality m).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subset(pub u32);

impl Subset {
    /// Every non-empty subset of `m` modalities in the paper's table order: by size, then with
    /// earlier modalities first (FLAIR, T1, T1ce, T2; FLAIR+T1, FLAIR+T1ce, ...).
    pub fn all(m: usize) -> Vec<Subset> {
        let mut subsets: Vec<Subset> = (1..(1u32 << m)).map(Subset).collect();
        subsets.sort_by_key(|s| (s.0.count_ones(), std::cmp::Reverse(s.0.reverse_bits())));
        subsets
    }

    /// The subset with every one of `m` modalities.
    pub fn full(m: usize) -> Subset {
        Subset((1u32 << m) - 1)
    }

    /// Availability flags for `m` modalities.
    pub fn flags(self, m: usize) -> Vec<bool> {
        (0..m).map(|i| self.contains(i)).collect()
    }

    /// Whether modality `i` is available.
    pub fn contains(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    /// The BraTS names of the available modalities joined by `+` (e.g. `FLAIR+T1ce`).
    pub fn name(self) -> String {
        Modality::ALL
            .iter()
            .filter(|m| self.contains(m.index()))
            .map(|m| m.display_name())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The training draw: k uniform in {1..m}, then a uniform subset of k modalities.
    pub fn random(m: usize, rng: &mut impl Rng) -> Subset {
        let k = rng.random_range(1..=m);
        let mut order: Vec<usize> = (0..m).collect();
        order.shuffle(rng);
        Subset(order[..k].iter().map(|&i| 1u32 << i).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fifteen_subsets_singles_first_full_last() {
        let all = Subset::all(4);
        assert_eq!(all.len(), 15);
        let names: Vec<String> = all.iter().map(|s| s.name()).collect();
        assert_eq!(names[..5], ["FLAIR", "T1", "T1ce", "T2", "FLAIR+T1"]);
        assert_eq!(names[9], "T1ce+T2");
        assert_eq!(names[10], "FLAIR+T1+T1ce");
        assert_eq!(all[14], Subset::full(4));
        assert_eq!(all[14].name(), "FLAIR+T1+T1ce+T2");
    }

    #[test]
    fn random_draw_gives_every_size_about_equally() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut sizes = [0usize; 5];
        for _ in 0..4000 {
            let s = Subset::random(4, &mut rng);
            sizes[s.0.count_ones() as usize] += 1;
        }
        assert_eq!(sizes[0], 0);
        for &n in &sizes[1..] {
            assert!((850..1150).contains(&n), "{sizes:?}");
        }
    }
}
