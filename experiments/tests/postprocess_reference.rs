//! The reference post-processing against the authors' own `continues_region_extract` run by
//! `tools/postprocess_reference.py` (scikit-image components, OpenCV k-means): the size rule, the
//! edge-slice rule, 6-connectivity, the k-means relabelling of dark oedema and the final ET rule
//! give the same label maps, voxel for voxel. The 26-connected option differs where it should.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use metakd_experiments::eval::postprocess::{reference_postprocess, LabelGrid};

const SHAPE: [usize; 3] = [40, 36, 32];

fn fixtures() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postprocess.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn bytes(t: &Tensor) -> Vec<u8> {
    assert_eq!(t.dims(), SHAPE);
    t.flatten_all().unwrap().to_vec1::<u8>().unwrap()
}

fn run(name: &str, z_offset: usize) -> (Vec<u8>, Vec<u8>) {
    let tensors = fixtures();
    let mut labels = bytes(&tensors[&format!("{name}.labels")]);
    let t1ce: Vec<f32> = tensors[&format!("{name}.t1ce")]
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let grid = LabelGrid {
        shape: SHAPE,
        z_offset,
        whole_voxels: SHAPE.iter().product(),
    };
    reference_postprocess(&mut labels, grid, || t1ce);
    (labels, bytes(&tensors[&format!("{name}.expected")]))
}

fn count(labels: &[u8], label: u8) -> usize {
    labels.iter().filter(|&&l| l == label).count()
}

#[test]
fn components_and_edge_slices_are_removed_as_the_reference_does() {
    let (ours, reference) = run("components", 0);
    assert_eq!(
        count(&reference, 2),
        4712,
        "the fixture's two kept components"
    );
    let differing = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0);
}

#[test]
fn dark_oedema_becomes_necrotic_core_as_the_references_kmeans_decides() {
    let (ours, reference) = run("kmeans", 0);
    assert_eq!(
        count(&reference, 1),
        4232,
        "the dark oedema and the small ET"
    );
    let differing = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0);
}

#[test]
fn the_edge_slice_rule_counts_slices_of_the_original_volume() {
    // The same map as the bottom of a volume cropped at slice 10: the component whose top slice
    // was 25 now reaches 35, and stays.
    let (shifted, _) = run("components", 10);
    let (unshifted, _) = run("components", 0);
    assert_eq!(count(&shifted, 2), count(&unshifted, 2) + 1440);
}

#[test]
fn the_26_connected_option_keeps_edge_slices_and_diagonal_neighbours() {
    use metakd_data::metadata::CaseMetadata;
    use metakd_data::preprocess::label_of_regions;
    use metakd_data::preprocess::{regions_of_label, ClipOutcome, PreparedCase};
    use metakd_experiments::eval::postprocess::{postprocess_regions, PostprocessRule};

    let tensors = fixtures();
    let labels = bytes(&tensors["components.labels"]);
    let voxels = labels.len();
    let case = PreparedCase {
        id: "components".into(),
        release: None,
        grade: None,
        metadata: CaseMetadata::new(),
        original_shape: SHAPE,
        crop_offset: [0; 3],
        shape: SHAPE,
        spacing: [1.0; 3],
        affine: [0.0; 12],
        images: vec![0.0; 4 * voxels],
        labelled: true,
        labels: labels.clone(),
        regions: labels.iter().map(|&l| regions_of_label(l)).collect(),
        clipping: [ClipOutcome::Unclipped; 4],
        normalisation: None,
    };
    let processed = |rule| {
        let mut regions = case.regions.clone();
        postprocess_regions(&mut regions, &case, rule);
        regions
            .iter()
            .map(|&r| label_of_regions(r))
            .collect::<Vec<u8>>()
    };
    let (_, reference) = run("components", 0);
    assert_eq!(processed(PostprocessRule::Reference), reference);
    let joined = processed(PostprocessRule::Components26);
    // The 64 ET voxels touching the big component along an edge join it, and so does the
    // edge-slice component (1440 voxels of oedema) touching them along an edge: the largest
    // component grows to 7336 voxels, so the 640-voxel one falls below its tenth and goes.
    assert_eq!(count(&joined, 2), count(&reference, 2) + 1440 - 640);
    assert_eq!(count(&joined, 4), count(&reference, 4) + 64);
}
