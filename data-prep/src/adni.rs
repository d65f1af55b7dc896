//! Modality tables as Flex-MoE prepares ADNI: one CSV per modality (`image.csv`, `genomic.csv`,
//! `clinical.csv`, `biospecimen.csv`), each a `subject_id` column and that modality's features,
//! and `labels.csv` (`subject_id`, `diagnosis`: CN / MCI / AD). A subject absent from a
//! modality's table (or whose row there is empty) misses that modality — the real missingness,
//! nothing simulated. Read into one Arrow IPC file (`tables.arrow`: `subject_id`, `label`, and
//! per modality a nullable list of its features) with `manifest.json`.
//!
//! Numeric columns are kept as they are (the trainer standardises them on its training split);
//! a column with any non-numeric value is categorical and one-hot encoded (`column=value`, the
//! values sorted). An empty cell in a row that has other values takes the column's mean over the
//! subjects that have it (counted in the manifest).
//!
//! [`ad_csf_tables`] writes the real stand-in (`ad_data.csv.gz`: 333 subjects, genomic =
//! Genotype, clinical = age and male, biospecimen = the CSF proteins; Control / Impaired) as such
//! tables, with each modality removed from a seeded share of the subjects.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt8Array,
};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Schema};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::files::write_atomic;

/// Flex-MoE's ADNI modalities, in table order.
pub const ADNI_MODALITIES: [&str; 4] = ["image", "genomic", "clinical", "biospecimen"];
/// ADNI's diagnoses, in label order.
pub const ADNI_CLASSES: [&str; 3] = ["CN", "MCI", "AD"];
/// The labels table of a folder of modality tables.
pub const LABELS_FILE: &str = "labels.csv";
/// The prepared data file.
pub const DATA_FILE: &str = "tables.arrow";
/// The prepared manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One subject: its class and, per modality, its features when it has the modality.
#[derive(Debug, Clone, PartialEq)]
pub struct TabularSubject {
    /// The subject id.
    pub id: String,
    /// Index into the classes.
    pub label: u8,
    /// Per modality, the feature values, or none when the subject misses it.
    pub values: Vec<Option<Vec<f32>>>,
}

/// What a prepared folder holds, besides the subjects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabularManifest {
    /// The data set (`adni`, `ad-csf`).
    pub dataset: String,
    /// Where the tables were read.
    pub source: PathBuf,
    /// Modalities with a table, in order.
    pub modalities: Vec<String>,
    /// Feature names per modality.
    pub features: Vec<Vec<String>>,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Subjects.
    pub subjects: usize,
    /// Subjects having each modality.
    pub present: Vec<usize>,
    /// Empty cells filled with their column's mean, per modality.
    pub imputed: Vec<usize>,
}

/// A prepared data set.
#[derive(Debug, Clone, PartialEq)]
pub struct TabularDataset {
    /// The manifest.
    pub manifest: TabularManifest,
    /// The subjects.
    pub subjects: Vec<TabularSubject>,
}

fn corrupt(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::Corrupt {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// A CSV file's header and rows (gzip when named `.gz`).
fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut csv = csv::Reader::from_reader(reader);
    let header: Vec<String> = csv
        .headers()
        .map_err(|e| corrupt(path, e.to_string()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = csv
        .records()
        .enumerate()
        .map(|(i, r)| {
            r.map(|r| r.iter().map(|v| v.trim().to_owned()).collect())
                .map_err(|e| corrupt(path, format!("row {}: {e}", i + 2)))
        })
        .collect::<Result<Vec<Vec<String>>>>()?;
    Ok((header, rows))
}

fn id_column(path: &Path, header: &[String]) -> Result<usize> {
    header
        .iter()
        .position(|h| h == "subject_id")
        .ok_or_else(|| corrupt(path, "no subject_id column"))
}

/// One modality's table: feature names and each subject's values.
struct ModalityTable {
    features: Vec<String>,
    rows: BTreeMap<String, Vec<f32>>,
    imputed: usize,
}

fn read_modality(path: &Path) -> Result<ModalityTable> {
    let (header, rows) = read_csv(path)?;
    let id = id_column(path, &header)?;
    let columns: Vec<usize> = (0..header.len()).filter(|&c| c != id).collect();
    // Rows with no value at all: the subject misses the modality.
    let rows: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| columns.iter().any(|&c| !r[c].is_empty()))
        .collect();
    let mut features = Vec::new();
    // Per column: numeric values (with the mean of the present ones) or categories.
    enum Encoding {
        Numeric(f32),
        Categorical(Vec<String>),
    }
    let mut encodings = Vec::new();
    for &c in &columns {
        let present: Vec<&str> = rows
            .iter()
            .map(|r| r[c].as_str())
            .filter(|v| !v.is_empty())
            .collect();
        let numbers: Option<Vec<f64>> = present.iter().map(|v| v.parse::<f64>().ok()).collect();
        match numbers {
            Some(numbers) => {
                if numbers.iter().any(|v| !v.is_finite()) {
                    return Err(corrupt(
                        path,
                        format!("column {}: a value is not finite", header[c]),
                    ));
                }
                let mean = numbers.iter().sum::<f64>() / numbers.len().max(1) as f64;
                features.push(header[c].clone());
                encodings.push(Encoding::Numeric(mean as f32));
            }
            None => {
                let categories: BTreeSet<&str> = present.into_iter().collect();
                let categories: Vec<String> = categories.into_iter().map(str::to_owned).collect();
                features.extend(categories.iter().map(|v| format!("{}={v}", header[c])));
                encodings.push(Encoding::Categorical(categories));
            }
        }
    }
    let mut table = BTreeMap::new();
    let mut imputed = 0;
    for (i, row) in rows.iter().enumerate() {
        let mut values = Vec::with_capacity(features.len());
        for (&c, encoding) in columns.iter().zip(&encodings) {
            let cell = row[c].as_str();
            match encoding {
                Encoding::Numeric(mean) if cell.is_empty() => {
                    imputed += 1;
                    values.push(*mean);
                }
                Encoding::Numeric(_) => values.push(cell.parse::<f64>().expect("checked") as f32),
                Encoding::Categorical(categories) => {
                    values.extend(categories.iter().map(|v| f32::from(u8::from(v == cell))))
                }
            }
        }
        if table.insert(row[id].clone(), values).is_some() {
            return Err(corrupt(
                path,
                format!("row {}: subject {} appears twice", i + 2, row[id]),
            ));
        }
    }
    Ok(ModalityTable {
        features,
        rows: table,
        imputed,
    })
}

/// Reads a folder of modality tables: `labels.csv` and whichever of `modalities` has a CSV
/// (`<modality>.csv`); `classes` in label order (`diagnosis` values). Subjects without a label
/// are left out; a label outside `classes` is an error naming the file and row.
pub fn read_tables(
    dir: &Path,
    dataset: &str,
    modalities: &[&str],
    classes: &[&str],
) -> Result<TabularDataset> {
    let labels_path = dir.join(LABELS_FILE);
    let (header, rows) = read_csv(&labels_path)?;
    let id = id_column(&labels_path, &header)?;
    let diagnosis = header
        .iter()
        .position(|h| h == "diagnosis")
        .ok_or_else(|| corrupt(&labels_path, "no diagnosis column"))?;
    let mut tables = Vec::new();
    let mut names = Vec::new();
    for m in modalities {
        let path = dir.join(format!("{m}.csv"));
        if path.exists() {
            tables.push(read_modality(&path)?);
            names.push(m.to_string());
        }
    }
    if tables.is_empty() {
        return Err(corrupt(
            dir,
            format!("no modality table ({}.csv)", modalities.join(".csv, ")),
        ));
    }
    let mut subjects = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        let label = classes
            .iter()
            .position(|c| *c == row[diagnosis])
            .ok_or_else(|| {
                corrupt(
                    &labels_path,
                    format!(
                        "row {}: diagnosis {:?} is not one of {}",
                        i + 2,
                        row[diagnosis],
                        classes.join(", ")
                    ),
                )
            })?;
        if !seen.insert(row[id].clone()) {
            return Err(corrupt(
                &labels_path,
                format!("row {}: subject {} appears twice", i + 2, row[id]),
            ));
        }
        let values: Vec<Option<Vec<f32>>> = tables
            .iter()
            .map(|t| t.rows.get(&row[id]).cloned())
            .collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        subjects.push(TabularSubject {
            id: row[id].clone(),
            label: label as u8,
            values,
        });
    }
    let present = (0..tables.len())
        .map(|m| subjects.iter().filter(|s| s.values[m].is_some()).count())
        .collect();
    Ok(TabularDataset {
        manifest: TabularManifest {
            dataset: dataset.to_owned(),
            source: dir.to_owned(),
            modalities: names,
            features: tables.iter().map(|t| t.features.clone()).collect(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            subjects: subjects.len(),
            present,
            imputed: tables.iter().map(|t| t.imputed).collect(),
        },
        subjects,
    })
}

/// The stand-in's modalities and classes.
pub const AD_CSF_MODALITIES: [&str; 3] = ["genomic", "clinical", "biospecimen"];
/// The stand-in's classes, in label order.
pub const AD_CSF_CLASSES: [&str; 2] = ["Control", "Impaired"];

/// Writes the AD CSF cohort (`ad_data.csv.gz`) as modality tables into `dir`: `genomic.csv`
/// (Genotype), `clinical.csv` (age, male), `biospecimen.csv` (every other measurement) and
/// `labels.csv` (`diagnosis` = Class). Each modality is removed from `missing[m]` of the
/// subjects (seeded; a subject keeps at least one modality).
pub fn ad_csf_tables(csv_path: &Path, dir: &Path, missing: [f64; 3], seed: u64) -> Result<usize> {
    let (header, rows) = read_csv(csv_path)?;
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| corrupt(csv_path, format!("no {name} column")))
    };
    let (class, genotype, age, male) = (
        column("Class")?,
        column("Genotype")?,
        column("age")?,
        column("male")?,
    );
    let row_id = header.iter().position(|h| h == "rownames");
    let genomic = vec![genotype];
    let clinical = vec![age, male];
    let biospecimen: Vec<usize> = (0..header.len())
        .filter(|c| ![class, genotype, age, male].contains(c) && Some(*c) != row_id)
        .collect();
    let groups = [genomic, clinical, biospecimen];
    let n = rows.len();
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
    let mut has = vec![[true; 3]; n];
    for (m, &rate) in missing.iter().enumerate() {
        if !(0.0..1.0).contains(&rate) {
            return Err(corrupt(
                csv_path,
                format!(
                    "missing rate {rate} of {} is not in [0, 1)",
                    AD_CSF_MODALITIES[m]
                ),
            ));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let mut removed = 0;
        let target = (rate * n as f64).round() as usize;
        for s in order {
            if removed == target {
                break;
            }
            if has[s].iter().filter(|&&h| h).count() > 1 {
                has[s][m] = false;
                removed += 1;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let id = |i: usize| format!("S{:04}", i + 1);
    let write = |name: &str, columns: Vec<&str>, lines: Vec<String>| -> Result<()> {
        let mut text = columns.join(",") + "\n";
        for line in lines {
            text += &line;
            text.push('\n');
        }
        write_atomic(&dir.join(name), text.as_bytes())
    };
    write(
        LABELS_FILE,
        vec!["subject_id", "diagnosis"],
        rows.iter()
            .enumerate()
            .map(|(i, r)| format!("{},{}", id(i), r[class]))
            .collect(),
    )?;
    for (m, columns) in groups.iter().enumerate() {
        let mut names = vec!["subject_id"];
        names.extend(columns.iter().map(|&c| header[c].as_str()));
        let lines = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| has[*i][m])
            .map(|(i, r)| {
                let mut cells = vec![id(i)];
                cells.extend(columns.iter().map(|&c| r[c].clone()));
                cells.join(",")
            })
            .collect();
        write(&format!("{}.csv", AD_CSF_MODALITIES[m]), names, lines)?;
    }
    Ok(n)
}

fn arrow_error(path: &Path) -> impl Fn(arrow_schema::ArrowError) -> DataError + '_ {
    move |source| DataError::Arrow {
        path: path.to_owned(),
        source,
    }
}

/// Writes a prepared data set into `dir` (`tables.arrow`, `manifest.json`), atomically.
pub fn write(dir: &Path, data: &TabularDataset) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let path = dir.join(DATA_FILE);
    let m = &data.manifest;
    let mut fields = vec![
        Field::new("subject_id", DataType::Utf8, false),
        Field::new("label", DataType::UInt8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            data.subjects.iter().map(|s| s.id.as_str()),
        )),
        Arc::new(UInt8Array::from_iter_values(
            data.subjects.iter().map(|s| s.label),
        )),
    ];
    for (k, name) in m.modalities.iter().enumerate() {
        let width = m.features[k].len();
        let mut builder = FixedSizeListBuilder::new(Float32Builder::new(), width as i32)
            .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
        for s in &data.subjects {
            match &s.values[k] {
                Some(v) => {
                    builder.values().append_slice(v);
                    builder.append(true);
                }
                None => {
                    builder.values().append_slice(&vec![0.0; width]);
                    builder.append(false);
                }
            }
        }
        let array = builder.finish();
        fields.push(Field::new(name, array.data_type().clone(), true));
        columns.push(Arc::new(array));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error(&path))?;
    let mut bytes = Vec::new();
    {
        let mut writer = FileWriter::try_new(&mut bytes, &schema).map_err(arrow_error(&path))?;
        writer.write(&batch).map_err(arrow_error(&path))?;
        writer.finish().map_err(arrow_error(&path))?;
    }
    write_atomic(&path, &bytes)?;
    let json = serde_json::to_string_pretty(m).expect("the manifest serialises");
    write_atomic(&dir.join(MANIFEST_FILE), json.as_bytes())
}

/// Reads a folder written by [`write`].
pub fn read(dir: &Path) -> Result<TabularDataset> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text =
        std::fs::read_to_string(&manifest_path).map_err(|e| DataError::io(&manifest_path, e))?;
    let manifest: TabularManifest =
        serde_json::from_str(&text).map_err(|e| corrupt(&manifest_path, e.to_string()))?;
    let path = dir.join(DATA_FILE);
    let file = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let reader = FileReader::try_new(file, None).map_err(arrow_error(&path))?;
    let mut subjects = Vec::new();
    for batch in reader {
        let batch = batch.map_err(arrow_error(&path))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| corrupt(&path, format!("no column {name}")))
        };
        let ids = column("subject_id")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| corrupt(&path, "subject_id is not text"))?;
        let labels = column("label")?
            .as_any()
            .downcast_ref::<UInt8Array>()
            .ok_or_else(|| corrupt(&path, "label is not u8"))?;
        let lists = manifest
            .modalities
            .iter()
            .map(|m| {
                column(m)?
                    .as_any()
                    .downcast_ref::<FixedSizeListArray>()
                    .cloned()
                    .ok_or_else(|| corrupt(&path, format!("{m} is not a list of features")))
            })
            .collect::<Result<Vec<_>>>()?;
        for i in 0..batch.num_rows() {
            let values = lists
                .iter()
                .map(|l| {
                    if l.is_null(i) {
                        return Ok(None);
                    }
                    let v = l.value(i);
                    let v = v
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .ok_or_else(|| corrupt(&path, "features are not f32"))?;
                    Ok(Some(v.values().to_vec()))
                })
                .collect::<Result<Vec<_>>>()?;
            subjects.push(TabularSubject {
                id: ids.value(i).to_owned(),
                label: labels.value(i),
                values,
            });
        }
    }
    Ok(TabularDataset { manifest, subjects })
}
