//! The folder layouts, case ids and CSV tables of the official BraTS releases, as the synthetic
//! generator writes them.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::release::{Grade, Release, ReleaseSplit};

/// The file name under which BraTS2020 ships the label map of training case 355.
pub const MISNAMED_SEG_FILE: &str = "W39_1998.09.19_Segm.nii";

/// Institutions that appear in BraTS 2018/2019 case ids.
const INSTITUTIONS: [&str; 5] = ["2013", "CBICA", "TCIA01", "TCIA08", "TMC"];

/// A release layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The release.
    pub release: Release,
    /// Training (with label maps) or validation (without).
    pub split: ReleaseSplit,
    /// `.nii.gz` when true, plain `.nii` otherwise.
    pub gzip: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            release: Release::Brats2020,
            split: ReleaseSplit::Training,
            gzip: true,
        }
    }
}

impl Layout {
    /// The id of case `index` (0-based).
    pub fn case_id(&self, index: usize) -> String {
        let n = index + 1;
        let institution = INSTITUTIONS[index % INSTITUTIONS.len()];
        match (self.release, self.split) {
            (Release::Brats2020, ReleaseSplit::Training) => format!("BraTS20_Training_{n:03}"),
            (Release::Brats2020, ReleaseSplit::Validation) => format!("BraTS20_Validation_{n:03}"),
            (release, _) => format!("{}{institution}_{n}_1", release.id_prefix()),
        }
    }

    /// The grade of training case `index`: one case in four is low-grade.
    pub fn grade(&self, index: usize) -> Grade {
        if index % 4 == 3 {
            Grade::Lgg
        } else {
            Grade::Hgg
        }
    }

    /// The case's folder relative to the release folder (`HGG/<id>` for 2018/2019 training data).
    pub fn case_folder(&self, index: usize, _cases: usize) -> String {
        let id = self.case_id(index);
        match (self.release, self.split) {
            (Release::Brats2018 | Release::Brats2019, ReleaseSplit::Training) => {
                format!("{}/{id}", self.grade(index).as_str())
            }
            _ => id,
        }
    }

    /// The image file extension.
    pub fn extension(&self) -> &'static str {
        if self.gzip {
            "nii.gz"
        } else {
            "nii"
        }
    }

    /// The index of the BraTS2020 training case whose label map is misnamed: case 355, or the last
    /// case of a smaller set.
    pub fn misnamed_seg_case(&self, cases: usize) -> Option<usize> {
        (self.release == Release::Brats2020 && self.split == ReleaseSplit::Training)
            .then(|| 354.min(cases - 1))
    }

    /// The label map's file name for case `index`, or `None` in a validation release.
    pub fn seg_file_name(&self, index: usize, cases: usize) -> Option<String> {
        if self.split == ReleaseSplit::Validation {
            return None;
        }
        if self.misnamed_seg_case(cases) == Some(index) {
            return Some(MISNAMED_SEG_FILE.to_owned());
        }
        Some(format!("{}_seg.{}", self.case_id(index), self.extension()))
    }

    /// The CSV tables the release ships beside its case folders: (file name, contents).
    pub fn tables(&self, cases: usize, seed: u64) -> Vec<(&'static str, String)> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_CA5E);
        let ids: Vec<String> = (0..cases).map(|i| self.case_id(i)).collect();
        let ages: Vec<f64> = (0..cases)
            .map(|_| (rng.random_range(30.0..80.0f64) * 1000.0).round() / 1000.0)
            .collect();
        let survival: Vec<u32> = (0..cases).map(|_| rng.random_range(30..1800)).collect();
        let resection = |i: usize| ["GTR", "STR", "NA"][i % 3];
        let hgg = |i: &usize| self.grade(*i) == Grade::Hgg;
        let rows = |f: &dyn Fn(usize) -> String, filter: &dyn Fn(&usize) -> bool| -> String {
            (0..cases)
                .filter(|i| filter(i))
                .map(|i| f(i) + "\n")
                .collect()
        };
        let all = |_: &usize| true;
        match (self.release, self.split) {
            (Release::Brats2018, ReleaseSplit::Training) => vec![(
                "survival_data.csv",
                "BraTS18ID,Age,Survival\n".to_owned()
                    + &rows(&|i| format!("{},{},{}", ids[i], ages[i], survival[i]), &hgg),
            )],
            (Release::Brats2019, ReleaseSplit::Training) => vec![
                (
                    "name_mapping.csv",
                    "Grade,BraTS_2017_subject_ID,BraTS_2018_subject_ID,TCGA_TCIA_subject_ID,BraTS_2019_subject_ID\n".to_owned()
                        + &rows(&|i| format!("{},NA,NA,NA,{}", self.grade(i).as_str(), ids[i]), &all),
                ),
                (
                    "survival_data.csv",
                    "BraTS19ID,Age,Survival,ResectionStatus\n".to_owned()
                        + &rows(&|i| format!("{},{},{},{}", ids[i], ages[i], survival[i], resection(i)), &hgg),
                ),
            ],
            (Release::Brats2020, ReleaseSplit::Training) => vec![
                (
                    "name_mapping.csv",
                    "Grade,BraTS_2017_subject_ID,BraTS_2018_subject_ID,TCGA_TCIA_subject_ID,BraTS_2019_subject_ID,BraTS_2020_subject_ID\n".to_owned()
                        + &rows(&|i| format!("{},NA,NA,NA,NA,{}", self.grade(i).as_str(), ids[i]), &all),
                ),
                (
                    "survival_info.csv",
                    "Brats20ID,Age,Survival_days,Extent_of_Resection\n".to_owned()
                        + &rows(&|i| format!("{},{},{},{}", ids[i], ages[i], survival[i], resection(i)), &hgg),
                ),
            ],
            (Release::Brats2018, ReleaseSplit::Validation) => vec![(
                "survival_evaluation.csv",
                "BraTS18ID,Age,ResectionStatus\n".to_owned()
                    + &rows(&|i| format!("{},{},{}", ids[i], ages[i], resection(i)), &all),
            )],
            (Release::Brats2019 | Release::Brats2020, ReleaseSplit::Validation) => {
                let year = if self.release == Release::Brats2019 { "19" } else { "20" };
                vec![
                    (
                        "name_mapping_validation_data.csv",
                        format!("BraTS_2017_subject_ID,BraTS_2018_subject_ID,TCGA_TCIA_subject_ID,BraTS_20{year}_subject_ID\n")
                            + &rows(&|i| format!("NA,NA,NA,{}", ids[i]), &all),
                    ),
                    (
                        "survival_evaluation.csv",
                        format!("BraTS{year}ID,Age,ResectionStatus\n")
                            + &rows(&|i| format!("{},{},{}", ids[i], ages[i], resection(i)), &all),
                    ),
                ]
            }
        }
    }
}
