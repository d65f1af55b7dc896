//! The optional post-processing of predicted label maps (method spec, section 8).
//!
//! The reference's rule (`postprocess.py`, [`PostprocessRule::Reference`]), on the BraTS label map:
//! 1. tumour (label ≥ 1) components by 6-connectivity, in scikit-image's numbering order (first
//!    voxel in the NIfTI array's raster order);
//! 2. a component smaller than min(2000, 0.1 × the largest), or lying in the first 26 axial slices
//!    (its largest z index ≤ 25 in the original volume), becomes background;
//! 3. otherwise, when the case's ET makes up less than 12 % of its tumour, and the component's
//!    label-value sums say it has little ET (Σ 4·[ET] / Σ label < 0.05 and Σ 4·[ET] < 450: the
//!    reference sums label values, not voxels) and the map has fewer than 10,000 voxels of
//!    label 1, a k-means (3 clusters, OpenCV's rule) of the T1ce intensities masked to the
//!    component's oedema picks the middle cluster, which becomes necrotic core (label 1);
//! 4. a case left with fewer than 500 ET voxels has its ET relabelled as necrotic core.
//!
//! The 26-connected rule ([`PostprocessRule::Components26`]) keeps steps 1, 2 (size only) and 4.

use std::collections::VecDeque;

use metakd_data::preprocess::{regions_of_label, PreparedCase};
use metakd_data::Modality;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use metakd_data::preprocess::label_of_regions;

/// Components smaller than this many voxels are removed, whatever the largest one's size.
pub const MIN_COMPONENT_VOXELS: usize = 2000;
/// Components smaller than this fraction of the largest one are removed.
pub const MIN_COMPONENT_FRACTION: f64 = 0.1;
/// A case with fewer enhancing-tumour voxels than this has its ET relabelled as necrotic core.
pub const MIN_ET_VOXELS: usize = 500;
/// Components whose largest z index is at most this are removed (the reference's rule).
pub const LAST_EDGE_SLICE: usize = 25;
/// Seed of the k-means step's random centres (OpenCV draws them from its own generator).
pub const KMEANS_SEED: u64 = 0x6b6d_6561_6e73;

/// Which post-processing rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PostprocessRule {
    /// The reference's `postprocess.py`: 6-connected components, the edge-slice test and the
    /// k-means relabelling of oedema.
    #[default]
    Reference,
    /// 26-connected components removed by size only; no k-means.
    Components26,
}

/// How voxels touch in a connected component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    /// Across faces (6 neighbours).
    Faces,
    /// Across faces, edges and corners (26 neighbours).
    Full,
}

/// The connected components of `mask` on a `[d, h, w]` grid (C order): a component id per
/// voxel (`None` outside the mask) and each component's size, numbered in the order of their
/// first voxel in C order.
pub fn connected_components(
    mask: &[bool],
    shape: [usize; 3],
    connectivity: Connectivity,
) -> (Vec<Option<u32>>, Vec<usize>) {
    let [d, h, w] = shape;
    assert_eq!(mask.len(), d * h * w, "mask and shape disagree");
    let mut labels = vec![None; mask.len()];
    let mut sizes = Vec::new();
    let mut queue = VecDeque::new();
    for seed in 0..mask.len() {
        if !mask[seed] || labels[seed].is_some() {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0;
        labels[seed] = Some(id);
        queue.push_back(seed);
        while let Some(v) = queue.pop_front() {
            size += 1;
            let (z, y, x) = (v / (h * w), (v / w) % h, v % w);
            for nz in z.saturating_sub(1)..(z + 2).min(d) {
                for ny in y.saturating_sub(1)..(y + 2).min(h) {
                    for nx in x.saturating_sub(1)..(x + 2).min(w) {
                        let steps =
                            usize::from(nz != z) + usize::from(ny != y) + usize::from(nx != x);
                        if connectivity == Connectivity::Faces && steps > 1 {
                            continue;
                        }
                        let n = (nz * h + ny) * w + nx;
                        if mask[n] && labels[n].is_none() {
                            labels[n] = Some(id);
                            queue.push_back(n);
                        }
                    }
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

/// Post-processes the predicted region bits of `case` (`REGION_*` per voxel of `case.shape`,
/// nested as ET ⊂ TC ⊂ WT) in place by `rule`. The reference's k-means reads the case's T1ce
/// intensities before normalisation where the shards recorded it (the normalised ones otherwise).
pub fn postprocess_regions(regions: &mut [u8], case: &PreparedCase, rule: PostprocessRule) {
    let mut labels: Vec<u8> = regions.iter().map(|&r| label_of_regions(r)).collect();
    match rule {
        PostprocessRule::Reference => {
            let grid = LabelGrid {
                shape: case.shape,
                z_offset: case.crop_offset[0],
                whole_voxels: case.original_shape.iter().product(),
            };
            reference_postprocess(&mut labels, grid, || t1ce_intensities(case))
        }
        PostprocessRule::Components26 => components26_postprocess(&mut labels, case.shape),
    }
    for (r, l) in regions.iter_mut().zip(&labels) {
        *r = regions_of_label(*l);
    }
}

/// The T1ce intensities of `case` as in its NIfTI file (clipped, before normalisation), or the
/// normalised ones for shards without a recorded normalisation.
fn t1ce_intensities(case: &PreparedCase) -> Vec<f32> {
    let image = case.image(Modality::T1ce);
    match &case.normalisation {
        Some(stats) => {
            // Foreground: a voxel of any modality differs from the background (the brain mask
            // that normalisation and cropping used); normalised values are 0 elsewhere.
            let v = case.voxels();
            let foreground = |i: usize| (0..4).any(|m| case.images[m * v + i] != 0.0);
            stats[Modality::T1ce.index()].restore(image, foreground)
        }
        None => image.to_vec(),
    }
}

/// Removes tumour components below the size limit (26-connected), then relabels a case's ET as
/// necrotic core when it has fewer than [`MIN_ET_VOXELS`] ET voxels.
fn components26_postprocess(labels: &mut [u8], shape: [usize; 3]) {
    let tumour: Vec<bool> = labels.iter().map(|&l| l >= 1).collect();
    let (components, sizes) = connected_components(&tumour, shape, Connectivity::Full);
    if let Some(&largest) = sizes.iter().max() {
        let limit = size_limit(largest);
        for (l, component) in labels.iter_mut().zip(&components) {
            if component.is_some_and(|id| (sizes[id as usize] as f64) < limit) {
                *l = 0;
            }
        }
    }
    relabel_small_et(labels);
}

/// The smallest size a component keeps: min(2000, 0.1 × the largest).
fn size_limit(largest: usize) -> f64 {
    (MIN_COMPONENT_FRACTION * largest as f64).min(MIN_COMPONENT_VOXELS as f64)
}

/// A case with fewer than [`MIN_ET_VOXELS`] ET voxels has them relabelled as necrotic core (1).
fn relabel_small_et(labels: &mut [u8]) {
    if labels.iter().filter(|&&l| l == 4).count() < MIN_ET_VOXELS {
        labels.iter_mut().filter(|l| **l == 4).for_each(|l| *l = 1);
    }
}

/// Where a label map lies in its original volume.
#[derive(Debug, Clone, Copy)]
pub struct LabelGrid {
    /// Extents (d, h, w) = (z, x, y) of the map.
    pub shape: [usize; 3],
    /// The original volume's z index of the map's first slice.
    pub z_offset: usize,
    /// Voxels of the whole original volume (the k-means runs over all of them).
    pub whole_voxels: usize,
}

/// The reference's `continues_region_extract` on BraTS labels of `grid`; `t1ce` gives the T1ce
/// intensities of the same grid when the k-means step needs them.
pub fn reference_postprocess(labels: &mut [u8], grid: LabelGrid, t1ce: impl FnOnce() -> Vec<f32>) {
    let LabelGrid {
        shape,
        z_offset,
        whole_voxels,
    } = grid;
    let [_, h, w] = shape;
    let tumour: Vec<bool> = labels.iter().map(|&l| l >= 1).collect();
    let (components, sizes) = connected_components(&tumour, shape, Connectivity::Faces);
    let largest = sizes.iter().copied().max().unwrap_or(0);
    // Per component: its voxels, and its first voxel in the NIfTI array's (x, y, z) raster order,
    // which is scikit-image's numbering.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); sizes.len()];
    let mut first = vec![(usize::MAX, usize::MAX, usize::MAX); sizes.len()];
    for (v, component) in components.iter().enumerate() {
        if let Some(id) = component {
            let (z, y, x) = (v / (h * w), (v / w) % h, v % w);
            members[*id as usize].push(v);
            first[*id as usize] = first[*id as usize].min((y, x, z));
        }
    }
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| first[i]);

    let case_et = labels.iter().filter(|&&l| l == 4).count() as f64;
    let case_tumour = labels.iter().filter(|&&l| l >= 1).count() as f64;
    let mut t1ce = Some(t1ce);
    let mut intensities: Option<Vec<f32>> = None;
    let mut rng = ChaCha12Rng::seed_from_u64(KMEANS_SEED);
    for id in order {
        let voxels = &members[id];
        let top_slice = voxels.iter().map(|v| v / (h * w)).max().unwrap_or(0) + z_offset;
        if (sizes[id] as f64) < size_limit(largest) || top_slice <= LAST_EDGE_SLICE {
            voxels.iter().for_each(|&v| labels[v] = 0);
            continue;
        }
        // The reference sums label values here (np.where(label_i == 4, label_i, 0).sum()).
        let et_sum: f64 = voxels.iter().filter(|&&v| labels[v] == 4).count() as f64 * 4.0;
        let label_sum: f64 = voxels.iter().map(|&v| f64::from(labels[v])).sum();
        let necrotic = labels.iter().filter(|&&l| l == 1).count();
        if case_et / case_tumour < 0.12
            && et_sum / label_sum < 0.05
            && et_sum < 450.0
            && necrotic < 10_000
        {
            let mr = intensities.get_or_insert_with(|| (t1ce.take().expect("read once"))());
            let oedema: Vec<(usize, f32)> = voxels
                .iter()
                .filter(|&&v| labels[v] == 2)
                .map(|&v| (v, mr[v]))
                .collect();
            let zeros = whole_voxels - oedema.len();
            for v in middle_cluster(&oedema, zeros, &mut rng) {
                labels[v] = 1;
            }
        }
    }
    relabel_small_et(labels);
}

/// The voxels the reference relabels after its k-means: OpenCV's `kmeans` (3 clusters, 3
/// attempts, random centres, at most 10 iterations or a centre shift ≤ 1) of the whole volume
/// masked to the oedema — `oedema` (voxel, intensity) pairs and `zeros` other voxels of value
/// 0 — then the cluster whose centre is highest once the highest centre is set to the lowest
/// value (the middle one).
fn middle_cluster(oedema: &[(usize, f32)], zeros: usize, rng: &mut impl Rng) -> Vec<usize> {
    // Distinct values with their counts: the same sums as the voxel list, much shorter.
    let mut values: Vec<(f64, usize)> = Vec::with_capacity(oedema.len() + 1);
    if zeros > 0 {
        values.push((0.0, zeros));
    }
    values.extend(oedema.iter().map(|&(_, v)| (f64::from(v), 1)));
    let centres = kmeans_1d(&values, 3, 3, 10, 1.0, rng);
    let mut shifted = centres.clone();
    let (highest, lowest) = (
        argmax(&shifted),
        shifted.iter().copied().fold(f64::INFINITY, f64::min),
    );
    shifted[highest] = lowest;
    let chosen = argmax(&shifted);
    oedema
        .iter()
        .filter(|&&(_, v)| nearest(&centres, f64::from(v)) == chosen)
        .map(|&(voxel, _)| voxel)
        .collect()
}

/// The first index of the largest value.
fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// The index of the centre nearest `value` (the first on ties, as OpenCV).
fn nearest(centres: &[f64], value: f64) -> usize {
    let mut best = 0;
    for (k, c) in centres.iter().enumerate() {
        if (value - c).powi(2) < (value - centres[best]).powi(2) {
            best = k;
        }
    }
    best
}

/// OpenCV's `kmeans` with `KMEANS_RANDOM_CENTERS` on one-dimensional weighted `values`
/// ((value, count) pairs): per attempt, centres drawn uniformly from [min − range, max + range],
/// then Lloyd iterations until `max_iterations` (at least 2) or a largest centre shift ≤
/// `epsilon`; an empty cluster takes the point of the largest cluster farthest from its centre.
/// Returns the centres of the attempt with the smallest compactness (Σ squared distances).
pub fn kmeans_1d(
    values: &[(f64, usize)],
    k: usize,
    attempts: usize,
    max_iterations: usize,
    epsilon: f64,
    rng: &mut impl Rng,
) -> Vec<f64> {
    let lo = values.iter().map(|v| v.0).fold(f64::INFINITY, f64::min);
    let hi = values.iter().map(|v| v.0).fold(f64::NEG_INFINITY, f64::max);
    let mut best = (f64::INFINITY, vec![lo; k]);
    for _ in 0..attempts {
        let mut centres: Vec<f64> = (0..k)
            .map(|_| lo + (hi - lo) * (rng.random::<f64>() * 3.0 - 1.0))
            .collect();
        let mut assignment: Vec<usize> = values.iter().map(|v| nearest(&centres, v.0)).collect();
        // OpenCV counts the draw of the centres as the first iteration.
        let mut iteration = 1;
        loop {
            let mut sums = vec![0.0; k];
            let mut counts = vec![0usize; k];
            for (v, &a) in values.iter().zip(&assignment) {
                sums[a] += v.0 * v.1 as f64;
                counts[a] += v.1;
            }
            let mut next: Vec<f64> = (0..k)
                .map(|c| {
                    if counts[c] > 0 {
                        sums[c] / counts[c] as f64
                    } else {
                        0.0
                    }
                })
                .collect();
            for c in 0..k {
                if counts[c] > 0 {
                    continue;
                }
                // The farthest point of the largest cluster forms a cluster of its own.
                let biggest = (0..k).max_by_key(|&b| counts[b]).expect("k > 0");
                let far = values
                    .iter()
                    .zip(&assignment)
                    .enumerate()
                    .filter(|(_, (_, &a))| a == biggest)
                    .max_by(|a, b| {
                        let d = |p: &(f64, usize)| (p.0 - next[biggest]).abs();
                        d(a.1 .0).total_cmp(&d(b.1 .0))
                    })
                    .map(|(i, _)| i);
                if let Some(i) = far {
                    let (value, _) = values[i];
                    let n = counts[biggest] as f64;
                    next[biggest] = (next[biggest] * n - value) / (n - 1.0).max(1.0);
                    counts[biggest] -= 1;
                    counts[c] = 1;
                    next[c] = value;
                    assignment[i] = c;
                }
            }
            let shift = centres
                .iter()
                .zip(&next)
                .map(|(a, b)| (a - b).powi(2))
                .fold(0.0, f64::max);
            centres = next;
            iteration += 1;
            assignment = values.iter().map(|v| nearest(&centres, v.0)).collect();
            if iteration >= max_iterations.max(2) || shift <= epsilon * epsilon {
                break;
            }
        }
        let compactness: f64 = values
            .iter()
            .zip(&assignment)
            .map(|(v, &a)| (v.0 - centres[a]).powi(2) * v.1 as f64)
            .sum();
        if compactness < best.0 {
            best = (compactness, centres);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_cases::labelled_case;
    use metakd_data::preprocess::{REGION_ET, REGION_TC, REGION_WT};

    /// A case of `shape` (its whole volume) for the post-processing, with zero images.
    fn case_of(shape: [usize; 3]) -> PreparedCase {
        let voxels: usize = shape.iter().product();
        labelled_case("case", shape, vec![0.0; 4 * voxels], vec![0; voxels])
    }

    /// The 26-connected rule on region bits.
    fn postprocess26(regions: &mut [u8], shape: [usize; 3]) {
        postprocess_regions(regions, &case_of(shape), PostprocessRule::Components26);
    }

    /// A `[d, h, w]` grid of region bits with the boxes `(label, z0..z1, y0..y1, x0..x1)` drawn
    /// in order.
    fn grid(shape: [usize; 3], boxes: &[(u8, [usize; 6])]) -> Vec<u8> {
        let [_, h, w] = shape;
        let mut regions = vec![0u8; shape.iter().product()];
        for &(label, [z0, z1, y0, y1, x0, x1]) in boxes {
            for z in z0..z1 {
                for y in y0..y1 {
                    for x in x0..x1 {
                        regions[(z * h + y) * w + x] = regions_of_label(label);
                    }
                }
            }
        }
        regions
    }

    #[test]
    fn diagonal_neighbours_join_one_component() {
        let shape = [4, 4, 4];
        let at = |z: usize, y: usize, x: usize| (z * 4 + y) * 4 + x;
        let mut mask = vec![false; 64];
        for (z, y, x) in [(0, 0, 0), (1, 1, 1), (2, 2, 2), (0, 0, 3)] {
            mask[at(z, y, x)] = true;
        }
        // (0,0,0)–(1,1,1)–(2,2,2) touch at corners; (0,0,3) is two voxels from all of them.
        let (labels, sizes) = connected_components(&mask, shape, Connectivity::Full);
        assert_eq!(sizes, vec![3, 1]);
        assert_eq!(labels[at(0, 0, 0)], labels[at(2, 2, 2)]);
        assert_ne!(labels[at(0, 0, 0)], labels[at(0, 0, 3)]);
        assert_eq!(labels[at(0, 0, 1)], None);
    }

    #[test]
    fn chequer_blocks_touching_at_edges_form_one_component() {
        // A chequer of 2×2×2 blocks on a 8³ grid: blocks touching at edges and corners join.
        let shape = [8, 8, 8];
        let mask: Vec<bool> = (0..512)
            .map(|v| {
                let (z, y, x) = (v / 64, (v / 8) % 8, v % 8);
                (z / 2 + y / 2 + x / 2) % 2 == 0
            })
            .collect();
        let (_, sizes) = connected_components(&mask, shape, Connectivity::Full);
        // Every block of the chequer touches another along an edge: one component.
        assert_eq!(sizes, vec![256]);
    }

    #[test]
    fn small_components_go_and_large_ones_stay() {
        // A 20³ tumour (8000 voxels, limit min(2000, 800) = 800), a 9³ blob (729 < 800) and a
        // 10³ blob (1000 ≥ 800), all with an ET core large enough to stay.
        let shape = [40, 40, 60];
        let mut regions = grid(
            shape,
            &[
                (2, [0, 20, 0, 20, 0, 20]),
                (4, [5, 15, 5, 15, 5, 15]),
                (2, [25, 34, 25, 34, 25, 34]),
                (1, [25, 35, 0, 10, 40, 50]),
            ],
        );
        let before = regions.clone();
        postprocess26(&mut regions, shape);
        let count = |rs: &[u8], bit: u8| rs.iter().filter(|&&r| r & bit != 0).count();
        assert_eq!(count(&regions, REGION_WT), 8000 + 1000);
        assert_eq!(count(&regions, REGION_TC), 1000 + 1000);
        assert_eq!(count(&regions, REGION_ET), 1000);
        // Only the 9³ blob changed.
        let changed: Vec<usize> = (0..regions.len())
            .filter(|&v| regions[v] != before[v])
            .collect();
        assert_eq!(changed.len(), 729);
    }

    #[test]
    fn the_absolute_limit_caps_the_relative_one() {
        // Largest 30³ = 27000 voxels: 10 % would be 2700, the cap keeps a 13³ = 2197 blob.
        let shape = [30, 30, 50];
        let mut regions = grid(
            shape,
            &[(2, [0, 30, 0, 30, 0, 30]), (2, [0, 13, 0, 13, 35, 48])],
        );
        postprocess26(&mut regions, shape);
        assert_eq!(
            regions.iter().filter(|&&r| r != 0).count(),
            27000 + 2197,
            "a component of 2197 ≥ 2000 voxels stays"
        );
    }

    #[test]
    fn a_small_enhancing_tumour_becomes_necrotic_core() {
        let shape = [20, 20, 20];
        // 7³ = 343 ET voxels (< 500) inside a tumour.
        let mut regions = grid(
            shape,
            &[(2, [0, 20, 0, 20, 0, 20]), (4, [5, 12, 5, 12, 5, 12])],
        );
        postprocess26(&mut regions, shape);
        assert!(regions.iter().all(|&r| r & REGION_ET == 0));
        let core = regions
            .iter()
            .filter(|&&r| r == regions_of_label(1))
            .count();
        assert_eq!(core, 343, "the former ET is labelled necrotic core (1)");
        // 8³ = 512 ET voxels stay.
        let mut regions = grid(
            shape,
            &[(2, [0, 20, 0, 20, 0, 20]), (4, [5, 13, 5, 13, 5, 13])],
        );
        postprocess26(&mut regions, shape);
        assert_eq!(regions.iter().filter(|&&r| r & REGION_ET != 0).count(), 512);
    }

    #[test]
    fn an_empty_prediction_stays_empty() {
        let mut regions = vec![0u8; 64];
        postprocess26(&mut regions, [4, 4, 4]);
        assert!(regions.iter().all(|&r| r == 0));
    }
}
