//! Helpers shared by the PyTorch parity tests.

/// Largest accepted error, relative to the largest magnitude of the reference tensor.
pub const TOLERANCE: f32 = 1e-4;

/// Asserts that `got` has `want`'s dims and lies within [`TOLERANCE`] × max |want| of it.
pub fn assert_close(got: &candle_core::Tensor, want: &candle_core::Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: dims");
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
    let (worst, scale) = largest_error(&got, &want);
    let scale = scale.max(1e-6);
    assert!(
        worst <= TOLERANCE * scale,
        "{what}: max error {worst:e}, relative {:e}",
        worst / scale
    );
}

/// The largest |got − want| and the largest |want|.
pub fn largest_error(got: &[f32], want: &[f32]) -> (f32, f32) {
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    (worst, want.iter().fold(0f32, |m, v| m.max(v.abs())))
}
