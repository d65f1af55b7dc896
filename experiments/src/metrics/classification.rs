//! Classification metrics: accuracy and macro-F1 (the unweighted mean over classes of
//! 2·precision·recall / (precision + recall); a class with no true positives scores 0, a class
//! neither present nor predicted is left out, as scikit-learn's `f1_score(average="macro")`
//! does with its labels taken from the data).

use serde::{Deserialize, Serialize};

/// Accuracy and macro-F1 of one set of predictions, as fractions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// Share of the samples predicted right.
    pub accuracy: f64,
    /// Mean F1 over the classes present or predicted.
    pub macro_f1: f64,
}

/// Scores `predicted` against `truth` (class indices below `classes`). Empty input scores NaN.
pub fn class_scores(predicted: &[u32], truth: &[u32], classes: usize) -> ClassScores {
    assert_eq!(predicted.len(), truth.len(), "one prediction per sample");
    if truth.is_empty() {
        return ClassScores {
            accuracy: f64::NAN,
            macro_f1: f64::NAN,
        };
    }
    let mut true_positives = vec![0usize; classes];
    let mut predicted_count = vec![0usize; classes];
    let mut true_count = vec![0usize; classes];
    for (&p, &t) in predicted.iter().zip(truth) {
        predicted_count[p as usize] += 1;
        true_count[t as usize] += 1;
        if p == t {
            true_positives[t as usize] += 1;
        }
    }
    let correct: usize = true_positives.iter().sum();
    let f1s: Vec<f64> = (0..classes)
        .filter(|&c| predicted_count[c] + true_count[c] > 0)
        .map(|c| 2.0 * true_positives[c] as f64 / (predicted_count[c] + true_count[c]) as f64)
        .collect();
    ClassScores {
        accuracy: correct as f64 / truth.len() as f64,
        macro_f1: f1s.iter().sum::<f64>() / f1s.len() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hand_computed_example() {
        // First five: class 0: TP 2, FP 1, FN 0 → F1 = 4/5; class 1: TP 1, FP 1, FN 1 → 1/2;
        // class 2: TP 0, FN 1 → 0; class 3 absent and never predicted: left out.
        let truth = [0, 0, 1, 1, 2, 2];
        let predicted = [0, 0, 1, 0, 1, 2];
        let s = class_scores(&predicted[..5], &truth[..5], 4);
        assert!((s.accuracy - 3.0 / 5.0).abs() < 1e-12);
        let expected = (0.8 + 0.5 + 0.0) / 3.0;
        assert!((s.macro_f1 - expected).abs() < 1e-12, "{s:?}");
        let all = class_scores(&predicted, &truth, 4);
        // All six: class 2 now TP 1, FN 1 → 2/3.
        assert!((all.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn perfect_predictions_score_one() {
        let truth = [3, 1, 2, 3];
        let s = class_scores(&truth, &truth, 5);
        assert_eq!((s.accuracy, s.macro_f1), (1.0, 1.0));
    }
}
