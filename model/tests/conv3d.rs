//! conv3d and conv_transpose3d against a naive loop and finite differences.

use candle_core::{Device, Tensor, Var};
use metakd_model::ops::{conv3d, conv_transpose3d, Conv3dParams, ConvTranspose3dParams, Geometry};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Calls `visit(x_index, w_index, y_index)` for every multiply-add of the convolution.
fn for_each_tap(g: &Geometry, mut visit: impl FnMut(usize, usize, usize)) {
    let p = g.params;
    let [d, h, w] = g.input;
    let [od, oh, ow] = g.output;
    let [kd, kh, kw] = g.kernel;
    for n in 0..g.n {
        for co in 0..g.co {
            for z in 0..od {
                for y in 0..oh {
                    for x in 0..ow {
                        let yi = (((n * g.co + co) * od + z) * oh + y) * ow + x;
                        let cg = g.c / p.groups;
                        let group = co / (g.co / p.groups);
                        for ci in 0..cg {
                            let c = group * cg + ci;
                            for a in 0..kd {
                                for b in 0..kh {
                                    for e in 0..kw {
                                        let iz = (z * p.stride[0] + a * p.dilation[0]) as isize
                                            - p.padding[0] as isize;
                                        let iy = (y * p.stride[1] + b * p.dilation[1]) as isize
                                            - p.padding[1] as isize;
                                        let ix = (x * p.stride[2] + e * p.dilation[2]) as isize
                                            - p.padding[2] as isize;
                                        if iz < 0
                                            || iy < 0
                                            || ix < 0
                                            || iz >= d as isize
                                            || iy >= h as isize
                                            || ix >= w as isize
                                        {
                                            continue;
                                        }
                                        let xi = (((n * g.c + c) * d + iz as usize) * h
                                            + iy as usize)
                                            * w
                                            + ix as usize;
                                        let wi = (((co * cg + ci) * kd + a) * kh + b) * kw + e;
                                        visit(xi, wi, yi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

fn check_against_naive(x_dims: [usize; 5], w_dims: [usize; 5], params: Conv3dParams) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(7);
    let g = Geometry::new(&x_dims, &w_dims, params).unwrap();
    let xs = random(&mut rng, x_dims.iter().product());
    let ws = random(&mut rng, w_dims.iter().product());
    let out_len: usize = g.output_dims().iter().product();
    let r = random(&mut rng, out_len);

    let (mut y, mut dx, mut dw) = (
        vec![0f32; out_len],
        vec![0f32; xs.len()],
        vec![0f32; ws.len()],
    );
    for_each_tap(&g, |xi, wi, yi| {
        y[yi] += xs[xi] * ws[wi];
        dx[xi] += ws[wi] * r[yi];
        dw[wi] += xs[xi] * r[yi];
    });

    let x = Var::from_slice(&xs, &x_dims, &dev).unwrap();
    let w = Var::from_slice(&ws, &w_dims, &dev).unwrap();
    let out = conv3d(&x, &w, params).unwrap();
    assert_eq!(out.dims(), &g.output_dims());
    let rt = Tensor::from_slice(&r, out.dims(), &dev).unwrap();
    let grads = (&out * &rt).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close(&flat(&out), &y, 1e-4, "y");
    assert_close(&flat(grads.get(&x).unwrap()), &dx, 1e-4, "dx");
    assert_close(&flat(grads.get(&w).unwrap()), &dw, 1e-4, "dw");
}

#[test]
fn conv3d_matches_naive_loop_forward_and_backward() {
    check_against_naive(
        [2, 3, 5, 6, 7],
        [4, 3, 3, 3, 3],
        Conv3dParams::uniform(1, 1, 1),
    );
    check_against_naive(
        [1, 2, 7, 5, 9],
        [3, 2, 3, 3, 3],
        Conv3dParams::uniform(2, 1, 1),
    );
    check_against_naive(
        [2, 2, 9, 9, 9],
        [2, 2, 3, 3, 3],
        Conv3dParams::uniform(1, 2, 2),
    );
    check_against_naive(
        [1, 1, 9, 8, 10],
        [2, 1, 3, 3, 3],
        Conv3dParams::uniform(1, 4, 4),
    );
    check_against_naive([2, 5, 4, 5, 6], [3, 5, 1, 1, 1], Conv3dParams::default());
    // A single-channel input unfolded with a large strided kernel (the reference stem's shape).
    check_against_naive(
        [2, 1, 6, 9, 10],
        [3, 1, 5, 5, 5],
        Conv3dParams {
            stride: [1, 2, 2],
            padding: [2, 2, 2],
            dilation: [1, 1, 1],
            groups: 1,
        },
    );
    check_against_naive(
        [1, 2, 6, 7, 5],
        [2, 2, 2, 2, 2],
        Conv3dParams::uniform(2, 0, 1),
    );
    check_against_naive(
        [1, 2, 7, 6, 8],
        [3, 2, 3, 1, 2],
        Conv3dParams {
            stride: [1, 2, 3],
            padding: [0, 1, 2],
            dilation: [2, 1, 1],
            groups: 1,
        },
    );
}

/// The per-sample paths (outputs too large to batch, or one sample): shifted products with
/// channel groups, per-axis padding and dilation, padding wider than the dilated kernel (whose
/// input gradient cannot run as a forward pass), and weight gradients that transpose either the
/// output gradient (fewer output channels than column rows) or the columns (more) where both
/// are at least 16, and read both along the voxels where one is thinner.
#[test]
fn per_sample_paths_match_naive_loop() {
    let same = Conv3dParams::uniform(1, 1, 1);
    let per_axis = Conv3dParams {
        stride: [1, 1, 1],
        padding: [0, 1, 2],
        dilation: [1, 2, 1],
        groups: 1,
    };
    let cases: [([usize; 5], [usize; 5], Conv3dParams); 12] = [
        // Transposed weight-gradient layouts (at least 16 channels on both sides).
        ([1, 16, 6, 7, 8], [16, 16, 3, 3, 3], same),
        ([1, 32, 5, 6, 7], [32, 16, 3, 3, 3], same.with_groups(2)),
        (
            [1, 2, 9, 10, 11],
            [16, 2, 3, 3, 3],
            Conv3dParams::uniform(2, 1, 1),
        ),
        ([1, 16, 4, 5, 6], [24, 16, 1, 1, 1], Conv3dParams::default()),
        // Thin results, groups, per-axis geometry, padding wider than the dilated kernel.
        ([2, 4, 9, 8, 10], [6, 2, 3, 3, 3], same.with_groups(2)),
        ([1, 2, 7, 6, 8], [3, 2, 3, 2, 3], per_axis),
        (
            [1, 2, 6, 7, 8],
            [3, 2, 3, 3, 3],
            Conv3dParams::uniform(1, 3, 1),
        ),
        (
            [1, 1, 9, 10, 11],
            [8, 1, 1, 1, 2],
            Conv3dParams::uniform(2, 0, 1),
        ),
        ([1, 3, 4, 5, 6], [7, 3, 1, 1, 1], Conv3dParams::default()),
        ([2, 3, 9, 8, 10], [4, 3, 1, 1, 1], Conv3dParams::default()),
        (
            [1, 4, 4, 5, 6],
            [6, 2, 1, 1, 1],
            Conv3dParams::default().with_groups(2),
        ),
        (
            [1, 4, 7, 6, 8],
            [4, 2, 3, 3, 3],
            Conv3dParams::uniform(2, 1, 1).with_groups(2),
        ),
    ];
    for (x, w, params) in cases {
        check_against_naive(x, w, params);
    }
}

/// Checks the autograd gradients of `sum(op(x, w)²)` against central finite differences at the
/// given coordinates of `x` and `w`.
fn check_finite_differences(
    x_dims: [usize; 5],
    w_dims: [usize; 5],
    op: impl Fn(&Tensor, &Tensor) -> Tensor,
    x_coords: &[usize],
    w_coords: &[usize],
    seed: u64,
) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(seed);
    let xs = random(&mut rng, x_dims.iter().product());
    let ws = random(&mut rng, w_dims.iter().product());
    let loss = |xs: &[f32], ws: &[f32]| -> f64 {
        let x = Tensor::from_slice(xs, &x_dims, &dev).unwrap();
        let w = Tensor::from_slice(ws, &w_dims, &dev).unwrap();
        let y = op(&x, &w).sqr().unwrap().sum_all().unwrap();
        f64::from(y.to_scalar::<f32>().unwrap())
    };
    let x = Var::from_slice(&xs, &x_dims, &dev).unwrap();
    let w = Var::from_slice(&ws, &w_dims, &dev).unwrap();
    let grads = op(&x, &w)
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let flat = |v: &Var| {
        grads
            .get(v)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (gx, gw) = (flat(&x), flat(&w));
    let eps = 1e-2f32;
    let central = |values: &[f32], i: usize, f: &dyn Fn(&[f32]) -> f64| -> f64 {
        let (mut plus, mut minus) = (values.to_vec(), values.to_vec());
        plus[i] += eps;
        minus[i] -= eps;
        (f(&plus) - f(&minus)) / (2.0 * f64::from(eps))
    };
    for &i in x_coords {
        let fd = central(&xs, i, &|v| loss(v, &ws));
        let g = f64::from(gx[i]);
        assert!(
            (fd - g).abs() < 2e-2 * (1.0 + fd.abs()),
            "dx[{i}]: fd {fd} vs {g}"
        );
    }
    for &i in w_coords {
        let fd = central(&ws, i, &|v| loss(&xs, v));
        let g = f64::from(gw[i]);
        assert!(
            (fd - g).abs() < 2e-2 * (1.0 + fd.abs()),
            "dw[{i}]: fd {fd} vs {g}"
        );
    }
}

#[test]
fn conv3d_gradient_matches_finite_differences() {
    check_finite_differences(
        [2, 2, 5, 4, 6],
        [3, 2, 3, 3, 3],
        |x, w| conv3d(x, w, Conv3dParams::uniform(2, 1, 1)).unwrap(),
        &[0, 17, 101, 200, 239],
        &[0, 13, 54, 99, 161],
        3,
    );
}

#[test]
fn conv_transpose3d_is_the_adjoint_of_conv3d() {
    // <conv(z, w), x> = <z, convT(x, w)> for every z and x.
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(11);
    let z = Tensor::from_slice(
        &random(&mut rng, 2 * 3 * 8 * 6 * 10),
        (2, 3, 8, 6, 10),
        &dev,
    )
    .unwrap();
    let w = Tensor::from_slice(&random(&mut rng, 4 * 3 * 8), (4, 3, 2, 2, 2), &dev).unwrap();
    let y = conv3d(&z, &w, Conv3dParams::uniform(2, 0, 1)).unwrap();
    let x = Tensor::from_slice(&random(&mut rng, y.elem_count()), y.dims(), &dev).unwrap();
    let t = conv_transpose3d(&x, &w, ConvTranspose3dParams::stride(2)).unwrap();
    assert_eq!(t.dims(), z.dims());
    let lhs = (&y * &x)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let rhs = (&z * &t)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        (lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()),
        "{lhs} vs {rhs}"
    );
}

#[test]
fn conv_transpose3d_gradients_match_finite_differences() {
    check_finite_differences(
        [2, 3, 3, 4, 2],
        [3, 2, 2, 2, 2],
        |x, w| {
            let y = conv_transpose3d(x, w, ConvTranspose3dParams::stride(2)).unwrap();
            assert_eq!(y.dims(), &[2, 2, 6, 8, 4]);
            y
        },
        &[0, 7, 33, 71],
        &[0, 9, 30, 47],
        5,
    );
}

/// The values of a tensor, flattened.
fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// A batch of samples (one matrix product for the whole batch when the output is small) gives
/// each sample what it gets alone (one product per sample), forward and backward: dilated kernels
/// on tiny maps (where most taps read only padding), strided and pointwise convolutions.
#[test]
fn batched_small_convolutions_equal_per_sample_ones() {
    let mut rng = StdRng::seed_from_u64(9);
    let cases: [([usize; 5], usize, usize, Conv3dParams); 5] = [
        ([2, 16, 4, 4, 4], 16, 3, Conv3dParams::uniform(1, 1, 1)),
        ([3, 5, 2, 2, 2], 4, 3, Conv3dParams::uniform(1, 8, 8)),
        ([2, 4, 4, 4, 4], 6, 3, Conv3dParams::uniform(1, 2, 2)),
        ([2, 3, 5, 6, 7], 4, 3, Conv3dParams::uniform(2, 1, 1)),
        ([4, 6, 3, 2, 4], 5, 1, Conv3dParams::default()),
    ];
    for (dims, co, k, params) in cases {
        let n = dims[0];
        let x =
            Var::from_vec(random(&mut rng, dims.iter().product()), &dims, &Device::Cpu).unwrap();
        let w = Var::from_vec(
            random(&mut rng, co * dims[1] * k * k * k),
            (co, dims[1], k, k, k),
            &Device::Cpu,
        )
        .unwrap();
        let y = conv3d(&x, &w, params).unwrap();
        let r = Tensor::from_vec(random(&mut rng, y.elem_count()), y.dims(), &Device::Cpu).unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let mut dw_sum = vec![0f32; w.elem_count()];
        for s in 0..n {
            let xs = Var::from_tensor(&x.narrow(0, s, 1).unwrap()).unwrap();
            let ys = conv3d(&xs, &w, params).unwrap();
            let rs = r.narrow(0, s, 1).unwrap();
            let gs = (&ys * &rs).unwrap().sum_all().unwrap().backward().unwrap();
            let close = |a: &Tensor, b: &Tensor, what: &str| {
                for (p, q) in values(a).iter().zip(&values(b)) {
                    assert!(
                        (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                        "{dims:?} {what}: {p} vs {q}"
                    );
                }
            };
            close(&y.narrow(0, s, 1).unwrap(), &ys, "output");
            close(
                &grads.get(&x).unwrap().narrow(0, s, 1).unwrap(),
                gs.get(&xs).unwrap(),
                "input gradient",
            );
            let dw = values(gs.get(&w).unwrap());
            dw_sum.iter_mut().zip(dw).for_each(|(a, b)| *a += b);
        }
        let dw = values(grads.get(&w).unwrap());
        for (p, q) in dw.iter().zip(&dw_sum) {
            assert!(
                (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                "{dims:?} weight gradient: {p} vs {q}"
            );
        }
    }
}
