//! The Arrow schema of a shard (one row per case; documented in `docs/shards.md`) and the record
//! batch of one case.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float16Array, Float32Array, ListArray, PrimitiveArray,
    RecordBatch, StringArray, UInt32Array, UInt8Array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use half::{f16, slice::HalfFloatSliceExt};

use super::manifest::ImageDtype;
use crate::modality::Modality;
use crate::preprocess::PreparedCase;

fn item(t: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", t, false))
}

/// The Arrow type of the image columns.
pub fn image_type(dtype: ImageDtype) -> DataType {
    match dtype {
        ImageDtype::Float32 => DataType::Float32,
        ImageDtype::Float16 => DataType::Float16,
    }
}

/// The schema of a shard holding images of `dtype`.
pub fn shard_schema(dtype: ImageDtype) -> Schema {
    let fixed = |t: DataType, n: i32| DataType::FixedSizeList(item(t), n);
    let list = |t: DataType| DataType::List(item(t));
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("release", DataType::Utf8, true),
        Field::new("grade", DataType::Utf8, true),
        Field::new("metadata", DataType::Utf8, false),
        Field::new("shape", fixed(DataType::UInt32, 3), false),
        Field::new("original_shape", fixed(DataType::UInt32, 3), false),
        Field::new("crop_offset", fixed(DataType::UInt32, 3), false),
        Field::new("spacing", fixed(DataType::Float32, 3), false),
        Field::new("affine", fixed(DataType::Float32, 12), false),
    ];
    for m in Modality::ALL {
        fields.push(Field::new(m.suffix(), list(image_type(dtype)), false));
    }
    fields.push(Field::new("label", list(DataType::UInt8), true));
    fields.push(Field::new("regions", list(DataType::UInt8), true));
    Schema::new(fields)
}

fn fixed_list(values: ArrayRef) -> ArrayRef {
    let n = values.len() as i32;
    Arc::new(FixedSizeListArray::new(
        item(values.data_type().clone()),
        n,
        values,
        None,
    ))
}

fn fixed_u32(values: &[usize; 3]) -> ArrayRef {
    fixed_list(Arc::new(UInt32Array::from(
        values.iter().map(|&v| v as u32).collect::<Vec<_>>(),
    )))
}

/// A one-row list column holding `values`, null when `present` is false.
fn one_row_list(values: ArrayRef, present: bool) -> ArrayRef {
    let offsets = OffsetBuffer::from_lengths([values.len()]);
    let nulls = (!present).then(|| NullBuffer::new_null(1));
    Arc::new(ListArray::new(
        item(values.data_type().clone()),
        offsets,
        values,
        nulls,
    ))
}

/// The image columns of a case, in channel order; float32 images are moved, not copied.
fn image_columns(images: Vec<f32>, voxels: usize, dtype: ImageDtype) -> Vec<ArrayRef> {
    let all: ArrayRef = match dtype {
        ImageDtype::Float32 => Arc::new(Float32Array::new(ScalarBuffer::from(images), None)),
        ImageDtype::Float16 => {
            let mut half = vec![f16::ZERO; images.len()];
            half.convert_from_f32_slice(&images);
            Arc::new(Float16Array::new(ScalarBuffer::from(half), None))
        }
    };
    Modality::ALL
        .iter()
        .map(|m| one_row_list(all.slice(m.index() * voxels, voxels), true))
        .collect()
}

fn u8_list(values: Vec<u8>, present: bool) -> ArrayRef {
    let values: PrimitiveArray<_> = UInt8Array::new(ScalarBuffer::from(values), None);
    one_row_list(Arc::new(values), present)
}

/// The record batch of one case (its voxel buffers are moved into the batch).
pub fn case_batch(
    case: PreparedCase,
    schema: &Arc<Schema>,
    dtype: ImageDtype,
) -> Result<RecordBatch, ArrowError> {
    let metadata = serde_json::to_string(&case.metadata)
        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
    let affine = fixed_list(Arc::new(Float32Array::from(case.affine.to_vec())));
    let spacing = fixed_list(Arc::new(Float32Array::from(case.spacing.to_vec())));
    let voxels = case.voxels();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![case.id.as_str()])),
        Arc::new(StringArray::from(vec![case.release.map(|r| r.name())])),
        Arc::new(StringArray::from(vec![case.grade.map(|g| g.as_str())])),
        Arc::new(StringArray::from(vec![metadata])),
        fixed_u32(&case.shape),
        fixed_u32(&case.original_shape),
        fixed_u32(&case.crop_offset),
        spacing,
        affine,
    ];
    columns.extend(image_columns(case.images, voxels, dtype));
    columns.push(u8_list(case.labels, case.labelled));
    columns.push(u8_list(case.regions, case.labelled));
    RecordBatch::try_new(schema.clone(), columns)
}

/// Bytes a case adds to a shard (images, label map and regions).
pub fn case_bytes(case: &PreparedCase, dtype: ImageDtype) -> u64 {
    (case.voxels() * (4 * dtype.size() + 2)) as u64
}
