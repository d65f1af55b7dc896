//! `metakd demo`: every stage on fresh synthetic data.

use anyhow::Result;

use super::DemoArgs;
use crate::demo::{run_demo, DemoOptions};

/// `metakd demo`.
pub fn demo(a: DemoArgs, show: bool) -> Result<()> {
    let outcome = run_demo(&DemoOptions {
        workdir: a.workdir,
        cases: a.cases,
        shape: a.shape,
        seed: a.seed,
        iterations: a.iterations,
        show_progress: show,
        on_note: |note| println!("{note}"),
    })?;
    let s = &outcome.summary;
    let [synth, prepare, train, sweep, report] = outcome.stage_seconds;
    println!("stages: synth {synth:.0} s, prepare {prepare:.0} s, train {train:.0} s, sweep {sweep:.0} s, report {report:.1} s");
    println!(
            "full-modality Dice: ET {:.3}, TC {:.3}, WT {:.3}; mean over 15 subsets: ET {:.3}, TC {:.3}, WT {:.3}",
            s.full_dice[0], s.full_dice[1], s.full_dice[2], s.mean_dice[0], s.mean_dice[1], s.mean_dice[2]
        );
    println!(
        "mean ET Dice with T1ce {:.3}, without {:.3}",
        s.et_with_key_modality, s.et_without_key_modality
    );
    println!("report: {}", outcome.report.display());
    Ok(())
}
