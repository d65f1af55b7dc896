//! Tissue classes of the phantoms and their mean intensities in each MRI sequence.
//!
//! The table follows the appearance of the tissues in clinical MRI (documented with its sources
//! in `docs/synthetic-data.md`): the enhancing tumour rim is bright only in T1ce; edema is bright
//! in FLAIR and T2; necrosis is dark in T1 and T1ce and bright in T2; CSF is dark in FLAIR and
//! bright in T2; white matter is brighter than grey matter in T1 and darker in T2 and FLAIR.

use crate::modality::Modality;

/// The tissue of one phantom voxel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tissue {
    /// Outside the (skull-stripped) brain.
    Background = 0,
    /// Cerebrospinal fluid: ventricles and sulci.
    Csf,
    /// Cortical grey matter.
    GreyMatter,
    /// White matter.
    WhiteMatter,
    /// Peritumoural edema (BraTS label 2).
    Edema,
    /// Enhancing tumour (BraTS label 4).
    Enhancing,
    /// Necrotic / non-enhancing tumour core (BraTS label 1).
    Necrosis,
}

impl Tissue {
    /// Every tissue, in `repr` order.
    pub const ALL: [Tissue; 7] = [
        Tissue::Background,
        Tissue::Csf,
        Tissue::GreyMatter,
        Tissue::WhiteMatter,
        Tissue::Edema,
        Tissue::Enhancing,
        Tissue::Necrosis,
    ];

    /// The BraTS label of this tissue (0 outside the tumour).
    pub fn brats_label(self) -> u8 {
        match self {
            Tissue::Necrosis => 1,
            Tissue::Edema => 2,
            Tissue::Enhancing => 4,
            _ => 0,
        }
    }

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Tissue::Background => "background",
            Tissue::Csf => "CSF",
            Tissue::GreyMatter => "grey matter",
            Tissue::WhiteMatter => "white matter",
            Tissue::Edema => "edema",
            Tissue::Enhancing => "enhancing tumour",
            Tissue::Necrosis => "necrotic core",
        }
    }

    /// Mean intensity of this tissue in `modality`, relative to white matter in T1 ≈ 0.85.
    pub fn intensity(self, modality: Modality) -> f32 {
        let [flair, t1, t1ce, t2] = match self {
            Tissue::Background => [0.0, 0.0, 0.0, 0.0],
            Tissue::Csf => [0.12, 0.22, 0.24, 1.00],
            Tissue::GreyMatter => [0.62, 0.60, 0.62, 0.64],
            Tissue::WhiteMatter => [0.48, 0.84, 0.85, 0.42],
            Tissue::Edema => [0.96, 0.50, 0.52, 0.84],
            Tissue::Enhancing => [0.90, 0.52, 1.30, 0.80],
            Tissue::Necrosis => [0.62, 0.26, 0.28, 0.94],
        };
        match modality {
            Modality::Flair => flair,
            Modality::T1 => t1,
            Modality::T1ce => t1ce,
            Modality::T2 => t2,
        }
    }
}
