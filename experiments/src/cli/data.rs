//! `metakd synth`, `metakd prepare` and `metakd split`: the data stages.

use std::path::Path;

use anyhow::{bail, Result};
use metakd_data::avmnist::dataset as avmnist;
use metakd_data::avmnist::multibench as avmnist_multibench;
use metakd_data::prepare::PrepareOptions;
use metakd_data::release::ReleaseSplit;
use metakd_data::shards::ImageDtype;
use metakd_data::synth::{write_dataset, Layout, SynthConfig};

use super::{
    AdCsfArgs, AdniArgs, AvmnistArgs, MultibenchLayoutArgs, PrepareArgs, PrepareDataset, SynthArgs,
    SynthDataset,
};
use crate::progress;
use crate::run::split_files::{write_splits, SplitRequest};

/// `metakd synth`.
pub fn synth(dataset: SynthDataset, show: bool) -> Result<()> {
    match dataset {
        SynthDataset::Brats(a) => synth_brats(a, show),
        SynthDataset::AvmnistMultibench(a) => synth_avmnist_multibench(a),
    }
}

/// `metakd prepare`.
pub fn prepare(dataset: PrepareDataset, show: bool) -> Result<()> {
    match dataset {
        PrepareDataset::Brats(a) => prepare_brats(a, show),
        PrepareDataset::Avmnist(a) => prepare_avmnist(a),
        PrepareDataset::Adni(a) => prepare_adni(a),
        PrepareDataset::AdCsf(a) => prepare_ad_csf(a),
    }
}

/// `metakd synth brats`: BraTS-like phantoms in an official layout.
fn synth_brats(a: SynthArgs, show: bool) -> Result<()> {
    let cfg = SynthConfig {
        layout: Layout {
            release: a.release,
            split: if a.validation {
                ReleaseSplit::Validation
            } else {
                ReleaseSplit::Training
            },
            gzip: !a.plain,
        },
        ..SynthConfig::new(a.cases, a.shape, a.seed)
    };
    let bar = progress::bar(a.cases as u64, "synth", show);
    write_dataset(&cfg, &a.out, || bar.inc(1))?;
    bar.finish_and_clear();
    println!("wrote {} cases to {}", a.cases, a.out.display());
    Ok(())
}

/// `metakd synth avmnist-multibench`: AV-MNIST in MultiBench's layout.
fn synth_avmnist_multibench(a: MultibenchLayoutArgs) -> Result<()> {
    let options = avmnist::AvMnistOptions {
        seed: a.seed,
        ..Default::default()
    };
    let (samples, audio_shape, skipped) =
        avmnist_multibench::build_from_sources(&a.fsdd, &a.mnist, &options)?;
    avmnist_multibench::write_layout(&a.out, &samples, audio_shape)?;
    for (path, reason) in &skipped {
        eprintln!("skipped {}: {reason}", path.display());
    }
    println!(
            "AV-MNIST in MultiBench's layout: {} samples, spectrograms {audio_shape:?}, in {} ({} recordings skipped)",
            samples.len(),
            a.out.display(),
            skipped.len()
        );
    Ok(())
}

/// `metakd prepare brats`: a BraTS release into shards.
fn prepare_brats(a: PrepareArgs, show: bool) -> Result<()> {
    if !a.src.is_dir() {
        bail!("{}: no such folder", a.src.display())
    }
    let options = PrepareOptions {
        release: a.release,
        shard_bytes: a.shard_mib << 20,
        dtype: if a.half {
            ImageDtype::Float16
        } else {
            ImageDtype::Float32
        },
        memory_budget: a.memory_mib << 20,
        overwrite: a.overwrite,
        strict: a.strict,
    };
    let report = crate::prepare(&a.src, &a.out, &options, show, |w| tracing::warn!("{w}"))?;
    let m = &report.manifest;
    println!(
            "{} ({}): {} cases in {} shards in {} ({} prepared now, {} kept from an earlier run), {} skipped",
            m.release.map_or("unknown release".into(), |r| r.to_string()),
            match m.split {
                ReleaseSplit::Training => "training",
                ReleaseSplit::Validation => "validation",
            },
            m.cases.len(),
            m.shards.len(),
            a.out.display(),
            report.prepared,
            report.reused,
            m.skipped.len()
        );
    Ok(())
}

/// `metakd prepare avmnist`: AV-MNIST from its sources or MultiBench's layout.
fn prepare_avmnist(a: AvmnistArgs) -> Result<()> {
    let (samples, manifest) = match (&a.multibench, &a.fsdd, &a.mnist) {
        (Some(dir), _, _) => avmnist_multibench::read_layout(dir)?,
        (None, Some(fsdd), Some(mnist)) => {
            let options = avmnist::AvMnistOptions {
                seed: a.seed,
                ..Default::default()
            };
            avmnist::build(fsdd, mnist, &options)?
        }
        _ => bail!("give --fsdd and --mnist, or --multibench"),
    };
    avmnist::write(&a.out, &samples, &manifest)?;
    for (path, reason) in &manifest.skipped {
        eprintln!("skipped {}: {reason}", path.display());
    }
    println!(
        "AV-MNIST: {} training and {} test samples, audio {:?} {:?}, in {} ({} recordings skipped)",
        manifest.train,
        manifest.test,
        manifest.audio.kind,
        manifest.audio.shape,
        a.out.display(),
        manifest.skipped.len()
    );
    Ok(())
}

/// `metakd prepare adni`: Flex-MoE-style ADNI modality tables.
fn prepare_adni(a: AdniArgs) -> Result<()> {
    use metakd_data::adni;
    let data = adni::read_tables(
        &a.tables,
        "adni",
        &adni::ADNI_MODALITIES,
        &adni::ADNI_CLASSES,
    )?;
    adni::write(&a.out, &data)?;
    print_tables_manifest(&data.manifest, &a.out);
    Ok(())
}

/// `metakd prepare ad-csf`: the AD CSF cohort as modality tables.
fn prepare_ad_csf(a: AdCsfArgs) -> Result<()> {
    use metakd_data::adni;
    let missing: [f64; 3] = a.missing.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!("--missing takes three rates (genomic, clinical, biospecimen)")
    })?;
    let tables = a.out.join("tables");
    adni::ad_csf_tables(&a.csv, &tables, missing, a.seed)?;
    let data = adni::read_tables(
        &tables,
        "ad-csf",
        &adni::AD_CSF_MODALITIES,
        &adni::AD_CSF_CLASSES,
    )?;
    adni::write(&a.out, &data)?;
    print_tables_manifest(&data.manifest, &a.out);
    Ok(())
}

/// `metakd split`: split files of the published protocols.
pub fn split(request: SplitRequest) -> Result<()> {
    for (path, s) in write_splits(&request)? {
        if let Some(warning) = s.meta_val_warning() {
            tracing::warn!("{}: {warning}", path.display());
        }
        println!(
            "{}: {} train, {} meta-val, {} val, {} test ({})",
            path.display(),
            s.train.len(),
            s.meta_val.len(),
            s.val.len(),
            s.test.len(),
            s.protocol
        );
    }
    Ok(())
}

/// Prints what a prepared folder of modality tables holds.
fn print_tables_manifest(m: &metakd_data::adni::TabularManifest, out: &Path) {
    let present: Vec<String> = m
        .modalities
        .iter()
        .zip(&m.present)
        .zip(&m.features)
        .map(|((name, n), f)| format!("{name} {n} ({} features)", f.len()))
        .collect();
    println!(
        "{} subjects ({}); {}; written to {}",
        m.subjects,
        m.classes.join(" / "),
        present.join(", "),
        out.display()
    );
}
