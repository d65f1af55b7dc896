//! Case metadata from the CSV tables a release ships beside its case folders
//! (`name_mapping.csv`, `survival_data.csv`, `survival_info.csv`, `survival_evaluation.csv`, ...).
//! Each table's id column is found by its values; every other column is kept per case.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Metadata of one case: column name → value, from every table that lists the case.
pub type CaseMetadata = BTreeMap<String, String>;

/// The metadata tables found in a release folder.
#[derive(Debug, Clone, Default)]
pub struct MetadataTables {
    /// The tables that were read.
    pub files: Vec<PathBuf>,
    /// Metadata per case id.
    pub cases: HashMap<String, CaseMetadata>,
    /// Tables that could not be used, with the reason.
    pub warnings: Vec<String>,
}

/// The `*.csv` files directly inside `dir`, sorted by name.
fn csv_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let is_csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if is_csv && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one table: the header and every row, or why it cannot be read.
fn read_table(path: &Path) -> std::result::Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| e.to_string())?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_owned())
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        rows.push(
            record
                .map_err(|e| e.to_string())?
                .iter()
                .map(str::to_owned)
                .collect(),
        );
    }
    Ok((header, rows))
}

/// Reads every CSV table in `dir` and keeps, for each of `case_ids`, the columns of the rows that
/// name it. A table without a column of case ids, or one that cannot be parsed, is left out with a
/// warning.
pub fn read_metadata(dir: &Path, case_ids: &HashSet<&str>) -> Result<MetadataTables> {
    let mut tables = MetadataTables::default();
    for path in csv_files(dir)? {
        let (header, rows) = match read_table(&path) {
            Ok(table) => table,
            Err(problem) => {
                tables.warnings.push(format!(
                    "{}: not a readable CSV table: {problem}",
                    path.display()
                ));
                continue;
            }
        };
        let id_column = (0..header.len()).find(|&c| {
            rows.iter()
                .any(|row| row.get(c).is_some_and(|v| case_ids.contains(v.as_str())))
        });
        let Some(id_column) = id_column else {
            tables.warnings.push(format!(
                "{}: no column lists the case ids of this folder; table not used",
                path.display()
            ));
            continue;
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for row in &rows {
            let Some(id) = row.get(id_column).filter(|v| case_ids.contains(v.as_str())) else {
                continue;
            };
            let entry = tables.cases.entry(id.clone()).or_default();
            for (c, value) in row.iter().enumerate() {
                let Some(name) = header.get(c).filter(|_| c != id_column) else {
                    continue;
                };
                match entry.get(name) {
                    Some(existing) if existing != value => {
                        entry.insert(format!("{stem}:{name}"), value.clone());
                    }
                    _ => {
                        entry.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        tables.files.push(path);
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_kept_per_case_and_the_id_column_is_found_by_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("name_mapping.csv"),
            "Grade,BraTS_2019_subject_ID,BraTS_2020_subject_ID\n\
             HGG,BraTS19_A_1_1,BraTS20_Training_001\nLGG,NA,BraTS20_Training_002\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("survival_info.csv"),
            "Brats20ID,Age,Survival_days,Extent_of_Resection\nBraTS20_Training_002,60.5,289,GTR\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.csv"), "a,b\n1,2\n").unwrap();
        let ids: HashSet<&str> = ["BraTS20_Training_001", "BraTS20_Training_002"].into();
        let tables = read_metadata(dir.path(), &ids).unwrap();
        assert_eq!(tables.files.len(), 2);
        assert_eq!(tables.warnings.len(), 1, "{:?}", tables.warnings);
        assert!(tables.warnings[0].contains("notes.csv"));
        let first = &tables.cases["BraTS20_Training_001"];
        assert_eq!(first["Grade"], "HGG");
        assert_eq!(first["BraTS_2019_subject_ID"], "BraTS19_A_1_1");
        assert!(!first.contains_key("BraTS_2020_subject_ID"));
        let second = &tables.cases["BraTS20_Training_002"];
        assert_eq!(second["Grade"], "LGG");
        assert_eq!(second["Age"], "60.5");
        assert_eq!(second["Survival_days"], "289");
        assert_eq!(second["Extent_of_Resection"], "GTR");
    }
}
