//! The anatomy of one synthetic case: a skull-stripped, head-shaped brain with cortex, white
//! matter, ventricles and sulcal CSF, and a tumour of necrotic core, enhancing rim and edema with
//! an irregular shape at a random place.

use ndarray::Array3;
use rand::Rng;

use super::contrast::Tissue;
use super::field::SmoothField;

/// A tumour lobe: centre, core radius and the fields that make its outline irregular.
struct Lobe {
    centre: [f32; 3],
    core_radius: f32,
    edema_radius: f32,
    rim: f32,
    core_outline: SmoothField,
    edema_outline: SmoothField,
    rim_variation: SmoothField,
}

impl Lobe {
    /// Normalised distances (core, edema) of `p`: below 1 means inside.
    fn distances(&self, p: [f32; 3]) -> (f32, f32, f32) {
        let d = ((p[0] - self.centre[0]).powi(2)
            + (p[1] - self.centre[1]).powi(2)
            + (p[2] - self.centre[2]).powi(2))
        .sqrt();
        let core = self.core_radius * (1.0 + 0.28 * self.core_outline.at(p));
        let edema = self.edema_radius * (1.0 + 0.30 * self.edema_outline.at(p));
        let rim = (self.rim * (1.0 + 0.35 * self.rim_variation.at(p))).max(1.0);
        (
            d / core.max(1.0),
            d / edema.max(1.0),
            (core - rim).max(0.0) / core.max(1.0),
        )
    }
}

/// The tissue map of one case, in (d, h, w) voxels of 1 mm.
pub fn tissue_map(shape: [usize; 3], rng: &mut impl Rng) -> Array3<u8> {
    let [d, h, w] = shape;
    let size = [d as f32, h as f32, w as f32];
    let centre = size.map(|s| s / 2.0);
    // Semi-axes of the brain: superior-inferior (z), left-right (x), anterior-posterior (y).
    let scale = rng.random_range(0.92..1.04);
    let semi = [0.42 * size[0], 0.38 * size[1], 0.45 * size[2]].map(|s| s * scale);
    let outline = SmoothField::new(rng, 8, 0.5 * size[1], 1.5 * size[1]);
    let folding = SmoothField::new(rng, 12, 4.0, 9.0);
    let sulci = SmoothField::new(rng, 16, 3.0, 6.0);
    let ventricle_shift = rng.random_range(-0.04..0.04) * size[1];

    let scale_len = size[1].min(size[2]);
    let lobes = tumour_lobes(rng, centre, semi, scale_len);

    let mut map = Array3::<u8>::zeros((d, h, w));
    for ((z, x, y), t) in map.indexed_iter_mut() {
        let p = [z as f32 + 0.5, x as f32 + 0.5, y as f32 + 0.5];
        let rel = [
            (p[0] - centre[0]) / semi[0],
            (p[1] - centre[1]) / semi[1],
            (p[2] - centre[2]) / semi[2],
        ];
        let rho = (rel[0] * rel[0] + rel[1] * rel[1] + rel[2] * rel[2]).sqrt();
        let rho = rho / (1.0 + 0.05 * outline.at(p));
        if rho >= 1.0 {
            continue;
        }
        let mut tissue = anatomy(rho, rel, p, ventricle_shift / semi[1], &folding, &sulci);
        for lobe in &lobes {
            let (core, edema, inner) = lobe.distances(p);
            tissue = match tissue {
                Tissue::Necrosis => Tissue::Necrosis,
                _ if core < inner => Tissue::Necrosis,
                _ if core < 1.0 => Tissue::Enhancing,
                Tissue::Enhancing => Tissue::Enhancing,
                _ if edema < 1.0 && tissue != Tissue::Csf => Tissue::Edema,
                other => other,
            };
        }
        *t = tissue as u8;
    }
    map
}

/// Healthy tissue at normalised radius `rho` and relative position `rel`.
fn anatomy(
    rho: f32,
    rel: [f32; 3],
    p: [f32; 3],
    ventricle_shift: f32,
    folding: &SmoothField,
    sulci: &SmoothField,
) -> Tissue {
    // Lateral ventricles: two ellipsoids either side of the midline, slightly superior.
    for side in [-1.0f32, 1.0] {
        let v = [
            (rel[0] - 0.08) / 0.22,
            (rel[1] - ventricle_shift - side * 0.13) / 0.09,
            (rel[2] + 0.02) / 0.38,
        ];
        if v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < 1.0 {
            return Tissue::Csf;
        }
    }
    if rho > 0.955 {
        return Tissue::Csf;
    }
    let cortex_inner = 0.74 + 0.07 * folding.at(p);
    if rho > cortex_inner {
        if sulci.at(p) > 0.95 && rho > cortex_inner + 0.05 {
            Tissue::Csf
        } else {
            Tissue::GreyMatter
        }
    } else {
        Tissue::WhiteMatter
    }
}

/// One to three tumour lobes at a random place inside the brain.
fn tumour_lobes(rng: &mut impl Rng, centre: [f32; 3], semi: [f32; 3], scale: f32) -> Vec<Lobe> {
    let main_centre = loop {
        let r: [f32; 3] = std::array::from_fn(|_| rng.random_range(-0.55f32..0.55));
        if r.iter().map(|v| v * v).sum::<f32>() < 0.55 * 0.55 && r[1].abs() > 0.12 {
            break [
                centre[0] + r[0] * semi[0],
                centre[1] + r[1] * semi[1],
                centre[2] + r[2] * semi[2],
            ];
        }
    };
    let core_radius = rng.random_range(0.10..0.17) * scale;
    let lobes = 1 + usize::from(rng.random_bool(0.45)) + usize::from(rng.random_bool(0.2));
    (0..lobes)
        .map(|i| {
            let (c, r) = if i == 0 {
                (main_centre, core_radius)
            } else {
                let offset: [f32; 3] =
                    std::array::from_fn(|_| rng.random_range(-0.9f32..0.9) * core_radius);
                (
                    [
                        main_centre[0] + offset[0],
                        main_centre[1] + offset[1],
                        main_centre[2] + offset[2],
                    ],
                    core_radius * rng.random_range(0.5..0.85),
                )
            };
            Lobe {
                centre: c,
                core_radius: r,
                edema_radius: r * rng.random_range(1.5..2.3),
                rim: r * rng.random_range(0.28..0.5),
                core_outline: SmoothField::new(rng, 6, 1.2 * r, 4.0 * r),
                edema_outline: SmoothField::new(rng, 6, 1.5 * r, 5.0 * r),
                rim_variation: SmoothField::new(rng, 4, 1.0 * r, 3.0 * r),
            }
        })
        .collect()
}
