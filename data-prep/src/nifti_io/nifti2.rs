//! The NIfTI-2 header (540 bytes, 64-bit dims and offsets), which the `nifti` crate does not parse.
//! It is read here and mapped onto the crate's NIfTI-1 header type, so voxel decoding, scaling and
//! the affine go through the crate exactly as for NIfTI-1 files.

use nifti::{Endianness, NiftiHeader};

/// Size of a NIfTI-2 header in bytes.
pub const HEADER_SIZE: usize = 540;

/// Reads fixed-width fields from a header buffer in one byte order.
struct Fields<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Fields<'_> {
    fn take<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut raw: [u8; N] = self.bytes[at..at + N].try_into().expect("in bounds");
        if self.big_endian {
            raw.reverse();
        }
        raw
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.take(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.take(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.take(at))
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.take(at))
    }
    fn f64s<const N: usize>(&self, at: usize) -> [f64; N] {
        std::array::from_fn(|i| self.f64(at + 8 * i))
    }
}

/// Parses a NIfTI-2 header (`bytes` holds at least [`HEADER_SIZE`] bytes) into the crate's header
/// type; the voxel data starts at the returned offset.
pub fn parse(bytes: &[u8], big_endian: bool) -> Result<(NiftiHeader, usize), String> {
    if bytes.len() < HEADER_SIZE {
        return Err(format!(
            "truncated NIfTI-2 header ({} of {HEADER_SIZE} bytes)",
            bytes.len()
        ));
    }
    let f = Fields { bytes, big_endian };
    let magic = &bytes[4..8];
    if magic != b"n+2\0" && magic != b"ni2\0" {
        return Err(format!("bad NIfTI-2 magic {magic:?}"));
    }
    let mut dim = [0u16; 8];
    for (i, d) in dim.iter_mut().enumerate() {
        let value = f.i64(16 + 8 * i);
        *d = u16::try_from(value)
            .map_err(|_| format!("dim[{i}] = {value} is beyond the supported 65535"))?;
    }
    let offset = usize::try_from(f.i64(168)).map_err(|_| "negative vox_offset".to_string())?;
    let pixdim = f.f64s::<8>(104).map(|v| v as f32);
    let to_f32 = |v: [f64; 4]| v.map(|x| x as f32);
    let header = NiftiHeader {
        sizeof_hdr: HEADER_SIZE as i32,
        dim,
        datatype: f.i16(12),
        bitpix: f.i16(14),
        pixdim,
        vox_offset: offset as f32,
        scl_slope: f.f64(176) as f32,
        scl_inter: f.f64(184) as f32,
        qform_code: f.i32(344) as i16,
        sform_code: f.i32(348) as i16,
        quatern_b: f.f64(352) as f32,
        quatern_c: f.f64(360) as f32,
        quatern_d: f.f64(368) as f32,
        quatern_x: f.f64(376) as f32,
        quatern_y: f.f64(384) as f32,
        quatern_z: f.f64(392) as f32,
        srow_x: to_f32(f.f64s::<4>(400)),
        srow_y: to_f32(f.f64s::<4>(432)),
        srow_z: to_f32(f.f64s::<4>(464)),
        xyzt_units: f.i32(500) as u8,
        endianness: if big_endian {
            Endianness::Big
        } else {
            Endianness::Little
        },
        ..NiftiHeader::default()
    };
    Ok((header, offset))
}
