//! `Tensor::backward_releasing` (vendored candle-core): the same gradients as `backward`, the
//! graph's own intermediate values freed during the pass, and every value held outside the
//! graph kept. One test in a binary of its own, so that its heap counter sees no other test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor, Var};
use metakd_model::ops::{conv3d, instance_norm3d_leaky_relu, Conv3dParams};

/// The system allocator, counting live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Values of 4 MiB each: `a = 2x`, `b = exp(a)`, `c = b + a` (fan-in), `kept = c²` (held by
/// the caller), `view` (a view of `b`, held by the caller when asked), loss `Σ kept`.
struct Chain {
    x: Var,
    kept: Tensor,
    view: Option<Tensor>,
    loss: Tensor,
}

const LEN: usize = 1 << 20;

fn chain(x: &Var, keep_view: bool) -> Chain {
    let a = (x.as_tensor() * 2.0).unwrap();
    let b = a.exp().unwrap();
    let view = keep_view.then(|| b.reshape((1024, 1024)).unwrap());
    let c = (&b + &a).unwrap();
    let kept = c.sqr().unwrap();
    let loss = kept.sum_all().unwrap();
    Chain {
        x: x.clone(),
        kept,
        view,
        loss,
    }
}

fn input() -> Var {
    let data: Vec<f32> = (0..LEN).map(|i| ((i % 97) as f32) / 97.0 - 0.5).collect();
    Var::from_tensor(&Tensor::from_vec(data, LEN, &Device::Cpu).unwrap()).unwrap()
}

/// A small convolutional block with views and a concatenation, on the repository's own ops.
fn conv_block_gradients(release: bool) -> Vec<Vec<f32>> {
    let dev = Device::Cpu;
    let pattern: Vec<f32> = (0..2 * 3 * 6 * 7 * 8)
        .map(|i| ((i * 29 % 71) as f32) / 71.0 - 0.5)
        .collect();
    let x = Tensor::from_vec(pattern, (2, 3, 6, 7, 8), &dev).unwrap();
    let seed: Vec<f32> = (0..4 * 3 * 27)
        .map(|i| ((i * 37 % 53) as f32) / 53.0 - 0.5)
        .collect();
    let w = Var::from_tensor(&Tensor::from_vec(seed, (4, 3, 3, 3, 3), &dev).unwrap()).unwrap();
    let gamma = Var::from_tensor(&Tensor::ones(4, candle_core::DType::F32, &dev).unwrap()).unwrap();
    let beta = Var::from_tensor(&Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap()).unwrap();
    let x = Var::from_tensor(&x).unwrap();
    let y = conv3d(x.as_tensor(), w.as_tensor(), Conv3dParams::uniform(1, 1, 1)).unwrap();
    let h =
        instance_norm3d_leaky_relu(&y, gamma.as_tensor(), beta.as_tensor(), 1e-5, 0.01).unwrap();
    let halves = h.reshape((4, 2, 6, 7, 8)).unwrap();
    let both = Tensor::cat(&[&halves, &(&halves * 3.0).unwrap()], 1).unwrap();
    let loss = (both.sqr().unwrap().mean_all().unwrap() + h.sum_all().unwrap()).unwrap();
    let grads = if release {
        loss.backward_releasing().unwrap()
    } else {
        loss.backward().unwrap()
    };
    [&x, &w, &gamma, &beta]
        .iter()
        .map(|v| values(grads.get(v.as_tensor()).unwrap()))
        .collect()
}

#[test]
fn releasing_frees_the_graphs_values_keeps_the_callers_and_changes_no_gradient() {
    // Gradients: the same, bit for bit, through the repository's ops.
    assert_eq!(conv_block_gradients(true), conv_block_gradients(false));

    // Memory: after `backward`, the graph (still held by the loss) holds a, b and c; after
    // `backward_releasing` it holds none of them.
    let x = input();
    let retained = chain(&x, false);
    let before = live();
    let grads = retained.loss.backward().unwrap();
    let grown_retaining = live() as isize - before as isize;
    let expected_grad = values(grads.get(retained.x.as_tensor()).unwrap());
    drop((grads, retained));

    let released = chain(&x, false);
    let kept_before = values(&released.kept);
    let before = live();
    let grads = released.loss.backward_releasing().unwrap();
    let grown_releasing = live() as isize - before as isize;
    let freed = grown_retaining - grown_releasing;
    let three_values = (3 * LEN * 4) as isize;
    assert!(
        freed >= three_values * 99 / 100 && freed <= three_values * 101 / 100,
        "freed {freed} bytes, expected about {three_values}"
    );
    assert_eq!(
        values(grads.get(released.x.as_tensor()).unwrap()),
        expected_grad
    );
    // The caller's tensor, and the loss, are intact; the graph cannot be run back again.
    assert_eq!(values(&released.kept), kept_before);
    assert!(released.loss.to_scalar::<f32>().unwrap().is_finite());
    let again = released.loss.backward().unwrap_err().to_string();
    assert!(
        again.contains("freed by an earlier backward_releasing"),
        "{again}"
    );
    drop((grads, released));

    // A view the caller holds keeps its base's storage (b), and reads the same values.
    let viewed = chain(&x, true);
    let view_before = values(viewed.view.as_ref().unwrap());
    let before = live();
    let grads = viewed.loss.backward_releasing().unwrap();
    let grown_viewed = live() as isize - before as isize;
    assert_eq!(values(viewed.view.as_ref().unwrap()), view_before);
    let freed_viewed = grown_retaining - grown_viewed;
    let two_values = (2 * LEN * 4) as isize;
    assert!(
        freed_viewed >= two_values * 99 / 100 && freed_viewed <= two_values * 101 / 100,
        "freed {freed_viewed} bytes with a view held, expected about {two_values}"
    );
    assert_eq!(
        values(grads.get(viewed.x.as_tensor()).unwrap()),
        expected_grad
    );
}
