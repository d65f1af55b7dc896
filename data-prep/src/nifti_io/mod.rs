//! Reading NIfTI-1 and NIfTI-2 images (plain or gzip, either byte order, scaled as the header
//! says) and writing NIfTI-1 volumes. In memory a volume is stored in (D, H, W) = (z, x, y) order,
//! C-contiguous, as the MetaKD reference transposes BraTS arrays.

use std::path::Path;

mod nifti2;

use std::io::Read;

use flate2::read::MultiGzDecoder;
use ndarray::{Array3, ArrayD, Axis};
use nifti::writer::WriterOptions;
use nifti::{InMemNiftiVolume, IntoNdArray, NiftiHeader, NiftiType};

use crate::error::{DataError, Result};
use crate::files::{partial_path_with_extension, write_atomic_via};

/// A 3D volume indexed in (D, H, W) = (z, x, y) order with its geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Voxel values, indexed `[d, h, w]`. A volume read from a file keeps the file's memory order
    /// (x fastest); use [`Volume::to_zxy`] for a C-ordered copy.
    pub data: Array3<f32>,
    /// Voxel size in millimetres along (x, y, z), as the header's pixdim gives it.
    pub spacing: [f32; 3],
    /// The voxel-to-world affine (rows of the sform), 3×4.
    pub affine: [[f32; 4]; 3],
}

impl Volume {
    /// The voxels in (z, x, y) C order.
    pub fn to_zxy(&self) -> Array3<f32> {
        self.data.as_standard_layout().into_owned()
    }

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

fn corrupt(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::Corrupt {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The NIfTI format version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NiftiVersion {
    /// NIfTI-1 (348-byte header).
    One,
    /// NIfTI-2 (540-byte header).
    Two,
}

/// A NIfTI image as stored: scaled voxel values in the file's axis order (x fastest, Fortran
/// layout), with its header (a NIfTI-2 header is mapped onto the NIfTI-1 fields).
#[derive(Debug, Clone)]
pub struct Image {
    /// Voxel values after `scl_slope`/`scl_inter`, shape `dim[1..=dim[0]]`.
    pub data: ArrayD<f32>,
    /// The header.
    pub header: NiftiHeader,
    /// The format version.
    pub version: NiftiVersion,
}

/// Voxels a volume may have unless the caller says otherwise: 512³, about 14 BraTS volumes
/// (0.5 GiB as f32).
pub const MAX_VOXELS: u64 = 1 << 27;
/// Bytes read to find the header: a NIfTI-2 header and its extension flag.
const HEADER_BYTES: usize = nifti2::HEADER_SIZE + 4;

/// The first bytes of a file (plain or gzip), at most `limit`.
fn leading_bytes(path: &Path, gzip: bool, limit: usize) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut out = Vec::with_capacity(limit);
    let read = if gzip {
        MultiGzDecoder::new(std::io::BufReader::new(file))
            .take(limit as u64)
            .read_to_end(&mut out)
    } else {
        file.take(limit as u64).read_to_end(&mut out)
    };
    read.map_err(|e| corrupt(path, format!("corrupt or truncated gzip stream: {e}")))?;
    Ok(out)
}

/// The bytes of the image at `path` up to the end of its voxel data, decompressed when it is
/// gzip. The header is read first, so a volume larger than `max_voxels` is refused, and a file
/// too short for its header's volume is reported as truncated, before anything as large is
/// read or allocated: a gzip trailer's size is used only when it agrees with the header.
fn file_bytes(path: &Path, max_voxels: u64) -> Result<Vec<u8>> {
    let mut magic = [0u8; 2];
    let gzip = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| DataError::io(path, e))?
        == 2
        && magic == [0x1f, 0x8b];
    let head = leading_bytes(path, gzip, HEADER_BYTES)?;
    let (header, offset, _) = parse_header(path, &head)?;
    let dims = header.dim().map_err(nifti_error(path))?.to_vec();
    let datatype = header.data_type().map_err(nifti_error(path))?;
    let voxels = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(u64::from(d)))
        .unwrap_or(u64::MAX);
    if voxels > max_voxels {
        return Err(corrupt(
            path,
            format!(
                "the header declares dims {dims:?} ({voxels} voxels), more than the {max_voxels} \
                 a volume may have within the memory bound; the header is damaged, or the \
                 volume is not a scan this pipeline reads"
            ),
        ));
    }
    let total = offset + voxels as usize * datatype.size_of();
    let raw_len = std::fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    if !gzip {
        if raw_len < total as u64 {
            return Err(corrupt(
                path,
                format!(
                    "truncated: dims {dims:?} of {datatype:?} need {total} bytes up to the end of \
                     the voxel data, the file holds {raw_len}"
                ),
            ));
        }
        return leading_bytes(path, false, total);
    }
    if raw_len > total as u64 + (1 << 20) {
        return Err(corrupt(
            path,
            format!(
                "{raw_len} compressed bytes for a volume of {total} bytes: the file is damaged"
            ),
        ));
    }
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let trailer = raw
        .len()
        .checked_sub(4)
        .map(|at| u32::from_le_bytes(raw[at..].try_into().expect("four bytes")) as usize);
    if trailer == Some(total) {
        let mut out = vec![0u8; total];
        if let Ok(n) = libdeflater::Decompressor::new().gzip_decompress(&raw, &mut out) {
            if n == total {
                return Ok(out);
            }
        }
    }
    // Grown as the stream decodes: a damaged stream fails before `total` is allocated.
    let mut out = Vec::new();
    MultiGzDecoder::new(raw.as_slice())
        .take(total as u64)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(path, format!("corrupt or truncated gzip stream: {e}")))?;
    Ok(out)
}

/// Parses the header at the start of `bytes`, returning it with the offset of the voxel data.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<(NiftiHeader, usize, NiftiVersion)> {
    if bytes.len() < 4 {
        return Err(corrupt(path, "too short to hold a NIfTI header"));
    }
    let size = i32::from_le_bytes(bytes[..4].try_into().expect("four bytes"));
    let v2 = nifti2::HEADER_SIZE as i32;
    if size == 348 || size.swap_bytes() == 348 {
        let header = NiftiHeader::from_reader(bytes).map_err(nifti_error(path))?;
        // A single-file NIfTI-1 stores data after the header and a 4-byte extension flag.
        let offset = (header.vox_offset.max(0.0) as usize).max(352);
        Ok((header, offset, NiftiVersion::One))
    } else if size == v2 || size.swap_bytes() == v2 {
        let (header, offset) =
            nifti2::parse(bytes, size != v2).map_err(|problem| corrupt(path, problem))?;
        Ok((
            header,
            offset.max(nifti2::HEADER_SIZE + 4),
            NiftiVersion::Two,
        ))
    } else {
        Err(corrupt(
            path,
            format!("not a NIfTI file (header size field {size}, expected 348 or 540)"),
        ))
    }
}

/// Reads a NIfTI-1 or NIfTI-2 file (`.nii` or gzip-compressed, either byte order), applying
/// `scl_slope`/`scl_inter` as nibabel does (a slope of 0 or NaN means unscaled).
pub fn read_image(path: &Path) -> Result<Image> {
    read_image_within(path, MAX_VOXELS)
}

/// [`read_image`] of a volume of at most `max_voxels` voxels; a larger one is refused from its
/// header, before its voxels are read.
pub fn read_image_within(path: &Path, max_voxels: u64) -> Result<Image> {
    let mut bytes = file_bytes(path, max_voxels)?;
    let (mut header, offset, version) = parse_header(path, &bytes)?;
    if !header.scl_slope.is_finite() {
        header.scl_slope = 0.0;
    }
    if header.scl_slope == 0.0 || !header.scl_inter.is_finite() {
        header.scl_inter = 0.0;
    }
    let dims = header.dim().map_err(nifti_error(path))?.to_vec();
    let datatype = header.data_type().map_err(nifti_error(path))?;
    let needed = dims.iter().map(|&d| d as usize).product::<usize>() * datatype.size_of();
    let available = bytes.len().saturating_sub(offset);
    if available < needed {
        return Err(corrupt(
            path,
            format!(
                "truncated: dims {dims:?} of {datatype:?} need {needed} bytes of voxel data after \
                 byte {offset}, the file holds {available}"
            ),
        ));
    }
    bytes.truncate(offset + needed);
    bytes.drain(..offset);
    let data = InMemNiftiVolume::from_raw_data(&header, bytes)
        .and_then(|volume| volume.into_ndarray::<f32>())
        .map_err(nifti_error(path))?;
    Ok(Image {
        data,
        header,
        version,
    })
}

impl Image {
    /// The voxel-to-world affine as nibabel chooses it: the sform when its code is set, else the
    /// qform, else one built from the voxel sizes; 3×4 rows.
    pub fn affine(&self) -> [[f32; 4]; 3] {
        let mut header = self.header.clone();
        // nibabel reads a qfac other than ±1 as 1; the crate would refuse it.
        if header.pixdim[0] != 1.0 && header.pixdim[0] != -1.0 {
            header.pixdim[0] = 1.0;
        }
        for p in &mut header.pixdim[1..4] {
            *p = p.abs();
        }
        let m = header.affine::<f32>();
        std::array::from_fn(|r| std::array::from_fn(|c| m[(r, c)]))
    }

    /// Voxel sizes along (x, y, z) in millimetres.
    pub fn spacing(&self) -> [f32; 3] {
        let p = self.header.pixdim;
        [p[1].abs(), p[2].abs(), p[3].abs()]
    }
}

/// Reads one 3D volume (a 4-D file is accepted when its trailing extents are 1), indexed in
/// (z, x, y) order; a NaN or infinite voxel is an error.
pub fn read_volume(path: &Path) -> Result<Volume> {
    read_volume_within(path, MAX_VOXELS)
}

/// [`read_volume`] of a volume of at most `max_voxels` voxels; a larger one is refused from its
/// header, before its voxels are read.
pub fn read_volume_within(path: &Path, max_voxels: u64) -> Result<Volume> {
    let image = read_image_within(path, max_voxels)?;
    // Floating-point voxels may be NaN or infinite, and so may integer ones once the header's
    // scale slope is applied.
    let bad = image.data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(corrupt(
            path,
            format!("{bad} voxels are NaN or infinite (as stored, or once scaled by scl_slope)"),
        ));
    }
    let (affine, spacing) = (image.affine(), image.spacing());
    let mut array = image.data;
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
    // A free axis permutation: the voxels stay in file order (x fastest).
    let data = xyz.permuted_axes([2, 0, 1]);
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
    let is_gz = path.to_string_lossy().ends_with(".gz");
    let temp = partial_path_with_extension(path, if is_gz { "nii.gz" } else { "nii" });
    write_atomic_via(path, &temp, |temp| {
        let options = WriterOptions::new(temp).reference_header(&header);
        let written = match stored {
            StoredType::Int16 => {
                options.write_nifti_with_type(&xyz.mapv(|v| v.round() as i16), NiftiType::Int16)
            }
            StoredType::Uint8 => {
                options.write_nifti_with_type(&xyz.mapv(|v| v.round() as u8), NiftiType::Uint8)
            }
            StoredType::Float32 => options.write_nifti_with_type(&xyz, NiftiType::Float32),
        };
        written.map_err(nifti_error(temp))
    })
}
