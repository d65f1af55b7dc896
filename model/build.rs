//! With the `cuda` feature, compiles the ops' CUDA kernels (`cuda/ops.cu`) to PTX with nvcc
//! (`NVCC`, or `$CUDA_HOME/bin/nvcc`, or `nvcc` on the path) for compute capability
//! `CUDA_COMPUTE_CAP` (default 80; the driver compiles the PTX for newer GPUs when it loads it).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed=cuda/ops.cu");
    for var in ["NVCC", "CUDA_HOME", "CUDA_COMPUTE_CAP"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| match std::env::var("CUDA_HOME") {
        Ok(home) => format!("{home}/bin/nvcc"),
        Err(_) => "nvcc".to_owned(),
    });
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".to_owned());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("metakd_ops.ptx");
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("cuda/ops.cu")
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("the cuda feature needs nvcc ({nvcc}: {e}); tools/cuda-toolchain.sh installs it")
        });
    assert!(status.success(), "{nvcc} could not compile cuda/ops.cu");
}
