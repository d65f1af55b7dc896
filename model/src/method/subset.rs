//! Modality subsets (method spec, section 7): the 2^M − 1 non-empty sets of available
//! modalities, their names, their availability flags and the random draw of training.

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

    /// The subset of the modalities whose flag is set.
    pub fn from_flags(flags: &[bool]) -> Subset {
        Subset(
            flags
                .iter()
                .enumerate()
                .filter(|(_, &present)| present)
                .map(|(i, _)| 1u32 << i)
                .sum(),
        )
    }

    /// Availability flags for `m` modalities.
    pub fn flags(self, m: usize) -> Vec<bool> {
        (0..m).map(|i| self.contains(i)).collect()
    }

    /// Whether modality `i` is available.
    pub fn contains(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    /// The subset of the modalities named (case-insensitive) among `names` (`names[i]` for
    /// modality i); every modality when none is named.
    pub fn from_names<S: AsRef<str>>(
        named: &[S],
        names: &[&str],
    ) -> std::result::Result<Subset, String> {
        if named.is_empty() {
            return Ok(Subset::full(names.len()));
        }
        let mut mask = 0;
        for name in named {
            let name = name.as_ref().trim();
            let index = names
                .iter()
                .position(|known| known.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    format!("unknown modality {name:?} (known: {})", names.join(", "))
                })?;
            mask |= 1 << index;
        }
        Ok(Subset(mask))
    }

    /// The names of the available modalities (`names[i]` for modality i) joined by `+`, e.g.
    /// `FLAIR+T1ce`.
    pub fn name<S: AsRef<str>>(self, names: &[S]) -> String {
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| self.contains(*i))
            .map(|(_, n)| n.as_ref())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The training draw among this subset's modalities: k uniform in {1..|self|}, then a
    /// uniform choice of k of them.
    pub fn random_among(self, rng: &mut impl Rng) -> Subset {
        let mut present: Vec<usize> = (0..32).filter(|&i| self.contains(i)).collect();
        let k = rng.random_range(1..=present.len());
        present.shuffle(rng);
        Subset(present[..k].iter().map(|&i| 1u32 << i).sum())
    }

    /// The training draw among all of `m` modalities.
    pub fn random(m: usize, rng: &mut impl Rng) -> Subset {
        Subset::full(m).random_among(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const BRATS: [&str; 4] = ["FLAIR", "T1", "T1ce", "T2"];

    #[test]
    fn fifteen_subsets_singles_first_full_last() {
        let all = Subset::all(4);
        assert_eq!(all.len(), 15);
        let names: Vec<String> = all.iter().map(|s| s.name(&BRATS)).collect();
        assert_eq!(names[..5], ["FLAIR", "T1", "T1ce", "T2", "FLAIR+T1"]);
        assert_eq!(names[9], "T1ce+T2");
        assert_eq!(names[10], "FLAIR+T1+T1ce");
        assert_eq!(all[14], Subset::full(4));
        assert_eq!(all[14].name(&BRATS), "FLAIR+T1+T1ce+T2");
    }

    #[test]
    fn subsets_are_read_from_names() {
        assert_eq!(
            Subset::from_names(&["t1CE", " flair"], &BRATS),
            Ok(Subset(0b0101))
        );
        assert_eq!(Subset::from_names::<&str>(&[], &BRATS), Ok(Subset::full(4)));
        let err = Subset::from_names(&["pd"], &BRATS).unwrap_err();
        assert!(
            err.contains("\"pd\"") && err.contains("FLAIR, T1, T1ce, T2"),
            "{err}"
        );
    }

    #[test]
    fn flags_and_masks_round_trip() {
        for s in Subset::all(4) {
            assert_eq!(Subset::from_flags(&s.flags(4)), s);
        }
        assert_eq!(Subset(0b1010).flags(4), [false, true, false, true]);
        assert_eq!(Subset::from_flags(&[false; 4]), Subset(0));
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

    #[test]
    fn a_draw_among_a_subset_keeps_to_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let own = Subset(0b1011);
        let mut sizes = [0usize; 4];
        for _ in 0..3000 {
            let s = own.random_among(&mut rng);
            assert_eq!(s.0 & own.0, s.0, "{s:?} is not inside {own:?}");
            sizes[s.0.count_ones() as usize] += 1;
        }
        for &n in &sizes[1..] {
            assert!((850..1150).contains(&n), "{sizes:?}");
        }
    }
}
