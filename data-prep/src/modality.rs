//! The BraTS MRI sequences, in the order used everywhere: FLAIR, T1, T1ce, T2.

/// One MRI sequence of a BraTS case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    /// T2 fluid-attenuated inversion recovery.
    Flair,
    /// Native T1-weighted.
    T1,
    /// Contrast-enhanced (gadolinium) T1-weighted.
    T1ce,
    /// T2-weighted.
    T2,
}

impl Modality {
    /// All modalities in channel order.
    pub const ALL: [Modality; 4] = [Modality::Flair, Modality::T1, Modality::T1ce, Modality::T2];

    /// The names shown in tables, in channel order.
    pub const DISPLAY_NAMES: [&'static str; 4] = ["FLAIR", "T1", "T1ce", "T2"];

    /// The file-name suffix BraTS uses (`flair`, `t1`, `t1ce`, `t2`).
    pub fn suffix(self) -> &'static str {
        match self {
            Modality::Flair => "flair",
            Modality::T1 => "t1",
            Modality::T1ce => "t1ce",
            Modality::T2 => "t2",
        }
    }

    /// The name shown in tables (`FLAIR`, `T1`, `T1ce`, `T2`).
    pub fn display_name(self) -> &'static str {
        Self::DISPLAY_NAMES[self.index()]
    }

    /// The channel index (0 FLAIR, 1 T1, 2 T1ce, 3 T2).
    pub fn index(self) -> usize {
        self as usize
    }
}
