//! The optional post-processing of predicted label maps (method spec, section 8): connected
//! tumour components smaller than min(2000, 0.1 × the largest) voxels are removed, and a case
//! with fewer than 500 enhancing-tumour voxels has its ET relabelled as necrotic core (label 1).

use std::collections::VecDeque;

use metakd_data::preprocess::{REGION_ET, REGION_WT};

/// Components smaller than this many voxels are removed, whatever the largest one's size.
pub const MIN_COMPONENT_VOXELS: usize = 2000;
/// Components smaller than this fraction of the largest one are removed.
pub const MIN_COMPONENT_FRACTION: f64 = 0.1;
/// A case with fewer enhancing-tumour voxels than this has its ET relabelled as necrotic core.
pub const MIN_ET_VOXELS: usize = 500;

/// The 26-connected components of `mask` on a `[d, h, w]` grid (C order): a component id per
/// voxel (`None` outside the mask) and each component's size.
pub fn connected_components(mask: &[bool], shape: [usize; 3]) -> (Vec<Option<u32>>, Vec<usize>) {
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

/// Post-processes region bits (`REGION_*` per voxel of a `[d, h, w]` grid, nested as
/// ET ⊂ TC ⊂ WT) in place: tumour (WT) components below the size limit become background, then
/// a case left with fewer than [`MIN_ET_VOXELS`] ET voxels loses its ET, which stays tumour core.
pub fn postprocess_regions(regions: &mut [u8], shape: [usize; 3]) {
    let tumour: Vec<bool> = regions.iter().map(|&r| r & REGION_WT != 0).collect();
    let (components, sizes) = connected_components(&tumour, shape);
    if let Some(&largest) = sizes.iter().max() {
        let limit = (MIN_COMPONENT_FRACTION * largest as f64).min(MIN_COMPONENT_VOXELS as f64);
        for (r, component) in regions.iter_mut().zip(&components) {
            if let Some(id) = component {
                if (sizes[*id as usize] as f64) < limit {
                    *r = 0;
                }
            }
        }
    }
    let et = regions.iter().filter(|&&r| r & REGION_ET != 0).count();
    if et < MIN_ET_VOXELS {
        for r in regions.iter_mut() {
            *r &= !REGION_ET;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metakd_data::preprocess::{regions_of_label, REGION_TC};

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
        let (labels, sizes) = connected_components(&mask, shape);
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
        let (_, sizes) = connected_components(&mask, shape);
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
        postprocess_regions(&mut regions, shape);
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
        postprocess_regions(&mut regions, shape);
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
        postprocess_regions(&mut regions, shape);
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
        postprocess_regions(&mut regions, shape);
        assert_eq!(regions.iter().filter(|&&r| r & REGION_ET != 0).count(), 512);
    }

    #[test]
    fn an_empty_prediction_stays_empty() {
        let mut regions = vec![0u8; 64];
        postprocess_regions(&mut regions, [4, 4, 4]);
        assert!(regions.iter().all(|&r| r == 0));
    }
}
