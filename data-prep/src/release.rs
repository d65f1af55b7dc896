//! The BraTS releases this crate reads, and how a downloaded folder's release and split are
//! recognised from its case ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A BraTS challenge release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Release {
    /// BraTS 2018: `Brats18_<institution>_<id>_1`, grade folders `HGG/` and `LGG/`.
    Brats2018,
    /// BraTS 2019: `BraTS19_<institution>_<id>_1`, grade folders `HGG/` and `LGG/`.
    Brats2019,
    /// BraTS 2020: `BraTS20_Training_XXX` / `BraTS20_Validation_XXX`, grades in `name_mapping.csv`.
    Brats2020,
}

impl Release {
    /// Every release, oldest first.
    pub const ALL: [Release; 3] = [Release::Brats2018, Release::Brats2019, Release::Brats2020];

    /// The prefix of this release's case ids.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Release::Brats2018 => "Brats18_",
            Release::Brats2019 => "BraTS19_",
            Release::Brats2020 => "BraTS20_",
        }
    }

    /// The release whose case ids `id` follows.
    pub fn of_case_id(id: &str) -> Option<Release> {
        Release::ALL
            .into_iter()
            .find(|r| id.starts_with(r.id_prefix()))
    }

    /// The release's name as the command line takes it (`brats2018`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Release::Brats2018 => "brats2018",
            Release::Brats2019 => "brats2019",
            Release::Brats2020 => "brats2020",
        }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Release {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace(['_', '-'], "");
        Release::ALL
            .into_iter()
            .find(|r| r.name() == wanted || r.name().trim_start_matches("brats") == wanted)
            .ok_or_else(|| {
                format!("unknown release `{s}` (expected brats2018, brats2019 or brats2020)")
            })
    }
}

/// Which part of a release a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseSplit {
    /// Training data: every case has a label map.
    Training,
    /// Validation (or test) data: no label maps.
    Validation,
}

/// The tumour grade BraTS 2018–2020 record per training case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grade {
    /// High-grade glioma.
    #[serde(rename = "HGG")]
    Hgg,
    /// Low-grade glioma.
    #[serde(rename = "LGG")]
    Lgg,
}

impl Grade {
    /// Reads `HGG`/`LGG` (also `HG`/`LG`, any case).
    pub fn parse(s: &str) -> Option<Grade> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HGG" | "HG" => Some(Grade::Hgg),
            "LGG" | "LG" => Some(Grade::Lgg),
            _ => None,
        }
    }

    /// `HGG` or `LGG`.
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Hgg => "HGG",
            Grade::Lgg => "LGG",
        }
    }
}

/// The release most of `ids` belong to, if any does.
pub fn detect_release<'a>(ids: impl IntoIterator<Item = &'a str>) -> Option<Release> {
    let mut counts = [0usize; 3];
    for id in ids {
        if let Some(r) = Release::of_case_id(id) {
            counts[Release::ALL.iter().position(|&x| x == r).expect("listed")] += 1;
        }
    }
    let (best, &count) = counts.iter().enumerate().max_by_key(|(_, &c)| c)?;
    (count > 0).then_some(Release::ALL[best])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_recognised_from_case_ids() {
        assert_eq!(
            Release::of_case_id("Brats18_TCIA01_190_1"),
            Some(Release::Brats2018)
        );
        assert_eq!(
            Release::of_case_id("BraTS19_2013_0_1"),
            Some(Release::Brats2019)
        );
        assert_eq!(
            Release::of_case_id("BraTS20_Validation_007"),
            Some(Release::Brats2020)
        );
        assert_eq!(Release::of_case_id("case_001"), None);
        assert_eq!(
            detect_release(["BraTS19_A_1_1", "BraTS19_B_2_1", "Brats18_C_3_1"]),
            Some(Release::Brats2019)
        );
        assert_eq!(detect_release(["case_1"]), None);
    }

    #[test]
    fn release_names_parse() {
        assert_eq!("brats2020".parse::<Release>(), Ok(Release::Brats2020));
        assert_eq!("BraTS-2018".parse::<Release>(), Ok(Release::Brats2018));
        assert_eq!("2019".parse::<Release>(), Ok(Release::Brats2019));
        assert!("brats2021".parse::<Release>().is_err());
        assert_eq!(Grade::parse("lgg"), Some(Grade::Lgg));
        assert_eq!(Grade::parse("HG"), Some(Grade::Hgg));
        assert_eq!(Grade::parse("NA"), None);
    }
}
