//! `metakd avmnist` and `metakd tables`: MetaKD on the classification tasks.

use std::path::Path;

use anyhow::{bail, Context, Result};
use metakd_data::avmnist::dataset as avmnist;

use super::{AvmnistCommand, AvmnistRunArgs, AvmnistTrainArgs, RateProtocol, TablesRunArgs};

/// `metakd avmnist`.
pub fn avmnist(what: AvmnistCommand, show: bool) -> Result<()> {
    match what {
        AvmnistCommand::Train(a) => avmnist_train(a),
        AvmnistCommand::Run(a) => avmnist_run(a, show),
    }
}

/// `metakd avmnist train`: one variant at one rate and seed.
fn avmnist_train(a: AvmnistTrainArgs) -> Result<()> {
    use crate::classify::avmnist::{train_and_evaluate, AvMnistTrainConfig, RateModality};
    let (samples, manifest) = avmnist::read(&a.data)?;
    let (rate, rate_modality) = match a.image_rate {
        Some(rate) => (rate, RateModality::Image),
        None => (a.audio_rate, RateModality::Audio),
    };
    let base = read_settings::<crate::classify::avmnist::AvMnistTrainConfig>(a.config.as_deref())?
        .for_data(&manifest.audio);
    let cfg = AvMnistTrainConfig {
        variant: a.variant,
        rate,
        rate_modality,
        seed: a.seed,
        iterations: a.iterations.unwrap_or(base.iterations),
        ..base
    };
    let result = train_and_evaluate(&samples, &cfg)?;
    let json = serde_json::to_string_pretty(&result)?;
    if let Some(out) = &a.out {
        metakd_data::files::write_atomic(out, format!("{json}\n").as_bytes())?;
    }
    println!("{json}");
    Ok(())
}

/// `metakd avmnist run`: the protocol, every rate × seed × variant.
fn avmnist_run(a: AvmnistRunArgs, show: bool) -> Result<()> {
    use crate::classify::avmnist::RateModality;
    use crate::classify::avmnist_protocol::{run_protocol, ProtocolPlan};
    let (samples, manifest) = avmnist::read(&a.data)?;
    let mut base =
        read_settings::<crate::classify::avmnist::AvMnistTrainConfig>(a.config.as_deref())?
            .for_data(&manifest.audio);
    if let Some(iterations) = a.iterations {
        base.iterations = iterations;
    }
    let defaults = ProtocolPlan::default();
    let plan = ProtocolPlan {
        rate_modalities: a
            .protocols
            .iter()
            .map(|p| match p {
                RateProtocol::Audio => RateModality::Audio,
                RateProtocol::Visual => RateModality::Image,
            })
            .collect(),
        rates: a.rates.iter().map(|r| r / 100.0).collect(),
        seeds: a.seeds.clone(),
        variants: if a.variants.is_empty() {
            defaults.variants
        } else {
            a.variants.clone()
        },
    };
    if let Some(bad) = plan.rates.iter().find(|r| !(0.0..=1.0).contains(*r)) {
        bail!("--rates: {} is not a percentage", bad * 100.0)
    }
    let outcome = run_protocol(&samples, &base, &plan, &a.out, show)?;
    print_units(outcome.trained, outcome.already_done, &outcome.table);
    Ok(())
}

/// `metakd tables`: every seed × variant on modality tables.
pub fn tables(a: TablesRunArgs, show: bool) -> Result<()> {
    use crate::classify::tables::{run_tables, TabularTrainConfig, TabularVariant};
    let data = metakd_data::adni::read(&a.data)?;
    let mut base: TabularTrainConfig = read_settings(a.config.as_deref())?;
    if let Some(iterations) = a.iterations {
        base.iterations = iterations;
    }
    let variants = if a.variants.is_empty() {
        vec![
            TabularVariant::MetaKd,
            TabularVariant::NoKd,
            TabularVariant::NoMeta,
            TabularVariant::Fusion,
        ]
    } else {
        a.variants.clone()
    };
    let outcome = run_tables(&data, &base, &a.seeds, &variants, &a.out, show)?;
    print_units(outcome.trained, outcome.already_done, &outcome.table);
    Ok(())
}

/// Training settings from a TOML file (the keys of `T`, the others at their defaults), or the
/// defaults.
fn read_settings<T: serde::de::DeserializeOwned + Default>(path: Option<&Path>) -> Result<T> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}: bad settings", path.display()))
        }
        None => Ok(T::default()),
    }
}

/// Prints what a run of classification units did.
fn print_units(trained: usize, already_done: usize, table: &Path) {
    println!(
        "{trained} units trained, {already_done} finished earlier; results in {}",
        table.display()
    );
}
