//! One axial slice of one evaluated case — its input images, reference labels and the labels
//! predicted from a few modality subsets — written by the sweep for the report's figure.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};

/// An axial slice of a case with the reference and predicted BraTS labels (0, 1, 2, 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseSlices {
    /// The case id.
    pub case: String,
    /// The slice index in the case's cropped grid.
    pub slice: usize,
    /// Rows of the slice.
    pub height: usize,
    /// Columns of the slice.
    pub width: usize,
    /// Modality names, in the order of `images`.
    pub modalities: Vec<String>,
    /// The preprocessed image of each modality, row-major.
    pub images: Vec<Vec<f32>>,
    /// The reference labels, row-major.
    pub reference: Vec<u8>,
    /// Predicted labels per subset: the subset's name and the labels, row-major.
    pub predictions: Vec<(String, Vec<u8>)>,
}

impl CaseSlices {
    /// Checks that every plane has `height × width` values.
    pub fn check(&self, path: &Path) -> Result<()> {
        let n = self.height * self.width;
        let planes = self
            .images
            .iter()
            .map(Vec::len)
            .chain([self.reference.len()])
            .chain(self.predictions.iter().map(|p| p.1.len()));
        if n == 0 || planes.into_iter().any(|len| len != n) || self.images.is_empty() {
            return Err(ReportError::BadTable {
                path: path.to_owned(),
                problem: format!(
                    "case slices: every plane must hold {} × {} values",
                    self.height, self.width
                ),
            });
        }
        Ok(())
    }

    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.to_owned(),
            source,
        })?;
        let slices: Self = serde_json::from_str(&text).map_err(|source| ReportError::Json {
            path: path.to_owned(),
            source,
        })?;
        slices.check(path)?;
        Ok(slices)
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string(self).expect("case slices serialise");
        crate::write_atomic(path, json.as_bytes())
    }
}
