//! Reading shards: each shard is checked against its manifest digest the first time it is
//! opened, then memory-mapped; one case, or a crop of one, is decoded without reading the rest
//! of the shard.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, UInt32Type, UInt8Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{read_footer_length, FileDecoder};
use arrow_ipc::{root_as_footer, root_as_message, Block};
use half::f16;
use memmap2::Mmap;

use super::checksum::verify_file;
use super::manifest::{CaseEntry, ImageDtype, Manifest};
use crate::error::{DataError, Result};
use crate::metadata::CaseMetadata;
use crate::modality::Modality;
use crate::preprocess::{ClipOutcome, PreparedCase};
use crate::release::{Grade, Release};

/// A shard folder opened for reading.
pub struct ShardSet {
    dir: PathBuf,
    manifest: Manifest,
    opened: Mutex<HashMap<String, Arc<MappedShard>>>,
}

/// A verified, memory-mapped shard.
struct MappedShard {
    path: PathBuf,
    buffer: Buffer,
    decoder: FileDecoder,
    blocks: Vec<Block>,
}

fn bad_shard(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::BadShard {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

impl MappedShard {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        // SAFETY: shards are written once under a temporary name and renamed; nothing modifies a
        // finished shard while it is mapped (and its digest was just verified).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        if mmap.len() < 10 {
            return Err(bad_shard(path, "too short to be an Arrow IPC file"));
        }
        let ptr = NonNull::new(mmap.as_ptr() as *mut u8).expect("a mapping is never null");
        let len = mmap.len();
        // SAFETY: the pointer and length describe the mapping, which the buffer keeps alive.
        let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(mmap)) };
        let arrow = |source| DataError::Arrow {
            path: path.to_owned(),
            source,
        };
        let trailer: [u8; 10] = buffer[len - 10..].try_into().expect("ten bytes");
        let footer_len = read_footer_length(trailer).map_err(arrow)?;
        let footer_start = (len - 10)
            .checked_sub(footer_len)
            .ok_or_else(|| bad_shard(path, "footer longer than the file"))?;
        let footer = root_as_footer(&buffer[footer_start..len - 10])
            .map_err(|e| bad_shard(path, format!("unreadable Arrow footer: {e}")))?;
        let schema = footer
            .schema()
            .ok_or_else(|| bad_shard(path, "the Arrow footer has no schema"))?;
        let schema = Arc::new(try_fb_to_schema(schema).map_err(arrow)?);
        let blocks: Vec<Block> = footer
            .recordBatches()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        let decoder = FileDecoder::new(schema, footer.version());
        Ok(Self {
            path: path.to_owned(),
            buffer,
            decoder,
            blocks,
        })
    }

    /// Checks that record batch `index` (its `block` in the footer) lies inside the file and
    /// that every buffer its message lists lies inside its body, which the Arrow decoder assumes;
    /// returns the block's offset and length.
    fn check_block(&self, block: &Block, index: usize) -> Result<(usize, usize)> {
        let bad =
            |problem: String| bad_shard(&self.path, format!("record batch {index}: {problem}"));
        let (offset, meta, body) = (
            block.offset(),
            i64::from(block.metaDataLength()),
            block.bodyLength(),
        );
        let end = offset.checked_add(meta).and_then(|e| e.checked_add(body));
        let in_file = offset >= 0
            && meta >= 8
            && body >= 0
            && end.is_some_and(|e| e as u64 <= self.buffer.len() as u64);
        if !in_file {
            return Err(bad(format!(
                "its block (offset {offset}, {meta} + {body} bytes) lies outside the file of {} bytes",
                self.buffer.len()
            )));
        }
        let (offset, meta, body) = (offset as usize, meta as usize, body as usize);
        let header = &self.buffer[offset..offset + meta];
        let skip = if header[..4] == [0xff; 4] { 8 } else { 4 };
        let message = root_as_message(&header[skip..])
            .map_err(|e| bad(format!("unreadable message: {e}")))?;
        let batch = message
            .header_as_record_batch()
            .ok_or_else(|| bad("the message is not a record batch".into()))?;
        for buffer in batch.buffers().into_iter().flatten() {
            let end = buffer.offset().checked_add(buffer.length());
            if buffer.offset() < 0
                || buffer.length() < 0
                || end.is_none_or(|e| e as u64 > body as u64)
            {
                return Err(bad(format!(
                    "a buffer (offset {}, {} bytes) lies outside the body of {body} bytes",
                    buffer.offset(),
                    buffer.length()
                )));
            }
        }
        Ok((offset, meta + body))
    }

    fn batch(&self, index: usize) -> Result<RecordBatch> {
        let block = self.blocks.get(index).ok_or_else(|| {
            bad_shard(
                &self.path,
                format!(
                    "no record batch {index} (the shard has {})",
                    self.blocks.len()
                ),
            )
        })?;
        let (offset, len) = self.check_block(block, index)?;
        let data = self.buffer.slice_with_length(offset, len);
        self.decoder
            .read_record_batch(block, &data)
            .map_err(|source| DataError::Arrow {
                path: self.path.clone(),
                source,
            })?
            .ok_or_else(|| bad_shard(&self.path, format!("record batch {index} is empty")))
    }
}

impl ShardSet {
    /// Opens the shard folder `dir` (its manifest must be complete).
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            dir: dir.to_owned(),
            manifest: Manifest::read(dir)?,
            opened: Mutex::new(HashMap::new()),
        })
    }

    /// The folder's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The shard folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shard `file`, verified against its digest and mapped on first use.
    fn shard(&self, file: &str) -> Result<Arc<MappedShard>> {
        if let Some(open) = self.opened.lock().expect("not poisoned").get(file) {
            return Ok(open.clone());
        }
        let path = self.dir.join(file);
        let entry = self
            .manifest
            .shard(file)
            .ok_or_else(|| bad_shard(&Manifest::path(&self.dir), format!("no shard {file}")))?;
        verify_file(&path, entry.bytes, &entry.blake3)?;
        let mapped = Arc::new(MappedShard::open(&path)?);
        self.opened
            .lock()
            .expect("not poisoned")
            .insert(file.to_owned(), mapped.clone());
        Ok(mapped)
    }

    /// The case `id`, decoded from its memory-mapped shard (voxels are read when touched).
    pub fn case(&self, id: &str) -> Result<CaseView> {
        let entry = self.manifest.case(id).ok_or_else(|| {
            bad_shard(
                &Manifest::path(&self.dir),
                format!("no case {id} in the manifest"),
            )
        })?;
        let shard = self.shard(&entry.shard)?;
        let batch = shard.batch(entry.batch)?;
        let view = CaseView {
            entry: entry.clone(),
            path: shard.path.clone(),
            batch,
        };
        let stored = view.string("id")?;
        if stored.as_deref() != Some(id) {
            return Err(bad_shard(
                &view.path,
                format!(
                    "batch {} holds case {stored:?}, the manifest says {id}",
                    entry.batch
                ),
            ));
        }
        Ok(view)
    }

    /// Reads every case whose id passes `keep`, in manifest order.
    pub fn read_cases(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<PreparedCase>> {
        self.manifest
            .cases
            .iter()
            .filter(|c| keep(&c.id))
            .map(|c| self.case(&c.id)?.to_prepared())
            .collect()
    }
}

/// The stored values of one image.
#[derive(Debug, Clone, Copy)]
pub enum ImageValues<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// 16-bit floats.
    F16(&'a [f16]),
}

impl ImageValues<'_> {
    /// Number of voxels.
    pub fn len(&self) -> usize {
        match self {
            ImageValues::F32(v) => v.len(),
            ImageValues::F16(v) => v.len(),
        }
    }

    /// Whether there are no voxels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends values `range` as f32 to `out`.
    fn extend_into(&self, range: std::ops::Range<usize>, out: &mut Vec<f32>) {
        match self {
            ImageValues::F32(v) => out.extend_from_slice(&v[range]),
            ImageValues::F16(v) => out.extend(v[range].iter().map(|x| x.to_f32())),
        }
    }
}

/// A crop of a case: images `[4, d, h, w]`, labels and regions `[d, h, w]`, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct Crop {
    /// Extents of the crop.
    pub size: [usize; 3],
    /// Images in channel order.
    pub images: Vec<f32>,
    /// BraTS labels (all 0 for an unlabelled case).
    pub labels: Vec<u8>,
    /// Region bits.
    pub regions: Vec<u8>,
}

/// One case of a shard, decoded over the memory map.
pub struct CaseView {
    entry: CaseEntry,
    path: PathBuf,
    batch: RecordBatch,
}

fn to3(v: &[usize]) -> [usize; 3] {
    [v[0], v[1], v[2]]
}

impl CaseView {
    /// The manifest entry of the case.
    pub fn entry(&self) -> &CaseEntry {
        &self.entry
    }

    fn column(&self, name: &str) -> Result<&ArrayRef> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| bad_shard(&self.path, format!("no column `{name}`")))
    }

    fn string(&self, name: &str) -> Result<Option<String>> {
        let column = self.column(name)?.as_string::<i32>();
        Ok((!column.is_null(0)).then(|| column.value(0).to_owned()))
    }

    fn fixed_u32(&self, name: &str) -> Result<[usize; 3]> {
        let values = self.column(name)?.as_fixed_size_list().value(0);
        let values = values.as_primitive::<UInt32Type>().values();
        if values.len() != 3 {
            return Err(bad_shard(
                &self.path,
                format!("`{name}` must hold 3 values"),
            ));
        }
        Ok(to3(&values.iter().map(|&v| v as usize).collect::<Vec<_>>()))
    }

    fn fixed_f32(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let values = self.column(name)?.as_fixed_size_list().value(0);
        let values = values.as_primitive::<Float32Type>().values().to_vec();
        if values.len() != n {
            return Err(bad_shard(
                &self.path,
                format!("`{name}` must hold {n} values"),
            ));
        }
        Ok(values)
    }

    /// Extents (d, h, w) of the stored (cropped) volumes.
    pub fn shape(&self) -> [usize; 3] {
        self.entry.shape
    }

    /// The stored values of modality `m`, without copying.
    pub fn image(&self, m: Modality) -> Result<ImageValues<'_>> {
        let list = self.column(m.suffix())?.as_list::<i32>();
        let offsets = list.value_offsets();
        let range = offsets[0] as usize..offsets[1] as usize;
        let values = list.values();
        let image = match values.data_type() {
            arrow_schema::DataType::Float32 => {
                ImageValues::F32(&values.as_primitive::<Float32Type>().values()[range])
            }
            arrow_schema::DataType::Float16 => {
                ImageValues::F16(&values.as_primitive::<Float16Type>().values()[range])
            }
            other => {
                return Err(bad_shard(
                    &self.path,
                    format!(
                        "column `{}` holds {other}, expected float32 or float16",
                        m.suffix()
                    ),
                ))
            }
        };
        let voxels: usize = self.shape().iter().product();
        if image.len() != voxels {
            return Err(bad_shard(
                &self.path,
                format!(
                    "case {}: {} holds {} values for shape {:?}",
                    self.entry.id,
                    m.suffix(),
                    image.len(),
                    self.shape()
                ),
            ));
        }
        Ok(image)
    }

    /// The values of a `u8` list column, or `None` where it is null (an unlabelled case).
    fn bytes(&self, name: &str) -> Result<Option<&[u8]>> {
        let list = self.column(name)?.as_list::<i32>();
        if list.is_null(0) {
            return Ok(None);
        }
        let offsets = list.value_offsets();
        let values = &list.values().as_primitive::<UInt8Type>().values()
            [offsets[0] as usize..offsets[1] as usize];
        if values.len() != self.shape().iter().product::<usize>() {
            return Err(bad_shard(
                &self.path,
                format!(
                    "case {}: `{name}` does not match shape {:?}",
                    self.entry.id,
                    self.shape()
                ),
            ));
        }
        Ok(Some(values))
    }

    /// The region bits of every voxel (ET, TC, WT), without copying; `None` for an unlabelled
    /// case.
    pub fn regions(&self) -> Result<Option<&[u8]>> {
        self.bytes("regions")
    }

    /// Reads the box `start .. start + size` of every modality and of the labels; only the rows
    /// of the box are touched.
    pub fn crop(&self, start: [usize; 3], size: [usize; 3]) -> Result<Crop> {
        let shape = self.shape();
        if (0..3).any(|a| size[a] == 0 || start[a] + size[a] > shape[a]) {
            return Err(DataError::InvalidArgument(format!(
                "case {}: crop {start:?} + {size:?} does not fit shape {shape:?}",
                self.entry.id
            )));
        }
        let [_, h, w] = shape;
        let rows = || {
            (start[0]..start[0] + size[0]).flat_map(move |z| {
                (start[1]..start[1] + size[1]).map(move |y| {
                    let first = (z * h + y) * w + start[2];
                    first..first + size[2]
                })
            })
        };
        let voxels: usize = size.iter().product();
        let mut images = Vec::with_capacity(4 * voxels);
        for m in Modality::ALL {
            let image = self.image(m)?;
            for row in rows() {
                image.extend_into(row, &mut images);
            }
        }
        let gather = |values: Option<&[u8]>| -> Vec<u8> {
            match values {
                Some(v) => rows().flat_map(|r| v[r].iter().copied()).collect(),
                None => vec![0; voxels],
            }
        };
        Ok(Crop {
            size,
            images,
            labels: gather(self.bytes("label")?),
            regions: gather(self.bytes("regions")?),
        })
    }

    /// Reads a box of `size` at a uniformly random position (each extent clamped to the case's).
    pub fn random_crop(&self, size: [usize; 3], rng: &mut impl rand::Rng) -> Result<Crop> {
        let shape = self.shape();
        let size: [usize; 3] = std::array::from_fn(|a| size[a].clamp(1, shape[a]));
        let start = std::array::from_fn(|a| rng.random_range(0..=shape[a] - size[a]));
        self.crop(start, size)
    }

    /// Copies the whole case out of the shard.
    pub fn to_prepared(&self) -> Result<PreparedCase> {
        let full = self.crop([0; 3], self.shape())?;
        let metadata: CaseMetadata = match self.string("metadata")? {
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                bad_shard(
                    &self.path,
                    format!("case {}: bad metadata: {e}", self.entry.id),
                )
            })?,
            None => CaseMetadata::new(),
        };
        let (original_shape, crop_offset, shape) = (
            self.fixed_u32("original_shape")?,
            self.fixed_u32("crop_offset")?,
            self.shape(),
        );
        let fits = (0..3).all(|a| {
            crop_offset[a]
                .checked_add(shape[a])
                .is_some_and(|end| end <= original_shape[a])
        });
        let voxels = original_shape
            .iter()
            .try_fold(1u64, |n, &e| n.checked_mul(e as u64));
        if !fits || voxels.is_none_or(|v| v > crate::nifti_io::MAX_VOXELS) {
            return Err(bad_shard(
                &self.path,
                format!(
                    "case {}: a box of {shape:?} at {crop_offset:?} does not fit the original \
                     volume of {original_shape:?} voxels",
                    self.entry.id
                ),
            ));
        }
        Ok(PreparedCase {
            id: self.entry.id.clone(),
            release: self
                .string("release")?
                .and_then(|r| r.parse::<Release>().ok()),
            grade: self.string("grade")?.and_then(|g| Grade::parse(&g)),
            metadata,
            original_shape,
            crop_offset,
            shape,
            spacing: to3f(&self.fixed_f32("spacing", 3)?),
            affine: self
                .fixed_f32("affine", 12)?
                .try_into()
                .expect("12 values checked"),
            images: full.images,
            labelled: self.bytes("label")?.is_some(),
            labels: full.labels,
            regions: full.regions,
            clipping: [ClipOutcome::Unclipped; 4],
            normalisation: self.entry.normalisation,
        })
    }

    /// Element type of the stored images.
    pub fn dtype(&self) -> Result<ImageDtype> {
        Ok(match self.image(Modality::Flair)? {
            ImageValues::F32(_) => ImageDtype::Float32,
            ImageValues::F16(_) => ImageDtype::Float16,
        })
    }
}

fn to3f(v: &[f32]) -> [f32; 3] {
    [v[0], v[1], v[2]]
}
