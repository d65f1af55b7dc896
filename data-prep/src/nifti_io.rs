//! Reading and writing single 3D NIfTI-1 volumes. In memory a volume is stored in (D, H, W) =
//! (z, x, y) order, C-contiguous, as the MetaKD reference transposes BraTS arrays.

use std::path::Path;

use ndarray::{Array3, ArrayD, Axis};
use nifti::writer::WriterOptions;
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, NiftiType, ReaderOptions};

use crate::error::{DataError, Result};

/// A 3D volume in (D, H, W) = (z, x, y) order with its geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Voxel values, `[d, h, w]`.
    pub data: Array3<f32>,
    /// Voxel size in millimetres along (x, y, z), as the header's pixdim gives it.
    pub spacing: [f32; 3],
    /// The voxel-to-world affine (rows of the sform), 3×4.
    pub affine: [[f32; 4]; 3],
}

impl Volume {
    /// Extents (d, h, w).
    pub fn shape(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[0], s[1], s[2]]
    }
}

/// The affine BraTS volumes carry: 1 mm voxels, x and y flipped (LPS data in a RAS frame).
pub fn brats_affine(shape_dhw: [usize; 3], spacing: [f32; 3]) -> [[f32; 4]; 3] {
    let [_, _, w] = shape_dhw;
    [
        [-spacing[0], 0.0, 0.0, 0.0],
        [0.0, -spacing[1], 0.0, (w as f32 - 1.0) * spacing[1]],
        [0.0, 0.0, spacing[2], 0.0],
    ]
}

fn nifti_error(path: &Path) -> impl FnOnce(nifti::NiftiError) -> DataError + '_ {
    move |source| match source {
        nifti::NiftiError::Io(e) => DataError::io(path, e),
        source => DataError::Nifti {
            path: path.to_owned(),
            source,
        },
    }
}

/// Reads one 3D volume (`.nii` or `.nii.gz`), applying the header's scaling, into (z, x, y)
/// order.
pub fn read_volume(path: &Path) -> Result<Volume> {
    let object = ReaderOptions::new()
        .read_file(path)
        .map_err(nifti_error(path))?;
    let header = object.header().clone();
    let array: ArrayD<f32> = object
        .into_volume()
        .into_ndarray::<f32>()
        .map_err(nifti_error(path))?;
    let mut array = array;
    while array.ndim() > 3 && array.shape()[array.ndim() - 1] == 1 {
        let last = Axis(array.ndim() - 1);
        array = array.index_axis_move(last, 0);
    }
    if array.ndim() != 3 {
        return Err(DataError::NotAVolume {
            path: path.to_owned(),
            dims: array.shape().to_vec(),
        });
    }
    let xyz = array
        .into_dimensionality::<ndarray::Ix3>()
        .expect("checked to be 3-D");
    let zxy = xyz.permuted_axes([2, 0, 1]);
    let data = zxy.as_standard_layout().to_owned();
    let shape = [data.shape()[0], data.shape()[1], data.shape()[2]];
    let spacing = [header.pixdim[1], header.pixdim[2], header.pixdim[3]];
    let affine = if header.sform_code > 0 {
        [header.srow_x, header.srow_y, header.srow_z]
    } else {
        brats_affine(shape, spacing)
    };
    Ok(Volume {
        data,
        spacing,
        affine,
    })
}

/// Element types a volume can be written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredType {
    /// Signed 16-bit integers (BraTS images).
    Int16,
    /// Unsigned 8-bit integers (BraTS label maps).
    Uint8,
    /// 32-bit floats.
    Float32,
}

/// A NIfTI-1 header with the volume's spacing and affine in both qform and sform.
fn header_for(volume: &Volume) -> NiftiHeader {
    let [sx, sy, sz] = volume.spacing;
    let a = volume.affine;
    // The rotation part of `brats_affine` is diag(-1, -1, 1): 180° about z, quaternion (0, 0, 1).
    NiftiHeader {
        pixdim: [1.0, sx, sy, sz, 0.0, 0.0, 0.0, 0.0],
        xyzt_units: 2 | 8,
        qform_code: 1,
        sform_code: 1,
        quatern_b: 0.0,
        quatern_c: 0.0,
        quatern_d: 1.0,
        quatern_x: a[0][3],
        quatern_y: a[1][3],
        quatern_z: a[2][3],
        srow_x: a[0],
        srow_y: a[1],
        srow_z: a[2],
        ..NiftiHeader::default()
    }
}

/// Writes `volume` as a NIfTI-1 file (gzip when the name ends in `.gz`) with the given element
/// type, going through a temporary file so a reader never sees a partial file.
pub fn write_volume(path: &Path, volume: &Volume, stored: StoredType) -> Result<()> {
    let header = header_for(volume);
    // The writer expects a C-ordered (x, y, z) array.
    let xyz = volume
        .data
        .view()
        .permuted_axes([1, 2, 0])
        .as_standard_layout()
        .into_owned();
    let file_name = path
        .file_name()
        .ok_or_else(|| DataError::InvalidArgument(format!("{}: not a file path", path.display())))?
        .to_string_lossy()
        .into_owned();
    let temp = path.with_file_name(format!(".{file_name}.partial.{}", std::process::id()));
    let temp = if file_name.ends_with(".gz") {
        temp.with_file_name(format!(
            "{}.nii.gz",
            temp.file_name().unwrap().to_string_lossy()
        ))
    } else {
        temp.with_file_name(format!(
            "{}.nii",
            temp.file_name().unwrap().to_string_lossy()
        ))
    };
    let options = WriterOptions::new(&temp).reference_header(&header);
    let written = match stored {
        StoredType::Int16 => {
            options.write_nifti_with_type(&xyz.mapv(|v| v.round() as i16), NiftiType::Int16)
        }
        StoredType::Uint8 => {
            options.write_nifti_with_type(&xyz.mapv(|v| v.round() as u8), NiftiType::Uint8)
        }
        StoredType::Float32 => options.write_nifti_with_type(&xyz, NiftiType::Float32),
    };
    written.map_err(nifti_error(&temp))?;
    std::fs::rename(&temp, path).map_err(|e| DataError::io(path, e))
}
