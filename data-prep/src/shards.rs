//! Arrow IPC shards of prepared cases, one record batch (one row) per case, and the
//! `manifest.json` that indexes them. The schema is documented in `docs/shards.md`; pyarrow and
//! polars read the files as they are.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type, UInt8Type};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch, StringArray,
    UInt32Array, UInt8Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::modality::Modality;
use crate::preprocess::PreparedCase;

/// Version of the shard layout written into every manifest.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the manifest inside a shard folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One case's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseEntry {
    /// The case id.
    pub id: String,
    /// The shard file (relative to the manifest) holding the case.
    pub shard: String,
    /// The record batch of the case inside its shard.
    pub batch: usize,
    /// Extents (d, h, w) after cropping.
    pub shape: [usize; 3],
    /// Extents (d, h, w) of the original volumes.
    pub original_shape: [usize; 3],
    /// First voxel of the crop in the original grid.
    pub crop_offset: [usize; 3],
    /// Voxel size in mm along (x, y, z).
    pub spacing: [f32; 3],
    /// Whether the case has a label map.
    pub labelled: bool,
}

/// The index of a shard folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Shard layout version.
    pub format_version: u32,
    /// The folder the cases were read from.
    pub source: String,
    /// Modalities in channel order.
    pub modalities: Vec<String>,
    /// How the cases were preprocessed.
    pub preprocessing: String,
    /// Every case, in order.
    pub cases: Vec<CaseEntry>,
    /// Cases that could not be prepared, with the reason.
    pub skipped: Vec<SkippedCase>,
}

/// A case left out of the shards, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedCase {
    /// The case id.
    pub id: String,
    /// The error that stopped it.
    pub reason: String,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|source| DataError::Json {
            path: path.clone(),
            source,
        })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(DataError::BadShard {
                path,
                problem: format!(
                    "shard format version {} (this program reads version {FORMAT_VERSION})",
                    manifest.format_version
                ),
            });
        }
        Ok(manifest)
    }

    /// The entry of case `id`.
    pub fn case(&self, id: &str) -> Option<&CaseEntry> {
        self.cases.iter().find(|c| c.id == id)
    }
}

/// The schema of a shard: one row per case.
pub fn shard_schema() -> Schema {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, false)));
    let fixed =
        |t: DataType, n: i32| DataType::FixedSizeList(Arc::new(Field::new("item", t, false)), n);
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("shape", fixed(DataType::UInt32, 3), false),
        Field::new("original_shape", fixed(DataType::UInt32, 3), false),
        Field::new("crop_offset", fixed(DataType::UInt32, 3), false),
        Field::new("spacing", fixed(DataType::Float32, 3), false),
        Field::new("affine", fixed(DataType::Float32, 12), false),
    ];
    for m in Modality::ALL {
        fields.push(Field::new(m.suffix(), list(DataType::Float32), false));
    }
    fields.push(Field::new("label", list(DataType::UInt8), false));
    fields.push(Field::new("regions", list(DataType::UInt8), false));
    Schema::new(fields)
}

fn fixed_u32(values: &[usize]) -> ArrayRef {
    let field = Arc::new(Field::new("item", DataType::UInt32, false));
    let values = UInt32Array::from(values.iter().map(|&v| v as u32).collect::<Vec<_>>());
    Arc::new(FixedSizeListArray::new(
        field,
        values.len() as i32,
        Arc::new(values),
        None,
    ))
}

fn fixed_f32(values: &[f32]) -> ArrayRef {
    let field = Arc::new(Field::new("item", DataType::Float32, false));
    let values = Float32Array::from(values.to_vec());
    Arc::new(FixedSizeListArray::new(
        field,
        values.len() as i32,
        Arc::new(values),
        None,
    ))
}

fn list_of(values: ArrayRef, t: DataType) -> ArrayRef {
    let field = Arc::new(Field::new("item", t, false));
    let offsets = OffsetBuffer::from_lengths([values.len()]);
    Arc::new(ListArray::new(field, offsets, values, None))
}

/// The record batch of one case.
fn case_batch(
    case: &PreparedCase,
    schema: &Arc<Schema>,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![case.id.as_str()])),
        fixed_u32(&case.shape),
        fixed_u32(&case.original_shape),
        fixed_u32(&case.crop_offset),
        fixed_f32(&case.spacing),
        fixed_f32(&case.affine),
    ];
    for m in Modality::ALL {
        let image = Float32Array::from(case.image(m).to_vec());
        columns.push(list_of(Arc::new(image), DataType::Float32));
    }
    columns.push(list_of(
        Arc::new(UInt8Array::from(case.labels.clone())),
        DataType::UInt8,
    ));
    columns.push(list_of(
        Arc::new(UInt8Array::from(case.regions.clone())),
        DataType::UInt8,
    ));
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes prepared cases into shards of at most `max_shard_bytes` (at least one case each).
pub struct ShardWriter {
    dir: PathBuf,
    max_shard_bytes: usize,
    schema: Arc<Schema>,
    current: Option<OpenShard>,
    shard_count: usize,
    entries: Vec<CaseEntry>,
}

struct OpenShard {
    name: String,
    temp: PathBuf,
    writer: FileWriter<BufWriter<File>>,
    bytes: usize,
    batches: usize,
}

impl ShardWriter {
    /// A writer into folder `dir` (created if needed).
    pub fn new(dir: &Path, max_shard_bytes: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        Ok(Self {
            dir: dir.to_owned(),
            max_shard_bytes,
            schema: Arc::new(shard_schema()),
            current: None,
            shard_count: 0,
            entries: Vec::new(),
        })
    }

    fn arrow_error(path: &Path) -> impl FnOnce(arrow_schema::ArrowError) -> DataError + '_ {
        move |source| DataError::Arrow {
            path: path.to_owned(),
            source,
        }
    }

    /// Appends one case.
    pub fn write(&mut self, case: &PreparedCase) -> Result<()> {
        let bytes = case.images.len() * 4 + case.labels.len() * 2;
        if let Some(open) = &self.current {
            if open.bytes + bytes > self.max_shard_bytes {
                self.close_current()?;
            }
        }
        if self.current.is_none() {
            let name = format!("shard-{:05}.arrow", self.shard_count);
            self.shard_count += 1;
            let temp = self.dir.join(format!(".{name}.partial"));
            let file = File::create(&temp).map_err(|e| DataError::io(&temp, e))?;
            let writer = FileWriter::try_new(BufWriter::new(file), &self.schema)
                .map_err(Self::arrow_error(&temp))?;
            self.current = Some(OpenShard {
                name,
                temp,
                writer,
                bytes: 0,
                batches: 0,
            });
        }
        let open = self.current.as_mut().expect("opened above");
        let batch = case_batch(case, &self.schema).map_err(Self::arrow_error(&open.temp))?;
        open.writer
            .write(&batch)
            .map_err(Self::arrow_error(&open.temp))?;
        self.entries.push(CaseEntry {
            id: case.id.clone(),
            shard: open.name.clone(),
            batch: open.batches,
            shape: case.shape,
            original_shape: case.original_shape,
            crop_offset: case.crop_offset,
            spacing: case.spacing,
            labelled: case.regions.iter().any(|&r| r != 0) || case.labels.iter().any(|&l| l != 0),
        });
        open.batches += 1;
        open.bytes += bytes;
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(mut open) = self.current.take() {
            open.writer
                .finish()
                .map_err(Self::arrow_error(&open.temp))?;
            drop(open.writer);
            let path = self.dir.join(&open.name);
            std::fs::rename(&open.temp, &path).map_err(|e| DataError::io(&path, e))?;
        }
        Ok(())
    }

    /// Closes the last shard and writes the manifest (atomically, like every shard).
    pub fn finish(mut self, source: &str, skipped: Vec<SkippedCase>) -> Result<Manifest> {
        self.close_current()?;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            source: source.to_owned(),
            modalities: Modality::ALL.iter().map(|m| m.display_name().to_owned()).collect(),
            preprocessing: "crop to the bounding box of non-zero voxels of any modality; \
                            z-score each modality over its non-zero voxels (population std), background 0"
                .to_owned(),
            cases: self.entries,
            skipped,
        };
        let path = self.dir.join(MANIFEST_FILE);
        let temp = self.dir.join(format!(".{MANIFEST_FILE}.partial"));
        let text = serde_json::to_string_pretty(&manifest).map_err(|source| DataError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&temp, text).map_err(|e| DataError::io(&temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| DataError::io(&path, e))?;
        Ok(manifest)
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| DataError::BadShard {
            path: path.to_owned(),
            problem: format!("no column `{name}`"),
        })
}

fn fixed_values<T: arrow_array::ArrowPrimitiveType>(array: &ArrayRef) -> Vec<T::Native> {
    array
        .as_fixed_size_list()
        .value(0)
        .as_primitive::<T>()
        .values()
        .to_vec()
}

fn to3<T: Copy + Default>(v: &[T]) -> [T; 3] {
    [v[0], v[1], v[2]]
}

/// Reads the case in record batch `index` of shard `path`.
pub fn read_case(path: &Path, index: usize) -> Result<PreparedCase> {
    let arrow = |source| DataError::Arrow {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = FileReader::try_new_buffered(file, None).map_err(arrow)?;
    if index >= reader.num_batches() {
        return Err(DataError::BadShard {
            path: path.to_owned(),
            problem: format!(
                "no record batch {index} (the shard has {})",
                reader.num_batches()
            ),
        });
    }
    reader.set_index(index).map_err(arrow)?;
    let batch = reader
        .next()
        .expect("index checked above")
        .map_err(|source| DataError::Arrow {
            path: path.to_owned(),
            source,
        })?;
    let id = column(&batch, "id", path)?
        .as_string::<i32>()
        .value(0)
        .to_owned();
    let shape: Vec<usize> = fixed_values::<UInt32Type>(column(&batch, "shape", path)?)
        .iter()
        .map(|&v| v as usize)
        .collect();
    let as_usize = |name| -> Result<[usize; 3]> {
        let v: Vec<usize> = fixed_values::<UInt32Type>(column(&batch, name, path)?)
            .iter()
            .map(|&v| v as usize)
            .collect();
        Ok(to3(&v))
    };
    let voxels: usize = shape.iter().product();
    let mut images = Vec::with_capacity(4 * voxels);
    for m in Modality::ALL {
        let list = column(&batch, m.suffix(), path)?.as_list::<i32>().value(0);
        let values = list.as_primitive::<Float32Type>().values();
        if values.len() != voxels {
            return Err(DataError::BadShard {
                path: path.to_owned(),
                problem: format!(
                    "case {id}: {} holds {} values for shape {shape:?}",
                    m.suffix(),
                    values.len()
                ),
            });
        }
        images.extend_from_slice(values);
    }
    let bytes = |name| -> Result<Vec<u8>> {
        let list = column(&batch, name, path)?.as_list::<i32>().value(0);
        Ok(list.as_primitive::<UInt8Type>().values().to_vec())
    };
    let affine = fixed_values::<Float32Type>(column(&batch, "affine", path)?);
    Ok(PreparedCase {
        original_shape: as_usize("original_shape")?,
        crop_offset: as_usize("crop_offset")?,
        shape: to3(&shape),
        spacing: to3(&fixed_values::<Float32Type>(column(
            &batch, "spacing", path,
        )?)),
        affine: affine.try_into().map_err(|_| DataError::BadShard {
            path: path.to_owned(),
            problem: format!("case {id}: the affine must hold 12 values"),
        })?,
        labels: bytes("label")?,
        regions: bytes("regions")?,
        images,
        id,
    })
}

impl Manifest {
    /// Reads every case of this manifest (of the shard folder `dir`) whose id passes `keep`, in
    /// manifest order.
    pub fn read_cases(&self, dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PreparedCase>> {
        self.cases
            .iter()
            .filter(|c| keep(&c.id))
            .map(|c| read_case(&dir.join(&c.shard), c.batch))
            .collect()
    }
}

/// Reads every case listed in `dir`'s manifest whose id passes `keep`, in manifest order.
pub fn read_cases(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PreparedCase>> {
    Manifest::read(dir)?.read_cases(dir, keep)
}
